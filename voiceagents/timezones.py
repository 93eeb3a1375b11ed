"""Times in the staff member's own time zone, the same on the console and in the admin:
the console's pages store the browser's zone in a cookie (static/js/timezone.js), and
every request with a valid one shows times in it. Without one: TIME_ZONE."""

import functools
import zoneinfo

from django.utils import timezone

COOKIE = "tz"


@functools.cache
def known_zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


class StaffTimeZoneMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        name = request.COOKIES.get(COOKIE, "")
        if name in known_zones():  # anything else is ignored, never passed to zoneinfo
            timezone.activate(zoneinfo.ZoneInfo(name))
        else:
            timezone.deactivate()
        return self.get_response(request)
