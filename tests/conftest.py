"""Shared by every test module."""

import pytest
from django.core.cache import cache

LOCAL_CACHE = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


@pytest.fixture(autouse=True)
def fresh_rate_limit_counters(settings):
    """Rate-limit counts live in the cache; one test's requests must not throttle the next.
    In-process tests get a private cache even when REDIS_URL is set, so clearing it never
    touches the Redis that app processes under test share."""
    settings.CACHES = LOCAL_CACHE
    cache.clear()
    yield


@pytest.fixture(autouse=True)
def loopback_tools_allowed(settings):
    """The tests' tool servers listen on loopback, which agent tools may not reach by
    default (voiceagents/egress.py); tests of that policy set their own list."""
    settings.TOOL_EGRESS_ALLOW = ["127.0.0.0/8"]


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """The test process does not keep database connections between uses (the app does):
    a connection left open in asgiref's worker thread would stop the test database from
    being dropped at the end. App processes under test keep their own setting."""
    from django.db import connections

    for connection in connections.all():
        connection.settings_dict["CONN_MAX_AGE"] = 0
