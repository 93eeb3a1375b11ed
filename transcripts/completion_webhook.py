"""The agent's completion webhook: the call (and later its transcript and outcome) POSTed
as JSON, signed so the receiver can check it came from us and is fresh.

Headers:
  X-Voiceagents-Event:      call.completed | transcript.ready
  X-Voiceagents-Event-Id:   the same UUID on every retry of one event (drop duplicates)
  X-Voiceagents-Timestamp:  Unix seconds when this attempt was signed
  X-Voiceagents-Signature:  v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>
A receiver recomputes the HMAC over the raw body, compares in constant time, and rejects
timestamps older than a few minutes (replays). `verify()` below does exactly that.
"""

import hashlib
import hmac
import time

import httpx
import orjson
from django.conf import settings
from django.utils import timezone

from calls.models import Call

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    now: float | None = None,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """What a receiver runs: the signature matches and the timestamp is recent."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - sent_at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent_at, body), signature)


def payload(call: Call, event: str, event_id: str) -> bytes:
    from calls.api import call_detail  # the same shape as GET /api/calls/<sid>/

    return orjson.dumps(
        {
            "event": event,
            "event_id": event_id,
            "created_at": timezone.now(),
            "call": call_detail(call),
        }
    )


def post(url: str, secret: str, event: str, event_id: str, body: bytes) -> httpx.Response:
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "voiceagents-webhook/1",
        "X-Voiceagents-Event": event,
        "X-Voiceagents-Event-Id": event_id,
        "X-Voiceagents-Timestamp": str(timestamp),
        "X-Voiceagents-Signature": sign(secret, timestamp, body),
    }
    with httpx.Client(
        timeout=settings.WEBHOOK_TIMEOUT_S, follow_redirects=False, trust_env=False
    ) as http:
        return http.post(url, content=body, headers=headers)


def is_retryable(status_code: int | None) -> bool:
    """Network failures, timeouts, rate limits and server errors are retried; any other
    answer is the receiver's final word (e.g. a 400 for a signature it will never accept)."""
    return status_code is None or status_code in (408, 409, 425, 429) or status_code >= 500
