"""What post-call work costs, in US dollars: one table of list prices (per million
tokens, or per minute of audio where OpenAI bills by duration). Estimates: the invoice
is the authority; change the table when OpenAI's price list changes."""

from decimal import Decimal

MILLION = Decimal(1_000_000)

# model: (input text, input audio, output) per million tokens
TOKEN_PRICES = {
    "gpt-4o-transcribe": (Decimal("2.50"), Decimal("6.00"), Decimal("10.00")),
    "gpt-4o-mini-transcribe": (Decimal("1.25"), Decimal("3.00"), Decimal("5.00")),
    "gpt-4o-transcribe-diarize": (Decimal("2.50"), Decimal("6.00"), Decimal("10.00")),
    "gpt-5": (Decimal("1.25"), Decimal("1.25"), Decimal("10.00")),
    "gpt-5-mini": (Decimal("0.25"), Decimal("0.25"), Decimal("2.00")),
    "gpt-5-nano": (Decimal("0.05"), Decimal("0.05"), Decimal("0.40")),
    "gpt-4.1-mini": (Decimal("0.40"), Decimal("0.40"), Decimal("1.60")),
}
# model: dollars per minute of audio, when the usage comes back as a duration
MINUTE_PRICES = {
    "gpt-4o-transcribe": Decimal("0.006"),
    "gpt-4o-transcribe-diarize": Decimal("0.006"),
    "gpt-4o-mini-transcribe": Decimal("0.003"),
    "whisper-1": Decimal("0.006"),
}


def _prices(model: str) -> tuple[Decimal, Decimal, Decimal]:
    # Dated snapshots (gpt-5-mini-2025-08-07) cost what their family costs.
    for name in sorted(TOKEN_PRICES, key=len, reverse=True):
        if model == name or model.startswith(name + "-"):
            return TOKEN_PRICES[name]
    return (Decimal(0), Decimal(0), Decimal(0))


def transcription_cost(model: str, usage: dict, audio_seconds: float) -> Decimal:
    """Cost of one transcription request from the usage OpenAI returned."""
    if usage.get("type") == "tokens":
        text_in, audio_in, out = _prices(model)
        details = usage.get("input_token_details") or {}
        audio_tokens = details.get("audio_tokens", usage.get("input_tokens", 0))
        text_tokens = details.get("text_tokens", 0)
        return (
            audio_tokens * audio_in + text_tokens * text_in + usage.get("output_tokens", 0) * out
        ) / MILLION
    seconds = (
        usage.get("seconds", audio_seconds) if usage.get("type") == "duration" else audio_seconds
    )
    return MINUTE_PRICES.get(model, Decimal(0)) * Decimal(str(seconds)) / 60


def text_cost(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    text_in, _, out = _prices(model)
    return (input_tokens * text_in + output_tokens * out) / MILLION
