"""The agent's completion webhook: the call (and later its transcript and outcome) POSTed
as JSON, signed so the receiver can check it came from us and is fresh.

Headers:
  X-Voiceagents-Event:      call.completed | transcript.ready
  X-Voiceagents-Event-Id:   the same UUID on every retry of one event (drop duplicates)
  X-Voiceagents-Timestamp, X-Voiceagents-Signature: see voiceagents/signing.py
"""

import httpx
import orjson
from django.conf import settings
from django.utils import timezone

from calls.models import Call
from voiceagents.signing import signature_headers


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
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "voiceagents-webhook/1",
        "X-Voiceagents-Event": event,
        "X-Voiceagents-Event-Id": event_id,
        **signature_headers(secret, body),
    }
    with httpx.Client(
        timeout=settings.WEBHOOK_TIMEOUT_S, follow_redirects=False, trust_env=False
    ) as http:
        return http.post(url, content=body, headers=headers)


def is_retryable(status_code: int | None) -> bool:
    """Network failures, timeouts, rate limits and server errors are retried; any other
    answer is the receiver's final word (e.g. a 400 for a signature it will never accept)."""
    return status_code is None or status_code in (408, 409, 425, 429) or status_code >= 500
