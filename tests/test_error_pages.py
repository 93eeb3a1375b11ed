"""The debug error page shows no settings values, and no local variable holding one."""

import sys

from django.views.debug import technical_500_response

REDIS_PASSWORD = "hunter2-" + "redis-password"  # never written whole in the source shown
HOST = "redis." + "internal"


def failing_with_a_credential_in_a_local(settings):
    redis_url = settings.REDIS_URL  # noqa: F841 - the frame's local the page would show
    raise RuntimeError("the cache went away")


def test_the_debug_500_page_shows_no_settings_and_no_credential(rf, settings):
    settings.DEBUG = True
    settings.REDIS_URL = f"redis://:{REDIS_PASSWORD}@{HOST}:6379/0"
    try:
        failing_with_a_credential_in_a_local(settings)
    except RuntimeError:
        response = technical_500_response(rf.get("/calls/"), *sys.exc_info())

    page = response.content.decode()
    assert "the cache went away" in page  # still a useful page
    assert REDIS_PASSWORD not in page
    assert HOST not in page
    assert "INSTALLED_APPS" not in page  # the settings section is empty
