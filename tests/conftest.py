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
