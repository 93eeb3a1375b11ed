"""Per-client rate limits on the endpoints anyone on the internet can reach: Twilio's
webhooks and media streams, the read API and the admin login form.

Counts live in Django's cache (Redis when REDIS_URL is set, so every web process shares
them), per client address and one-minute window. The limit applies to a sliding minute,
estimated from this window's count plus the previous window's weighted by how much of it
still lies within the last 60 s, so a burst cannot get twice the limit through by
straddling a window's edge. A limit of 0 turns it off.

When the cache cannot be reached (Redis down) the limiter fails open, logged at most
every ten seconds: callers still get the agent, and /healthz is where the outage shows.
"""

import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from redis.exceptions import RedisError

log = logging.getLogger(__name__)
WINDOW_S = 60
OUTAGE_LOG_EVERY_S = 10.0
_last_outage_log = 0.0


def limit_for(path: str, method: str) -> tuple[str, int] | None:
    """Which bucket a request counts against, and its per-minute limit."""
    if path.startswith("/twilio/"):
        return "twilio", settings.RATE_LIMITS["twilio"]
    if path.startswith("/api/"):
        return "api", settings.RATE_LIMITS["api"]
    if path == "/admin/login/" and method == "POST":
        return "login", settings.RATE_LIMITS["login"]
    return None


def client_address(remote_addr: str, forwarded_for: str) -> str:
    """The caller's address: behind TRUSTED_PROXY_COUNT proxies, the entry they added to
    X-Forwarded-For (entries further left are whatever the client claimed)."""
    proxies = settings.TRUSTED_PROXY_COUNT
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    if proxies and len(hops) >= proxies:
        return hops[-proxies]
    return remote_addr or "unknown"


def over_limit(bucket: str, limit: int, address: str) -> bool:
    """Count one request; True once this address passed `limit` within the last minute
    (False when the counts cannot be reached: see the module's docstring)."""
    if limit <= 0:
        return False
    try:
        return _count_and_check(bucket, limit, address)
    except (RedisError, OSError) as exc:
        global _last_outage_log
        now = time.monotonic()
        if now - _last_outage_log >= OUTAGE_LOG_EVERY_S:
            _last_outage_log = now
            log.error("rate limits not applied: the cache is unreachable (%r)", exc)
        return False


def _count_and_check(bucket: str, limit: int, address: str) -> bool:
    window, elapsed = divmod(time.time(), WINDOW_S)
    key = f"rate:{bucket}:{address}:{int(window)}"
    cache.add(key, 0, timeout=WINDOW_S * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr: this is the window's first hit
        cache.set(key, 1, timeout=WINDOW_S * 2)
        count = 1
    previous = cache.get(f"rate:{bucket}:{address}:{int(window) - 1}", 0)
    return count + previous * (1 - elapsed / WINDOW_S) > limit


def too_many_requests() -> HttpResponse:
    response = HttpResponse("Too many requests; try again in a minute.", status=429)
    response["Retry-After"] = str(WINDOW_S)
    return response


class RateLimitMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        bucket_limit = limit_for(request.path, request.method)
        if bucket_limit is not None:
            bucket, limit = bucket_limit
            address = client_address(
                request.META.get("REMOTE_ADDR", ""), request.META.get("HTTP_X_FORWARDED_FOR", "")
            )
            if over_limit(bucket, limit, address):
                log.warning("rate limit: %s over %d/min on %s", address, limit, request.path)
                return too_many_requests()
        return self.get_response(request)


class WebSocketRateLimit:
    """ASGI middleware for the media-stream socket: closing before accept answers the
    handshake with 403, before any database or OpenAI work is done."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        remote_addr = (scope.get("client") or ("", 0))[0]
        address = client_address(
            remote_addr, headers.get(b"x-forwarded-for", b"").decode("latin-1")
        )
        limit = settings.RATE_LIMITS["twilio"]
        if limit > 0 and await sync_to_async(over_limit, thread_sensitive=False)(
            "stream", limit, address
        ):
            log.warning("rate limit: %s over %d/min on the media stream", address, limit)
            await receive()  # the websocket.connect message
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.inner(scope, receive, send)
