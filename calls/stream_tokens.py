"""Signed, expiring tokens that tie a media stream to the call whose webhook made it.

Twilio drops the query string of a <Stream> URL, so the token travels in the URL path
(checked at connect, before any OpenAI session is opened) and again in a <Parameter>
(checked at `start`). Single use is enforced by `Call.claim_stream`.
"""

from django.conf import settings
from django.core import signing

SALT = "calls.stream-token"


def make_stream_token(call_sid: str) -> str:
    return signing.dumps(call_sid, salt=SALT)


def read_stream_token(token: str) -> str | None:
    """The call sid named by a valid, unexpired token; None for anything else."""
    try:
        call_sid = signing.loads(token, salt=SALT, max_age=settings.STREAM_TOKEN_MAX_AGE_S)
    except signing.BadSignature:  # includes SignatureExpired
        return None
    return call_sid if isinstance(call_sid, str) else None
