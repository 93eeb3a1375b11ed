"""Response headers that tell the browser what the console's pages may do.

The console's pages load only their own scripts, styles and media (no inline script), so
a strict Content-Security-Policy costs them nothing and stops injected markup from running.
Django's admin keeps Django's own defaults (its templates were not written for a CSP).
Pages and API answers that carry what callers said are never cached."""

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "media-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
# The browser test call (the console issue) will need the microphone on our own pages.
PERMISSIONS_POLICY = "camera=(), geolocation=(), payment=(), usb=(), microphone=(self)"
PRIVATE_PREFIXES = ("/calls/", "/api/")


class SecurityHeadersMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        if not request.path.startswith("/admin/"):
            response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        private = request.path.startswith(PRIVATE_PREFIXES)
        if private and "no-store" not in response.get("Cache-Control", ""):
            add_never_cache_headers(response)
        return response
