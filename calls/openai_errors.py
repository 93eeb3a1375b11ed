"""What an OpenAI Realtime `error` event means for the call.

OpenAI's reference for the `error` server event: "Most errors are recoverable and the
session will stay open." So an error ends a call only when nothing the session can do
would help (the key, the account, a session configuration the server refused); the
session's time limit moves the call to a new session; everything else is logged, counted
on the call and the conversation goes on. See docs/protocol-notes.md for the sources.
"""

from enum import Enum


class ErrorClass(Enum):
    BENIGN = "benign"  # a normal race with server VAD, or a late truncate: go on quietly
    RECOVERABLE = "recoverable"  # log and go on: the session is still open
    SESSION = "session"  # this session is over: move the call to a new one
    FATAL = "fatal"  # no session will work: end the call with the apology


# Races inherent to the protocol: server VAD creates and cancels responses by itself,
# so our cancel or create can arrive a moment too late or too early.
BENIGN_CODES = frozenset({"response_cancel_not_active", "conversation_already_has_active_response"})
SESSION_CODES = frozenset({"session_expired"})
FATAL_CODES = frozenset(
    {
        "invalid_api_key",
        "insufficient_quota",
        "billing_hard_limit_reached",
        "account_deactivated",
        "model_not_found",
    }
)
# Error types that name the account or key, whatever the code says (or when it is null).
FATAL_TYPES = frozenset({"authentication_error", "permission_error", "insufficient_quota"})

# The bridge gives its own events recognisable ids, so an error's `event_id` tells which
# of our events it was about.
TRUNCATE_EVENT_PREFIX = "va_truncate_"
SESSION_UPDATE_EVENT_PREFIX = "va_session_update_"


def classify(error: dict) -> ErrorClass:
    code = error.get("code") or ""
    error_type = error.get("type") or ""
    about = error.get("event_id") or ""
    if code in SESSION_CODES:
        return ErrorClass.SESSION
    if code in FATAL_CODES or error_type in FATAL_TYPES:
        return ErrorClass.FATAL
    if about.startswith(SESSION_UPDATE_EVENT_PREFIX):
        # The server kept its old configuration: wrong audio format, voice or tools.
        return ErrorClass.FATAL
    if code in BENIGN_CODES or about.startswith(TRUNCATE_EVENT_PREFIX):
        # A truncate of an item the server no longer has, or past its audio: the
        # caller's words still reach the model; only the assistant's text stays longer.
        return ErrorClass.BENIGN
    return ErrorClass.RECOVERABLE
