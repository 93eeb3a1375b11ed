"""A strict fake of OpenAI's REST endpoints used after a call, and one port for all of
the fake OpenAI.

- `POST /v1/audio/transcriptions` (multipart): checks every field the way OpenAI does
  (models, response formats, `chunking_strategy` above 30 s, no `prompt` for the diarize
  model, known-speaker clips of 2–10 s, 25 MB and 1,400 s per request) and "hears" the
  WAV: it finds the tones in the mono mix and looks up in a `VoiceBank` who said what.
- `POST /v1/responses` (JSON): checks the request and, with a strict `json_schema`
  format, OpenAI's strict-mode rules; answers with a `Response` object whose text is a
  JSON value from a responder the test sets per schema name, or a default one.

Anything OpenAI would refuse gets OpenAI's 400 error body *and* is recorded in
`violations`, which tests assert is empty. `FakeOpenAI` puts these endpoints and the
fake Realtime WebSocket server behind one `host:port`, as the app derives every URL from
one `OPENAI_BASE_URL`: a small TCP front pipes WebSocket upgrades to the Realtime fake
and everything else to this HTTP server. Shapes follow openai-python's types
(`TranscriptionDiarized`, `Transcription`, `Response`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import email.parser
import email.policy
import io
import itertools
import math
import re
import secrets
import threading
import time
import wave
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from tests.fakes.realtime_server import FakeRealtimeServer, RealtimeScript
from tests.fakes.threaded_http import QuietHandler, ThreadedHttpService
from tests.fakes.voices import VoiceBank

MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_AUDIO_S = 1400.0  # longer audio is refused by the API (not in the SDK's types)
CHUNKING_REQUIRED_ABOVE_S = 30.0
KNOWN_SPEAKERS_MAX = 4
REFERENCE_MIN_S, REFERENCE_MAX_S = 2.0, 10.0
DIARIZE_MODEL = "gpt-4o-transcribe-diarize"
# Response formats per model, as openai-python's TranscriptionCreateParams documents
# them ("For gpt-4o-transcribe and gpt-4o-mini-transcribe, the only supported format is
# json").
TRANSCRIBE_MODELS = {
    DIARIZE_MODEL: {"json", "text", "diarized_json"},
    "gpt-4o-transcribe": {"json"},
    "gpt-4o-mini-transcribe": {"json"},
    "gpt-4o-mini-transcribe-2025-12-15": {"json"},
    "gpt-transcribe": {"json"},
    "whisper-1": {"json", "text", "srt", "verbose_json", "vtt"},
}
ONLY_FOR_GPT_TRANSCRIBE = {"keywords[]", "languages[]"}
TRANSCRIBE_FIELDS = {
    "file",
    "model",
    "response_format",
    "language",
    "prompt",
    "temperature",
    "stream",
    "chunking_strategy",
    "include[]",
    "timestamp_granularities[]",
    "known_speaker_names[]",
    "known_speaker_references[]",
    "keywords[]",
    "languages[]",
}
DIARIZE_REFUSES = {"prompt", "include[]", "timestamp_granularities[]"}
RESPONSE_FIELDS = {
    "background",
    "conversation",
    "include",
    "input",
    "instructions",
    "max_output_tokens",
    "max_tool_calls",
    "metadata",
    "model",
    "parallel_tool_calls",
    "previous_response_id",
    "prompt",
    "prompt_cache_key",
    "reasoning",
    "safety_identifier",
    "service_tier",
    "store",
    "stream",
    "stream_options",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_logprobs",
    "top_p",
    "truncation",
    "user",
}
RESPONSE_MODEL = re.compile(r"^(gpt-5|gpt-4\.1|gpt-4o|o3|o4)")
SCHEMA_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# Keywords strict structured outputs accept (others are refused by the API).
STRICT_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "const",
    "anyOf",
    "description",
    "title",
    "$defs",
    "$ref",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "default",
}
STRICT_MAX_DEPTH = 10

# How the fake hears: 40 ms windows, louder than -45 dBFS is sound.
WINDOW_S = 0.04
SOUND_DBFS = -45.0
GAP_S = 0.25  # a silence this long ends a segment
PLACEHOLDER = "[unclear]"


class Refused(Exception):
    """OpenAI would answer this request with an error."""

    def __init__(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_body(status: int, message: str, param: str | None, code: str | None) -> bytes:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 429:
        kind = "rate_limit_exceeded"
    return orjson.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


# --- audio ----------------------------------------------------------------------------


def decode_wav(data: bytes) -> tuple[np.ndarray, int, int]:
    """(mono float samples, sample rate, channels) of a PCM WAV."""
    try:
        with wave.open(io.BytesIO(data)) as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise Refused(
            400, f"Invalid file format. Could not decode the audio: {exc}", "file", "invalid_value"
        ) from exc
    if width != 2:
        raise Refused(400, "Unsupported WAV sample width", "file", "invalid_value")
    pcm = np.frombuffer(frames, dtype="<i2").astype(np.float64) / 32768.0
    pcm = pcm[: len(pcm) // channels * channels].reshape(-1, channels)
    return pcm.mean(axis=1), rate, channels


def window_tones(samples: np.ndarray, rate: int) -> list[float | None]:
    """The dominant frequency of each window, or None where it is quiet."""
    size = int(rate * WINDOW_S)
    count = len(samples) // size
    if count == 0:
        return []
    windows = samples[: count * size].reshape(count, size)
    rms = np.sqrt(np.mean(windows**2, axis=1))
    taper = np.hanning(size)
    n_fft = 2048  # zero padding: peaks to 4 Hz at 8 kHz, the bank's tones are 60 Hz apart
    peaks = np.empty(count, dtype=np.int64)
    for first in range(0, count, 2000):  # in blocks: an hour of audio in bounded memory
        block = windows[first : first + 2000] * taper
        spectra = np.abs(np.fft.rfft(block, n=n_fft, axis=1))
        peaks[first : first + len(block)] = np.argmax(spectra[:, 1:], axis=1) + 1
    tones: list[float | None] = []
    for level, peak in zip(rms, peaks, strict=True):
        loud = level > 0 and 20 * math.log10(level) > SOUND_DBFS
        tones.append(peak * rate / n_fft if loud else None)
    return tones


def dominant_tone(samples: np.ndarray, rate: int) -> float | None:
    tones = [t for t in window_tones(samples, rate) if t is not None]
    if not tones:
        return None
    values, counts = np.unique(np.round(tones, -1), return_counts=True)
    return float(values[np.argmax(counts)])


def hear(samples: np.ndarray, rate: int, bank: VoiceBank) -> list[dict]:
    """Segments of speech: runs of one utterance's tone, split at silences."""
    tones = window_tones(samples, rate)
    segments: list[dict] = []
    current: dict | None = None
    quiet = 0
    gap = round(GAP_S / WINDOW_S)
    for index, tone in enumerate(tones):
        utterance = bank.lookup(tone) if tone is not None else None
        if tone is None:
            quiet += 1
            if current is not None and quiet >= gap:
                segments.append(current)
                current = None
            continue
        quiet = 0
        key = utterance.freq_hz if utterance else round(tone, -1)
        if current is not None and current["key"] == key:
            current["end"] = (index + 1) * WINDOW_S
            continue
        if current is not None:
            segments.append(current)
        current = {
            "key": key,
            "utterance": utterance,
            "start": index * WINDOW_S,
            "end": (index + 1) * WINDOW_S,
        }
    if current is not None:
        segments.append(current)
    return [s for s in segments if s["end"] - s["start"] >= 0.1]


