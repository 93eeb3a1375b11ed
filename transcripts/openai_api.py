"""The two OpenAI REST calls of the post-call pipeline: audio transcription (multipart)
and structured output through the Responses API. Base URL and key from settings, so the
tests' fake stands in for OpenAI."""

import logging
from dataclasses import dataclass, field

import httpx
import orjson
from django.conf import settings

log = logging.getLogger(__name__)


class OpenAIError(Exception):
    """OpenAI refused the request; sending it again will not help."""


class TransientOpenAIError(OpenAIError):
    """Rate limited, a server fault or a network failure: worth retrying later."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass
class TranscriptionResult:
    text: str
    segments: list[dict] = field(default_factory=list)  # diarized_json only
    duration_s: float | None = None
    usage: dict = field(default_factory=dict)


@dataclass
class StructuredResult:
    value: dict
    model: str
    input_tokens: int = 0
    output_tokens: int = 0


def client() -> httpx.Client:
    return httpx.Client(
        base_url=settings.OPENAI_BASE_URL,
        headers={"Authorization": f"Bearer {settings.OPENAI_API_KEY}"},
        timeout=settings.OPENAI_HTTP_TIMEOUT_S,
        trust_env=False,
    )


def _raise_for(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:300]
    text = f"{what}: HTTP {response.status_code}: {message}"
    if response.status_code in (408, 409, 429) or response.status_code >= 500:
        retry_after = response.headers.get("retry-after")
        raise TransientOpenAIError(
            text, float(retry_after) if retry_after and retry_after.isdigit() else None
        )
    raise OpenAIError(text)


def transcribe(
    http: httpx.Client, wav: bytes, model: str, fields: list[tuple[str, str]]
) -> TranscriptionResult:
    """POST /audio/transcriptions. `fields` are the form fields besides file and model
    (repeated names such as known_speaker_names[] stay in order)."""
    form: dict[str, str | list[str]] = {"model": model}
    for name, value in fields:
        if name.endswith("[]"):  # repeated fields go as lists, in order
            form.setdefault(name, [])
            form[name].append(value)  # type: ignore[union-attr]
        else:
            form[name] = value
    try:
        response = http.post(
            "/audio/transcriptions",
            data=form,
            files={"file": ("audio.wav", wav, "audio/wav")},
        )
    except httpx.HTTPError as exc:
        raise TransientOpenAIError(f"transcription request failed: {exc!r}") from exc
    _raise_for(response, "transcription")
    body = response.json()
    return TranscriptionResult(
        text=body.get("text", ""),
        segments=body.get("segments") or [],
        duration_s=body.get("duration"),
        usage=body.get("usage") or {},
    )


def structured(
    http: httpx.Client, model: str, instructions: str, user_text: str, name: str, schema: dict
) -> StructuredResult:
    """A Responses API call whose answer must fit `schema` (strict structured output)."""
    request = {
        "model": model,
        "instructions": instructions,
        "input": [{"role": "user", "content": user_text}],
        "text": {"format": {"type": "json_schema", "name": name, "schema": schema, "strict": True}},
        "store": False,
    }
    try:
        response = http.post(
            "/responses",
            content=orjson.dumps(request),
            headers={"Content-Type": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise TransientOpenAIError(f"{name} request failed: {exc!r}") from exc
    _raise_for(response, name)
    body = response.json()
    if body.get("status") not in (None, "completed"):
        raise OpenAIError(
            f"{name}: response {body.get('status')}: {body.get('incomplete_details')}"
        )
    text = _output_text(body)
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(f"{name}: the answer is not JSON: {text[:200]!r}") from exc
    usage = body.get("usage") or {}
    return StructuredResult(
        value=value,
        model=body.get("model", model),
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
    )


def _output_text(body: dict) -> str:
    """The text of the assistant message; reasoning models put a reasoning item first."""
    for item in body.get("output") or []:
        if item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if part.get("type") == "output_text":
                return part.get("text", "")
            if part.get("type") == "refusal":
                raise OpenAIError(f"the model refused: {part.get('refusal', '')[:200]}")
    raise OpenAIError("the response has no output text")
