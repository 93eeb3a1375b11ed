"""The OpenAI models an agent may use: one table each, from openai-python's generated
types (`realtime_session_create_request_param.py` and `audio_transcription_param.py`,
checked 2026-11). The agent form's choices, the session configuration and the tests all
read these tables; `tests/test_model_catalog.py` checks them against the fake's schema."""

from dataclasses import dataclass
from decimal import Decimal

# Audio tokens per minute of speech, as OpenAI counts them (the fake counts the same):
# the caller's audio at one token per 100 ms, the agent's at one per 50 ms.
CALLER_AUDIO_TOKENS_PER_MIN = 600
AGENT_AUDIO_TOKENS_PER_MIN = 1200
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class RealtimePrices:
    """US dollars per million tokens, from OpenAI's model pages (checked 2026-11)."""

    text_in: Decimal
    text_out: Decimal
    audio_in: Decimal
    audio_out: Decimal

    def audio_in_per_min(self) -> Decimal:
        return self.audio_in * CALLER_AUDIO_TOKENS_PER_MIN / MILLION

    def audio_out_per_min(self) -> Decimal:
        return self.audio_out * AGENT_AUDIO_TOKENS_PER_MIN / MILLION

    def call_minute_estimate(self) -> Decimal:
        """A minute of call in which the agent speaks half the time: the caller's audio
        for the whole minute in, half a minute of the agent's out. Leaves out the context
        re-read on every turn (billed as cached input), which grows with the call."""
        return self.audio_in_per_min() + self.audio_out_per_min() / 2


FULL_PRICES = RealtimePrices(Decimal(4), Decimal(16), Decimal(32), Decimal(64))
REASONING_PRICES = RealtimePrices(Decimal(4), Decimal(24), Decimal(32), Decimal(64))
MINI_PRICES = RealtimePrices(Decimal("0.6"), Decimal("2.4"), Decimal(10), Decimal(20))


@dataclass(frozen=True)
class RealtimeModelInfo:
    name: str
    label: str
    prices: RealtimePrices
    reasoning: bool = False  # takes `reasoning: {effort}` (and parallel tool calls)
    note: str = ""  # the trade-off, for the agent form

    def choice_label(self) -> str:
        return f"{self.label} · about ${self.prices.call_minute_estimate():.3f} per call minute"


REALTIME_MODELS = (
    RealtimeModelInfo(
        "gpt-realtime-1.5",
        "gpt-realtime-1.5 (default)",
        FULL_PRICES,
        note="The flagship voice model: natural speech, quick answers.",
    ),
    RealtimeModelInfo(
        "gpt-realtime-2.1",
        "gpt-realtime-2.1 (reasoning)",
        REASONING_PRICES,
        reasoning=True,
        note="Thinks before answering: better with tools and hard questions, slower to "
        "start speaking as the reasoning effort rises.",
    ),
    RealtimeModelInfo(
        "gpt-realtime-2.1-mini",
        "gpt-realtime-2.1-mini (reasoning)",
        MINI_PRICES,
        reasoning=True,
        note="A smaller reasoning model: about a third of the price, fast, less capable.",
    ),
    RealtimeModelInfo(
        "gpt-realtime-2",
        "gpt-realtime-2 (reasoning)",
        REASONING_PRICES,
        reasoning=True,
        note="The previous reasoning model; prefer 2.1.",
    ),
    RealtimeModelInfo("gpt-realtime", "gpt-realtime", FULL_PRICES, note="The first GA model."),
    RealtimeModelInfo(
        "gpt-realtime-mini",
        "gpt-realtime-mini",
        MINI_PRICES,
        note="The cheapest: good for simple scripts and short calls.",
    ),
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


def realtime_cost(model: str, usage: dict[str, int]) -> Decimal | None:
    """What a call's Realtime usage (the Call's token fields) cost at list prices; None for
    a model missing from the table. Cached input is billed at about a tenth and counted
    here at the text or audio input price: an upper bound."""
    info = realtime_model(model)
    if info is None:
        return None
    p = info.prices
    return (
        usage.get("input_text_tokens", 0) * p.text_in
        + usage.get("input_audio_tokens", 0) * p.audio_in
        + usage.get("output_text_tokens", 0) * p.text_out
        + usage.get("output_audio_tokens", 0) * p.audio_out
    ) / MILLION


REASONING_EFFORT_CHOICES = [("", "Model default")] + [(e, e) for e in REASONING_EFFORTS]
LIVE_TRANSCRIPTION_CHOICES = [("", "Off")] + [(m.name, m.label) for m in LIVE_TRANSCRIPTION_MODELS]