def words_for(segments: list[dict]) -> None:
    """The words of each segment: an utterance heard only in part (cut off, or split by
    crosstalk) gives each piece its share of the words, in order."""
    used: dict[int, int] = {}
    for segment in segments:
        utterance = segment["utterance"]
        if utterance is None:
            segment["text"] = PLACEHOLDER
            continue
        words = utterance.text.split()
        heard_s = segment["end"] - segment["start"]
        if utterance.ms:
            share = min(
                len(words), max(1, math.ceil(len(words) * heard_s * 1000 / utterance.ms - 0.25))
            )
        else:
            share = len(words)
        start = used.get(utterance.freq_hz, 0)
        if start >= len(words):
            start = 0  # the same tone heard again: a repetition
        taken = words[start : start + share] or words[-1:]
        used[utterance.freq_hz] = start + len(taken)
        # A whole utterance heard, give or take a window: its full text.
        if start == 0 and utterance.ms and heard_s * 1000 >= utterance.ms - 2 * WINDOW_S * 1000:
            taken = words
            used[utterance.freq_hz] = len(words)
        segment["text"] = " ".join(taken)


# --- the HTTP fake --------------------------------------------------------------------


class FakeOpenAIRest:
    """The REST endpoints on a loopback port of their own (FakeOpenAI fronts them)."""

    def __init__(self, bank: VoiceBank, api_key: str) -> None:
        self.bank = bank
        self.api_key = api_key
        self.requests: list[dict] = []
        self.violations: list[str] = []
        # name of a text.format json_schema -> (request json) -> dict answered as JSON
        self.responders: dict[str, Callable[[dict], Any]] = {}
        self.transcription_faults: list[int] = []
        self.response_faults: list[int] = []
        self.delay_s = 0.0
        self._lock = threading.Lock()
        self._service = ThreadedHttpService()
        self.port = 0

    # --- scripting ------------------------------------------------------------------
    def fail_transcriptions_with(self, statuses: list[int]) -> None:
        with self._lock:
            self.transcription_faults.extend(statuses)

    def fail_responses_with(self, statuses: list[int]) -> None:
        with self._lock:
            self.response_faults.extend(statuses)

    def transcription_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith("/audio/transcriptions")]

    def response_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].endswith("/responses")]

    # --- serving --------------------------------------------------------------------
    def start(self) -> None:
        fake = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, payload = fake.handle(self.path, dict(self.headers), body)
                self.answer(status, "application/json", payload)

            def do_GET(self):
                message = f"Invalid URL (GET {self.path})"
                self.answer(404, "application/json", error_body(404, message, None, None))

        self._service.serve(Handler)
        self.port = self._service.port

    def stop(self) -> None:
        self._service.stop()

    def handle(self, path: str, headers: dict, body: bytes) -> tuple[int, bytes]:
        record: dict[str, Any] = {"path": path, "at": time.monotonic()}
        with self._lock:
            self.requests.append(record)
        try:
            if headers.get("Authorization") != f"Bearer {self.api_key}":
                raise Refused(401, "Incorrect API key provided.", None, "invalid_api_key")
            if self.delay_s:
                time.sleep(self.delay_s)
            if path == "/v1/audio/transcriptions":
                return 200, orjson.dumps(self.transcribe(headers, body, record))
            if path == "/v1/responses":
                return 200, orjson.dumps(self.respond(body, record))
            raise Refused(404, f"Invalid URL (POST {path})", None, None)
        except Refused as refused:
            record["status"] = refused.status
            if "fault" not in record:  # a scripted fault is the test's own doing
                with self._lock:
                    self.violations.append(f"POST {path}: {refused.status} {refused.message}")
            return refused.status, error_body(
                refused.status, refused.message, refused.param, refused.code
            )

    def _scripted_fault(self, faults: list[int], record: dict) -> None:
        with self._lock:
            status = faults.pop(0) if faults else None
        if status is not None:
            record["fault"] = status
            raise Refused(status, f"Scripted fault {status}", None, None)

    # --- /v1/audio/transcriptions ---------------------------------------------------
    def parse_multipart(self, headers: dict, body: bytes) -> tuple[dict, dict]:
        content_type = headers.get("Content-Type", "")
        if not content_type.startswith("multipart/form-data"):
            raise Refused(400, "Expected multipart/form-data", None, None)
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            if part.get_filename() is not None:
                files[name] = payload
            elif name.endswith("[]"):
                fields.setdefault(name, []).append(payload.decode())
            elif name in fields:
                raise Refused(400, f"Duplicate parameter: {name}", name, None)
            else:
                fields[name] = payload.decode()
        return fields, files

    def transcribe(self, headers: dict, body: bytes, record: dict) -> dict:
        if len(body) > MAX_FILE_BYTES + 64 * 1024:
            raise Refused(413, f"Maximum content size limit ({MAX_FILE_BYTES}) exceeded.")
        fields, files = self.parse_multipart(headers, body)
        record["fields"] = {k: v for k, v in fields.items() if k != "known_speaker_references[]"}
        record["reference_count"] = len(fields.get("known_speaker_references[]", []))
        unknown = set(fields) | set(files) - {"file"}
        for name in sorted(unknown - TRANSCRIBE_FIELDS):
            raise Refused(400, f"Unrecognized request argument supplied: {name}", name)
        if "file" not in files:
            raise Refused(400, "you must provide a file", "file", "missing_required_parameter")
        if len(files["file"]) > MAX_FILE_BYTES:
            raise Refused(413, f"Maximum content size limit ({MAX_FILE_BYTES}) exceeded.")
        model = fields.get("model")
        if model not in TRANSCRIBE_MODELS:
            raise Refused(400, f"Invalid model {model!r}", "model", "invalid_value")
        response_format = fields.get("response_format", "json")
        if response_format not in TRANSCRIBE_MODELS[model]:
            raise Refused(
                400,
                f"response_format '{response_format}' is not compatible with model '{model}'",
                "response_format",
                "unsupported_value",
            )
        diarize = model == DIARIZE_MODEL
        for name in sorted(ONLY_FOR_GPT_TRANSCRIBE & set(fields)):
            if model != "gpt-transcribe":
                raise Refused(400, f"{name} is only supported with gpt-transcribe", name)
        if diarize:
            for name in sorted(DIARIZE_REFUSES & set(fields)):
                raise Refused(400, f"{name} is not supported with {model}", name)
        elif "known_speaker_names[]" in fields or "known_speaker_references[]" in fields:
            raise Refused(400, f"Known speakers are only supported with {DIARIZE_MODEL}")
        samples, rate, channels = decode_wav(files["file"])
        duration = len(samples) / rate
        record.update(duration_s=round(duration, 3), channels=channels, rate=rate)
        if duration < 0.1:
            raise Refused(
                400,
                "Audio file is too short. Minimum audio length is 0.1 seconds.",
                "file",
                "audio_too_short",
            )
        if duration > MAX_AUDIO_S:
            raise Refused(
                400,
                f"audio duration {duration:.1f} seconds is longer than "
                f"{MAX_AUDIO_S:.0f} seconds which is the maximum for this model",
                "file",
                "invalid_value",
            )
        chunking = fields.get("chunking_strategy")
        if chunking is not None and chunking != "auto":
            try:
                parsed = orjson.loads(chunking)
            except orjson.JSONDecodeError:
                parsed = None
            if not isinstance(parsed, dict) or parsed.get("type") != "server_vad":
                raise Refused(
                    400,
                    "chunking_strategy must be 'auto' or a server_vad object",
                    "chunking_strategy",
                    "invalid_value",
                )
        if diarize and duration > CHUNKING_REQUIRED_ABOVE_S and chunking is None:
            raise Refused(
                400,
                "chunking_strategy is required for diarization of audio longer than 30 seconds",
                "chunking_strategy",
                "missing_required_parameter",
            )
        names = self.known_speakers(fields)
        self._scripted_fault(self.transcription_faults, record)

        segments = hear(samples, rate, self.bank)
        words_for(segments)
        labels: dict[str, str] = dict(names)
        letters = (chr(c) for c in itertools.count(ord("A")))
        for segment in segments:
            voice = segment["utterance"].voice if segment["utterance"] else f"?{segment['key']}"
            if voice not in labels:
                labels[voice] = next(letters)
            segment["speaker"] = labels[voice]
        text = " ".join(s["text"] for s in segments)
        if response_format == "text":
            return text  # type: ignore[return-value]
        if response_format == "diarized_json":
            return {
                "task": "transcribe",
                "duration": round(duration, 3),
                "text": text,
                "segments": [
                    {
                        "type": "transcript.text.segment",
                        "id": f"seg_{index:03d}",
                        "speaker": s["speaker"],
                        "start": round(s["start"], 3),
                        "end": round(s["end"], 3),
                        "text": s["text"],
                    }
                    for index, s in enumerate(segments)
                ],
                "usage": {"type": "duration", "seconds": math.ceil(duration)},
            }
        audio_tokens = math.ceil(duration * 10)
        text_tokens = len(fields.get("prompt", "").split())
        output_tokens = max(1, len(text.split()))
        return {
            "text": text,
            "usage": {
                "type": "tokens",
                "input_tokens": audio_tokens + text_tokens,
                "input_token_details": {"text_tokens": text_tokens, "audio_tokens": audio_tokens},
                "output_tokens": output_tokens,
                "total_tokens": audio_tokens + text_tokens + output_tokens,
            },
        }

    def known_speakers(self, fields: dict) -> dict[str, str]:
        """voice -> the name the caller of the API gave it, from the reference clips."""
        names = fields.get("known_speaker_names[]", [])
        references = fields.get("known_speaker_references[]", [])
        if len(names) != len(references):
            raise Refused(
                400,
                "known_speaker_names and known_speaker_references must have the same length",
                "known_speaker_names",
            )
        if len(names) > KNOWN_SPEAKERS_MAX:
            raise Refused(
                400,
                f"At most {KNOWN_SPEAKERS_MAX} known speakers are supported",
                "known_speaker_names",
            )
        voices: dict[str, str] = {}
        for name, reference in zip(names, references, strict=True):
            match = re.match(r"^data:audio/[\w.+-]+;base64,(.+)$", reference, re.S)
            if not match:
                raise Refused(
                    400,
                    "known_speaker_references must be data URLs of audio",
                    "known_speaker_references",
                )
            try:
                clip = base64.b64decode(match.group(1), validate=True)
            except (binascii.Error, ValueError) as exc:
                raise Refused(
                    400, "known_speaker_references: invalid base64", "known_speaker_references"
                ) from exc
            samples, rate, _ = decode_wav(clip)
            seconds = len(samples) / rate
            if not REFERENCE_MIN_S <= seconds <= REFERENCE_MAX_S:
                raise Refused(
                    400,
                    f"known speaker reference for {name!r} is {seconds:.1f}s; "
                    "references must be between 2 and 10 seconds",
                    "known_speaker_references",
                )
            tone = dominant_tone(samples, rate)
            utterance = self.bank.lookup(tone) if tone is not None else None
            if utterance is not None:
                voices[utterance.voice] = name
        return voices

    # --- /v1/responses --------------------------------------------------------------
    def respond(self, body: bytes, record: dict) -> dict:
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise Refused(400, "We could not parse the JSON body of your request.") from exc
        record["json"] = request
        if not isinstance(request, dict):
            raise Refused(400, "The body must be a JSON object.")
        for name in sorted(set(request) - RESPONSE_FIELDS):
            raise Refused(400, f"Unknown parameter: '{name}'.", name, "unknown_parameter")
        model = request.get("model")
        if not isinstance(model, str) or not RESPONSE_MODEL.match(model):
            raise Refused(
                400, f"The requested model '{model}' does not exist.", "model", "model_not_found"
            )
        user_text = self.check_input(request.get("input"))
        schema_name, schema = self.check_format(request.get("text"))
        self._scripted_fault(self.response_faults, record)
        responder = self.responders.get(schema_name) if schema_name else None
        if responder is not None:
            value = responder(request)
        elif schema_name == "speaker_identification":
            value = identify_speakers(user_text)
        elif schema is not None:
            value = example_value(schema, user_text)
        else:
            value = "Okay."
        text = value if isinstance(value, str) and schema is None else orjson.dumps(value).decode()
        return response_object(model, text, len(body) // 4)

    def check_input(self, items: Any) -> str:
        if isinstance(items, str):
            return items
        if not isinstance(items, list) or not items:
            raise Refused(400, "input must be a string or a non-empty list", "input")
        texts = []
        for item in items:
            if not isinstance(item, dict) or item.get("role") not in (
                "user",
                "assistant",
                "system",
                "developer",
            ):
                raise Refused(400, "Invalid input item: a message needs a role", "input")
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
            elif isinstance(content, list) and all(
                isinstance(p, dict) and p.get("type") in ("input_text", "output_text")
                for p in content
            ):
                texts.extend(p.get("text", "") for p in content)
            else:
                raise Refused(400, "Invalid content in input message", "input")
        return "\n".join(texts)

    def check_format(self, text: Any) -> tuple[str | None, dict | None]:
        if text is None:
            return None, None
        fmt = text.get("format") if isinstance(text, dict) else None
        if fmt is None or fmt.get("type") == "text":
            return None, None
        if fmt.get("type") != "json_schema":
            raise Refused(
                400, "text.format.type must be text, json_schema or json_object", "text.format.type"
            )
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not SCHEMA_NAME.match(name):
            raise Refused(
                400, "text.format.name must match ^[a-zA-Z0-9_-]{1,64}$", "text.format.name"
            )
        if not isinstance(schema, dict):
            raise Refused(400, "text.format.schema must be an object", "text.format.schema")
        if fmt.get("strict"):
            if schema.get("type") != "object":
                raise Refused(
                    400, "Invalid schema: the root must be an object", "text.format.schema"
                )
            problem = strict_problem(schema, "", 0)
            if problem:
                raise Refused(
                    400,
                    f"Invalid schema for response_format '{name}': {problem}",
                    "text.format.schema",
                    "invalid_json_schema",
                )
        return name, schema


def strict_problem(schema: Any, where: str, depth: int) -> str:
    """OpenAI's strict-mode rules: every object closed, every property required."""
    if not isinstance(schema, dict):
        return ""
    if depth > STRICT_MAX_DEPTH:
        return f"{where or 'root'} nests deeper than {STRICT_MAX_DEPTH} levels"
    for key in schema:
        if key not in STRICT_KEYWORDS:
            return f"'{key}' is not permitted at {where or 'root'}"
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "object" in kinds or "properties" in schema:
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return (
                f"In context={where or 'root'}, 'additionalProperties' is required to be "
                "supplied and to be false"
            )
        if sorted(schema.get("required", [])) != sorted(properties):
            return f"In context={where or 'root'}, 'required' must list every key in 'properties'"
        for name, sub in properties.items():
            problem = strict_problem(sub, f"{where}/{name}", depth + 1)
            if problem:
                return problem
    if isinstance(schema.get("items"), dict):
        return strict_problem(schema["items"], f"{where}/items", depth + 1)
    for index, sub in enumerate(schema.get("anyOf", [])):
        problem = strict_problem(sub, f"{where}/anyOf/{index}", depth + 1)
        if problem:
            return problem
    return ""


def identify_speakers(user_text: str) -> dict:
    """The default "model": the agent is whoever speaks first (agents answer the phone);
    the caller's name is what follows "this is" / "my name is" in someone else's line."""
    lines = re.findall(r"^\[[\d:.]+\] ([^:]+): (.*)$", user_text, re.M)
    agent = lines[0][0] if lines else "A"
    caller_name = None
    for label, text in lines:
        if label == agent:
            continue
        found = re.search(r"\b(?:this is|my name is|I'm|I am) ([A-Z][a-zA-Z'-]+)", text)
        if found:
            caller_name = found.group(1)
            break
    return {"agent_speaker": agent, "caller_name": caller_name}


def example_value(schema: dict, user_text: str) -> Any:
    """A value that fits the schema, as a model following it would give."""
    kinds = schema.get("type")
    kind = next((k for k in kinds if k != "null"), "null") if isinstance(kinds, list) else kinds
    if "enum" in schema:
        return schema["enum"][0]
    if "anyOf" in schema:
        return example_value(schema["anyOf"][0], user_text)
    if kind == "object":
        return {
            name: example_value(sub, user_text)
            for name, sub in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        return []
    if kind == "boolean":
        return False
    if kind in ("integer", "number"):
        return 0
    if kind == "string":
        # Like a model's short summary: what the caller said first, briefly.
        said = re.findall(r"^\[[\d:.]+\] ([^:]+): (.*)$", user_text, re.M)
        callers = [text for who, text in said if said and who != said[0][0]]
        if not callers:
            return "A short phone call."
        words = callers[0].split()
        return "The caller said: " + " ".join(words[:12]) + ("…" if len(words) > 12 else "")
    return None


def response_object(model: str, text: str, input_tokens: int) -> dict:
    output_tokens = max(1, len(text) // 4)
    output: list[dict] = []
    if model.startswith(("gpt-5", "o3", "o4")):
        output.append({"id": "rs_" + secrets.token_hex(12), "type": "reasoning", "summary": []})
    output.append(
        {
            "id": "msg_" + secrets.token_hex(12),
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
        }
    )
    return {
        "id": "resp_" + secrets.token_hex(12),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "temperature": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


# --- one port for everything ----------------------------------------------------------


class FakeOpenAI:
    """The fake Realtime WebSocket server and the fake REST endpoints on one port."""

    def __init__(
        self,
        realtime_script: RealtimeScript | None = None,
        *,
        voice_bank: VoiceBank | None = None,
        api_key: str = "sk-test",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.bank = voice_bank or VoiceBank()
        # Both sides check the same key, as OpenAI does.
        realtime_script = realtime_script or RealtimeScript(api_key=api_key)
        if realtime_script.voice_bank is None:
            realtime_script.voice_bank = self.bank
        self.realtime = FakeRealtimeServer(realtime_script)
        self.rest = FakeOpenAIRest(self.bank, api_key)
        self.host, self.port = host, port
        self._front: asyncio.Server | None = None
        self._pipes: set[asyncio.Task] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def violations(self) -> list[str]:
        return self.realtime.violations + self.rest.violations

    async def start(self) -> None:
        await self.realtime.start()
        self.rest.start()
        self._front = await asyncio.start_server(self._on_client, self.host, self.port)
        self.port = self._front.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._front is not None:
            self._front.close()
            for task in list(self._pipes):
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._front.wait_closed(), 2)
            self._front = None
        await self.realtime.stop()
        self.rest.stop()

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        task = asyncio.current_task()
        self._pipes.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            upgrade = b"\nupgrade: websocket" in head.lower().replace(b"\r", b"")
            port = self.realtime.port if upgrade else self.rest.port
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            up_writer.write(head)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        finally:
            self._pipes.discard(task)
            writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            sink.close()
