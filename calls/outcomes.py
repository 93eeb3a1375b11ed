"""How calls end and what they cost: plain values shared by the bridge and the models
(importable without Django's app registry, so the bridge stays a pure module)."""

from django.db.models import TextChoices


class CompletionReason(TextChoices):
    NORMAL = "normal", "Normal (stream closed)"
    CALLER_HANGUP = "caller_hangup", "Caller hung up"
    AGENT_HANGUP = "agent_hangup", "Agent hung up"
    STAFF_HANGUP = "staff_hangup", "Ended by staff"
    TIME_LIMIT = "time_limit", "Time limit reached (agent said goodbye)"
    OPENAI_CONNECTION_FAILED = "openai_connection_failed", "OpenAI connection failure"
    OPENAI_ERROR = "openai_error", "OpenAI error"
    SERVER_ERROR = "server_error", "Server error"
    NEVER_CONNECTED = "never_connected", "Media stream never connected"
    TRANSFERRED = "transferred", "Transferred to a person"
    # Outbound calls that never reached a person (Twilio's final call status).
    NO_ANSWER = "no_answer", "Not answered"
    BUSY = "busy", "Line busy"
    CALL_FAILED = "call_failed", "Could not be placed"
    CANCELED = "canceled", "Canceled before it was answered"
    MACHINE_HANGUP = "machine_hangup", "Answering machine: hung up"
    VOICEMAIL_LEFT = "voicemail_left", "Answering machine: message left"


FAULT_REASONS = frozenset(
    {
        CompletionReason.OPENAI_CONNECTION_FAILED,
        CompletionReason.OPENAI_ERROR,
        CompletionReason.SERVER_ERROR,
        CompletionReason.NEVER_CONNECTED,
    }
)

# Token counters summed from every `response.done` of a call.
USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "input_text_tokens",
    "input_audio_tokens",
    "cached_tokens",
    "output_text_tokens",
    "output_audio_tokens",
)
