"""The OpenAI models an agent may use: one table each, from openai-python's generated
types (`realtime_session_create_request_param.py` and `audio_transcription_param.py`,
checked 2026-11). The agent form's choices, the session configuration and the tests all
read these tables; `tests/test_model_catalog.py` checks them against the fake's schema."""

from dataclasses import dataclass


@dataclass(frozen=True)
class RealtimeModelInfo:
    name: str
    label: str
    reasoning: bool = False  # takes `reasoning: {effort}` (and parallel tool calls)


REALTIME_MODELS = (
    RealtimeModelInfo("gpt-realtime-1.5", "gpt-realtime-1.5 (default)"),
    RealtimeModelInfo("gpt-realtime-2.1", "gpt-realtime-2.1 (reasoning)", reasoning=True),
    RealtimeModelInfo("gpt-realtime-2.1-mini", "gpt-realtime-2.1-mini (reasoning)", reasoning=True),
    RealtimeModelInfo("gpt-realtime-2", "gpt-realtime-2 (reasoning)", reasoning=True),
    RealtimeModelInfo("gpt-realtime", "gpt-realtime"),
    RealtimeModelInfo("gpt-realtime-mini", "gpt-realtime-mini"),
)
DEFAULT_REALTIME_MODEL = "gpt-realtime-1.5"
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")


@dataclass(frozen=True)
class TranscriptionModelInfo:
    name: str
    label: str
    keywords_and_languages: bool = False  # accepts `keywords` and `languages`


# For the caller's words in the live transcript (`audio.input.transcription.model`).
LIVE_TRANSCRIPTION_MODELS = (
    TranscriptionModelInfo("gpt-4o-transcribe", "gpt-4o-transcribe"),
    TranscriptionModelInfo("gpt-4o-mini-transcribe", "gpt-4o-mini-transcribe"),
    TranscriptionModelInfo(
        "gpt-transcribe", "gpt-transcribe (keywords, languages)", keywords_and_languages=True
    ),
    TranscriptionModelInfo(
        "gpt-live-transcribe",
        "gpt-live-transcribe (keywords, languages)",
        keywords_and_languages=True,
    ),
    TranscriptionModelInfo("whisper-1", "whisper-1"),
)


def realtime_model(name: str) -> RealtimeModelInfo | None:
    return next((m for m in REALTIME_MODELS if m.name == name), None)


def live_transcription_model(name: str) -> TranscriptionModelInfo | None:
    return next((m for m in LIVE_TRANSCRIPTION_MODELS if m.name == name), None)


REALTIME_MODEL_CHOICES = [(m.name, m.label) for m in REALTIME_MODELS]
REASONING_EFFORT_CHOICES = [("", "Model default")] + [(e, e) for e in REASONING_EFFORTS]
LIVE_TRANSCRIPTION_CHOICES = [("", "Off")] + [(m.name, m.label) for m in LIVE_TRANSCRIPTION_MODELS]
