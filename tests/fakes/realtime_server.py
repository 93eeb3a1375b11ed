"""A strict fake of the OpenAI Realtime API (GA protocol) over a loopback WebSocket.

Tests point the app's OPENAI_BASE_URL at `FakeRealtimeServer.base_url` and script what
the "model" does with `RealtimeScript` / `Reply`. The fake checks every client event
against the GA types (see `realtime_schema`), answers mistakes the way the real API
does (an `error` event) and records each one in `violations`, so a test can assert
that the app spoke the protocol correctly.

Deterministic numbers, so tests can predict them:
- Reply audio is a sine tone in the session's output format; its frequency depends on
  the session and response number (`reply_tone_hz`), so every response's bytes differ.
- Usage per response: output audio tokens = audio ms generated // 50; output text
  tokens = words in the transcript (function calls: len(arguments) // 4 + 1); input
  text tokens = 10 + words in the instructions + 5 per conversation item; input audio
  tokens = committed caller audio ms // 100; cached tokens = the previous response's
  input tokens rounded down to a multiple of 64 (0 for the first), text first.
- VAD: 20 ms windows; a window is speech when its mean absolute linear amplitude is
  above threshold * 1000 (0.5 -> 500, the `audio.is_speech` default). semantic_vad acts
  like server_vad with the defaults (300 ms prefix padding, 500 ms silence).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import contextlib
import copy
import functools
import http
import inspect
import logging
import math
import random
import re
import string
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tests.fakes import audio
from tests.fakes.realtime_schema import Problem, decode_base64_strict, find_problems

logger = logging.getLogger(__name__)

DEFAULT_CALLER_TRANSCRIPT = "I have a question."
MIN_COMMIT_MS = 100  # the real API refuses to commit less than 100 ms of audio
VAD_WINDOW_MS = 20
REPLY_AMPLITUDE = 8000
SESSION_EXPIRED_MESSAGE = "Your session hit the maximum duration of 60 minutes."
REALTIME_PATH = "/v1/realtime"

SERVER_VAD_DEFAULTS = {
    "type": "server_vad",
    "threshold": 0.5,
    "prefix_padding_ms": 300,
    "silence_duration_ms": 500,
    "idle_timeout_ms": None,
    "create_response": True,
    "interrupt_response": True,
}
SEMANTIC_VAD_DEFAULTS = {
    "type": "semantic_vad",
    "eagerness": "auto",
    "create_response": True,
    "interrupt_response": True,
}


# --- the script: what the "model" does ------------------------------------------------


@dataclass
class Reply:
    """One model response; replies are consumed in order, one per generated response."""

    text: str = "Okay."  # transcript of the spoken reply
    audio_ms: int = 600  # how much audio to generate
    function_call: tuple[str, dict] | None = None  # call this tool (name, arguments) instead
    error: tuple[str, str | None] | None = None  # send an `error` event (type, code) instead
    # Start the response, then end it `failed` with status_details.error (type, code).
    fail: tuple[str, str | None] | None = None
    close_after_chunks: int | None = None  # drop the TCP connection after this many deltas
    malformed_after_chunks: int | None = None  # send a non-JSON frame after this many deltas


@dataclass
class RealtimeScript:
    replies: list[Reply] = field(default_factory=list)  # then Reply() once exhausted
    caller_transcripts: list[str] = field(default_factory=list)  # one per committed turn
    reply_delay_ms: int = 0  # model latency between the trigger and response.created
    first_reply_delay_ms: int | None = None  # override for the session's first response
    audio_chunk_ms: int = 100  # audio per response.output_audio.delta
    audio_speed: float = 4.0  # x real time; 0 sends all audio at once
    session_max_ms: int | None = None  # then the real "session expired" error and close
    reject_status: int | None = None  # refuse the handshake with this HTTP status
    api_key: str = "sk-test"  # expected bearer token; anything else gets 401
    # A tests.fakes.voices.VoiceBank: replies then take their tone from it, so the fake
    # transcription endpoint can tell what the agent said in a recording.
    voice_bank: Any = None
    # How long after a commit the caller's transcript comes; None: it never does.
    transcription_delay_ms: int | None = 50
    # A server that applied other formats than asked: what session.updated reports.
    reported_audio_format: dict | None = None
    # False: `response.function_call_arguments.done` comes without `name`, so a client has
    # to take the tool's name from the `function_call` output item.
    name_in_arguments_done: bool = True


# --- what tests inspect ---------------------------------------------------------------


@dataclass
class FakeSession:
    """Everything one connection did, for assertions."""

    model: str
    headers: Headers
    index: int = 0  # position in FakeRealtimeServer.sessions
    received: list[dict] = field(default_factory=list)  # appends stored without "audio"
    input_audio: bytearray = field(default_factory=bytearray)  # every appended byte
    sent: list[dict] = field(default_factory=list)  # every server event, deltas included
    audio_sent_by_item: dict[str, list[str]] = field(default_factory=dict)  # base64 deltas
    truncations: list[dict] = field(default_factory=list)
    session_config: dict = field(default_factory=dict)  # effective session after updates
    violations: list[str] = field(default_factory=list)  # also in the server's list
    benign_errors: list[dict] = field(default_factory=list)  # error events that are not bugs
    closed: bool = False
    close_reason: str | None = None

    def received_types(self) -> list[str]:
        return [e.get("type", "?") for e in self.received]

    def sent_types(self) -> list[str]:
        return [e["type"] for e in self.sent]

    def sent_events(self, event_type: str) -> list[dict]:
        return [e for e in self.sent if e["type"] == event_type]

    def audio_bytes_for_item(self, item_id: str) -> bytes:
        return b"".join(base64.b64decode(d) for d in self.audio_sent_by_item.get(item_id, []))


# --- ids, formats and audio -----------------------------------------------------------

_ID_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An id shaped like the real ones, e.g. event_C9G5RJeJ2gF77mV7f2B1j."""
    return f"{prefix}_{''.join(random.choices(_ID_ALPHABET, k=21))}"


@dataclass(frozen=True)
class _Codec:
    bytes_per_ms: int
    sample_rate: int


_ULAW_ABS = [abs(audio.ulaw_to_linear(b)) for b in range(256)]
_ALAW_ABS = [abs(audio.alaw_to_linear(b)) for b in range(256)]


def _codec(audio_format: dict) -> _Codec:
    if audio_format.get("type") == "audio/pcm":
        return _Codec(bytes_per_ms=48, sample_rate=24000)  # 16-bit mono at 24 kHz
    return _Codec(bytes_per_ms=8, sample_rate=8000)  # G.711: one byte per sample


def mean_abs_amplitude(chunk: bytes, format_type: str) -> float:
    """Mean absolute linear amplitude of a chunk in any of the three GA formats."""
    if not chunk:
        return 0.0
    if format_type == "audio/pcm":
        samples = array.array("h", chunk[: len(chunk) // 2 * 2])
        if sys.byteorder == "big":
            samples.byteswap()
        return sum(abs(s) for s in samples) / max(1, len(samples))
    table = _ALAW_ABS if format_type == "audio/pcma" else _ULAW_ABS
    return sum(table[b] for b in chunk) / len(chunk)


def reply_tone_hz(session_index: int, response_number: int) -> int:
    """A different frequency for every response of a session (and across sessions)."""
    return 300 + (response_number * 97 + session_index * 31) % 2900


@functools.lru_cache(maxsize=256)
def reply_audio(format_type: str, freq: int, ms: int) -> bytes:
    """`ms` of a sine tone in the given output format (little-endian PCM16 for audio/pcm)."""
    rate = 24000 if format_type == "audio/pcm" else 8000
    step = 2 * math.pi * freq / rate
    samples = [round(REPLY_AMPLITUDE * math.sin(step * i)) for i in range(ms * rate // 1000)]
    if format_type == "audio/pcm":
        pcm = array.array("h", samples)
        if sys.byteorder == "big":
            pcm.byteswap()
        return pcm.tobytes()
    encode = audio.linear_to_alaw if format_type == "audio/pcma" else audio.linear_to_ulaw
    return bytes(encode(s) for s in samples)


def _split_text(text: str, parts: int = 3) -> list[str]:
    """Split a transcript into a few deltas that join back to the text."""
    words = re.findall(r"\S+\s*", text)
    if not words:
        return [text] if text else []
    size = math.ceil(len(words) / parts)
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _word_count(text: str) -> int:
    return len(text.split())


def default_session(model: str, expires_at: int) -> dict:
    """The session object the real API reports in session.created (GA defaults)."""
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": new_id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "max_output_tokens": "inf",
        "tracing": None,
        "truncation": "auto",
        "prompt": None,
        "include": None,
        "expires_at": expires_at,
        "audio": {
            "input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": dict(SERVER_VAD_DEFAULTS),
            },
            "output": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "voice": "marin",
                "speed": 1.0,
            },
        },
    }


def _effective_format(fmt: dict) -> dict:
    return {"type": "audio/pcm", "rate": 24000} if fmt["type"] == "audio/pcm" else dict(fmt)


def _effective_turn_detection(turn_detection: dict | None) -> dict | None:
    """A turn_detection update replaces the old one; unset fields take the defaults."""
    if turn_detection is None:
        return None
    if turn_detection["type"] == "server_vad":
        return {**SERVER_VAD_DEFAULTS, **turn_detection}
    return {**SEMANTIC_VAD_DEFAULTS, **turn_detection}


def merge_session(current: dict, update: dict) -> dict:
    """Only the fields present in a session.update change; audio merges per direction."""
    merged = copy.deepcopy(current)
    for key, value in update.items():
        if key != "audio":
            merged[key] = copy.deepcopy(value)
            continue
        for direction in ("input", "output"):
            for name, setting in value.get(direction, {}).items():
                if name == "format":
                    setting = _effective_format(setting)
                elif name == "turn_detection":
                    setting = _effective_turn_detection(setting)
                merged["audio"][direction][name] = copy.deepcopy(setting)
    return merged


# --- per-connection state -------------------------------------------------------------


@dataclass
class _OutputItem:
    item: dict  # the wire item, updated as it progresses
    kind: str  # "audio" | "text" | "function_call"
    part_open: bool = False  # content_part.added sent, content_part.done not yet
    text_sent: str = ""  # transcript / text deltas sent so far
    done: bool = False


@dataclass
class _Response:
    id: str
    number: int  # 1-based within the session
    reply: Reply
    in_conversation: bool  # False for conversation="none" (out of band)
    modalities: list[str]
    output_format: dict
    voice: Any
    max_output_tokens: Any
    metadata: dict | None
    instructions: str
    by_client: bool = False  # asked for by response.create (not server VAD)
    items: list[_OutputItem] = field(default_factory=list)
    audio_ms_generated: int = 0
    first_audio_at: float | None = None  # loop time of the first audio delta
    created_sent: bool = False
    cancelled: bool = False
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task | None = None

    async def pause(self, seconds: float) -> bool:
        """Sleep unless cancelled first; True when the response has been cancelled."""
        if seconds <= 0:
            await asyncio.sleep(0)  # still let the reader run between chunks
            return self.cancelled
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.cancel_event.wait()
        return self.cancelled


@dataclass
class _VadSettings:
    amplitude_threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    create_response: bool
    interrupt_response: bool


@dataclass
class _VadState:
    processed: int = 0  # bytes of input_audio already run through detection
    speaking: bool = False
    item_id: str | None = None
    last_speech_end_ms: int = 0
    silence_ms: int = 0


class _SessionRunner:
    """Plays one connection: reads client events, answers them, runs responses."""

    def __init__(
        self,
        server: FakeRealtimeServer,
        session: FakeSession,
        script: RealtimeScript,
        ws: ServerConnection,
    ) -> None:
        self.server = server
        self.session = session
        self.script = script
        self.ws = ws
        self.tasks: set[asyncio.Task] = set()
        self.conversation_id = new_id("conv")
        self.items: dict[str, dict] = {}  # conversation items by id, in order
        self.item_audio_ms: dict[str, int] = {}  # assistant audio per item (truncation)
        self.item_audio: dict[str, bytearray] = {}  # for conversation.item.retrieve
        self.call_ids: set[str] = set()  # function calls a function_call_output may answer
        self.active: _Response | None = None  # the default conversation's response
        self.out_of_band: dict[str, _Response] = {}
        self.reply_index = 0
        self.transcript_index = 0
        self.response_count = 0
        self.audio_produced = False  # after the first audio delta the voice is fixed
        self.buffer_start = 0  # offset in input_audio of the uncommitted buffer
        self.committed_audio_ms = 0
        self.previous_input_tokens = 0
        self.vad = _VadState()
        self.idle_task: asyncio.Task | None = None
        self.idle_items: set[str] = set()  # silence committed by the idle timeout

    # -- plumbing ----------------------------------------------------------------------

    async def run(self) -> None:
        expires_in = (self.script.session_max_ms or 3_600_000) / 1000
        self.session.session_config = default_session(
            self.session.model, int(time.time() + expires_in)
        )
        try:
            await self.emit("session.created", session=self.session.session_config)
            if self.script.session_max_ms is not None:
                self.spawn(self._expire_session(self.script.session_max_ms / 1000))
            async for message in self.ws:
                await self.on_message(message)
        except ConnectionClosed:
            pass
        finally:
            self.session.closed = True
            if self.session.close_reason is None:
                self.session.close_reason = f"connection closed (code {self.ws.close_code})"
            await self.cancel_tasks()

    def spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._guard(coro))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _guard(self, coro) -> None:
        """Background work ends quietly when the client has gone; real bugs are recorded."""
        try:
            await coro
        except ConnectionClosed:
            pass
        except Exception as exc:  # recorded as a violation so the test fails loudly
            self.server.record_internal_error(self.session, exc)

    async def cancel_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [t for t in self.tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def emit(self, event_type: str, **fields: Any) -> dict:
        event = {"type": event_type, "event_id": new_id("event"), **fields}
        self.session.sent.append(event)  # before the await, so `sent` keeps wire order
        try:
            await self.ws.send(orjson.dumps(event).decode())
        except ConnectionClosed:
            self.session.sent.remove(event)  # never reached the client
            raise
        return event

    async def send_error(
        self,
        code: str,
        message: str,
        *,
        param: str | None = None,
        client_event: dict | None = None,
        error_type: str = "invalid_request_error",
        kind: str = "violation",
    ) -> None:
        """An `error` event. `kind`: "violation" (the client broke the protocol), "benign"
        (a normal race, kept in `benign_errors`) or "scripted" (a fault the test asked for).
        """
        client_event_id = client_event.get("event_id") if client_event else None
        error = {
            "type": error_type,
            "code": code,
            "message": message,
            "param": param,
            "event_id": client_event_id,
        }
        event = await self.emit("error", error=error)
        if kind == "violation":
            about = client_event.get("type", "?") if client_event else "session"
            self.server.record_violation(self.session, f"{about}: {message}")
        elif kind == "benign":
            self.session.benign_errors.append(event)

    def violation(self, message: str) -> None:
        self.server.record_violation(self.session, message)

    # -- reading client events ---------------------------------------------------------

    async def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            await self.send_error("invalid_value", "Binary frames are not supported; send JSON.")
            return
        try:
            event = orjson.loads(message)
        except orjson.JSONDecodeError:
            await self.send_error(
                "invalid_json",
                f"We could not parse the JSON of your event: {message[:80]!r}",
            )
            return
        if not isinstance(event, dict):
            await self.send_error("invalid_type", "A client event must be a JSON object.")
            return
        self._record_received(event)
        problems = find_problems(event)
        if problems:
            await self._reject(event, problems)
            return
        await self._HANDLERS[event["type"]](self, event)

    def _record_received(self, event: dict) -> None:
        if event.get("type") == "input_audio_buffer.append" and isinstance(event.get("audio"), str):
            encoded = event["audio"]
            stored = {k: v for k, v in event.items() if k != "audio"}
            # Length from the base64 text itself: no third decode on the per-frame path.
            stored["audio_bytes"] = len(encoded) * 3 // 4 - encoded[-2:].count("=")
            self.session.received.append(stored)
        else:
            self.session.received.append(event)

    async def _reject(self, event: dict, problems: list[Problem]) -> None:
        """The real API reports one problem per error event; every problem is recorded."""
        first = problems[0]
        await self.send_error(first.code, first.message, param=first.param, client_event=event)
        for extra in problems[1:]:
            self.violation(f"{event.get('type', '?')}: {extra.message}")

    # -- session.update ----------------------------------------------------------------

    async def on_session_update(self, event: dict) -> None:
        update = event["session"]
        current = self.session.session_config
        if "model" in update and update["model"] != current["model"]:
            await self.send_error(
                "invalid_value",
                f"Invalid 'session.model': the model cannot change during a session "
                f"(connected with '{current['model']}', got '{update['model']}').",
                param="session.model",
                client_event=event,
            )
            return
        new_voice = update.get("audio", {}).get("output", {}).get("voice")
        voice_changes = new_voice is not None and new_voice != current["audio"]["output"]["voice"]
        if voice_changes and self.audio_produced:
            await self.send_error(
                "cannot_update_voice",
                "Cannot update a conversation's voice if assistant audio is present.",
                param="session.audio.output.voice",
                client_event=event,
            )
            return
        self.session.session_config = merge_session(current, update)
        if self._vad_settings() is None:
            self.vad = _VadState(processed=len(self.session.input_audio))
        reported = self.session.session_config
        if self.script.reported_audio_format is not None:
            reported = copy.deepcopy(reported)
            for direction in ("input", "output"):
                reported["audio"][direction]["format"] = dict(self.script.reported_audio_format)
        await self.emit("session.updated", session=reported)

    # -- input audio -------------------------------------------------------------------

    def _input_format_type(self) -> str:
        return self.session.session_config["audio"]["input"]["format"]["type"]

    def _input_codec(self) -> _Codec:
        return _codec(self.session.session_config["audio"]["input"]["format"])

    def _vad_settings(self) -> _VadSettings | None:
        turn_detection = self.session.session_config["audio"]["input"]["turn_detection"]
        if not turn_detection:
            return None
        server_vad = turn_detection["type"] == "server_vad"
        return _VadSettings(
            amplitude_threshold=(turn_detection["threshold"] if server_vad else 0.5) * 1000,
            prefix_padding_ms=turn_detection["prefix_padding_ms"] if server_vad else 300,
            silence_duration_ms=turn_detection["silence_duration_ms"] if server_vad else 500,
            create_response=turn_detection["create_response"],
            interrupt_response=turn_detection["interrupt_response"],
        )

    async def on_append(self, event: dict) -> None:
        self.session.input_audio.extend(decode_base64_strict(event["audio"]) or b"")
        settings = self._vad_settings()
        if settings is None:
            self.vad.processed = len(self.session.input_audio)
            return
        await self._detect_turns(settings)

    async def _detect_turns(self, settings: _VadSettings) -> None:
        bytes_per_ms = self._input_codec().bytes_per_ms
        window = VAD_WINDOW_MS * bytes_per_ms
        buffer = self.session.input_audio
        format_type = self._input_format_type()
        while self.vad.processed + window <= len(buffer):
            start = self.vad.processed
            self.vad.processed += window
            chunk = bytes(buffer[start : start + window])
            speech = mean_abs_amplitude(chunk, format_type) > settings.amplitude_threshold
            start_ms, end_ms = start // bytes_per_ms, (start + window) // bytes_per_ms
            if not self.vad.speaking:
                if speech:
                    await self._speech_started(start_ms, end_ms, settings)
            elif speech:
                self.vad.silence_ms = 0
                self.vad.last_speech_end_ms = end_ms
            else:
                self.vad.silence_ms += VAD_WINDOW_MS
                if self.vad.silence_ms >= settings.silence_duration_ms:
                    await self._speech_stopped(start + window, settings)

    def _start_idle_timer(self, response: _Response) -> None:
        turn_detection = self.session.session_config["audio"]["input"]["turn_detection"]
        idle_ms = (turn_detection or {}).get("idle_timeout_ms")
        if not idle_ms or turn_detection["type"] != "server_vad":
            return
        self._stop_idle_timer()
        # The real server counts from when the reply has finished playing (response.done
        # plus the audio's duration), assuming real-time playback.
        played_s = response.audio_ms_generated / 1000
        started = response.first_audio_at or asyncio.get_running_loop().time()
        wait_s = max(0.0, started + played_s - asyncio.get_running_loop().time()) + idle_ms / 1000
        self.idle_task = self.spawn(self._idle_timeout(wait_s))

    def _stop_idle_timer(self) -> None:
        if self.idle_task is not None and self.idle_task is not asyncio.current_task():
            self.idle_task.cancel()
        self.idle_task = None

    async def _idle_timeout(self, wait_s: float) -> None:
        await asyncio.sleep(wait_s)
        if self.vad.speaking or self.active is not None:
            return
        self.idle_task = None
        codec = self._input_codec()
        end = len(self.session.input_audio)
        item_id = new_id("item")
        self.idle_items.add(item_id)
        await self.emit(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=self.buffer_start // codec.bytes_per_ms,
            audio_end_ms=end // codec.bytes_per_ms,
            item_id=item_id,
        )
        await self._commit_input(item_id, end)
        self._start_response(None)

    async def _speech_started(self, start_ms: int, end_ms: int, settings: _VadSettings) -> None:
        self._stop_idle_timer()
        item_id = new_id("item")
        self.vad = _VadState(
            processed=self.vad.processed,
            speaking=True,
            item_id=item_id,
            last_speech_end_ms=end_ms,
        )
        # Prefix padding reaches back into audio not yet committed, never before it.
        buffer_start_ms = self.buffer_start // self._input_codec().bytes_per_ms
        audio_start_ms = max(0, buffer_start_ms, start_ms - settings.prefix_padding_ms)
        await self.emit(
            "input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id
        )
        if settings.interrupt_response and self.active is not None:
            await self.cancel_response(self.active, "turn_detected")

    async def _speech_stopped(self, end_byte: int, settings: _VadSettings) -> None:
        item_id = self.vad.item_id or new_id("item")
        await self.emit(
            "input_audio_buffer.speech_stopped",
            audio_end_ms=self.vad.last_speech_end_ms,
            item_id=item_id,
        )
        self.vad = _VadState(processed=self.vad.processed)
        await self._commit_input(item_id, end_byte)
        if settings.create_response and self.active is None:
            self._start_response(None)

    async def on_commit(self, event: dict) -> None:
        end = len(self.session.input_audio)
        buffered_ms = (end - self.buffer_start) / self._input_codec().bytes_per_ms
        if buffered_ms < MIN_COMMIT_MS:
            await self.send_error(
                "input_audio_buffer_commit_empty",
                f"Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                client_event=event,
            )
            return
        item_id = self.vad.item_id if self.vad.speaking and self.vad.item_id else new_id("item")
        self.vad = _VadState(processed=self.vad.processed)
        await self._commit_input(item_id, end)

    async def on_clear(self, event: dict) -> None:
        self.buffer_start = len(self.session.input_audio)
        self.vad = _VadState(processed=len(self.session.input_audio))
        await self.emit("input_audio_buffer.cleared")

    async def _commit_input(self, item_id: str, end: int) -> None:
        """Turn the buffered caller audio into a user message item."""
        committed = bytes(self.session.input_audio[self.buffer_start : end])
        self.buffer_start = end
        audio_ms = len(committed) // self._input_codec().bytes_per_ms
        self.committed_audio_ms += audio_ms
        previous_item_id = self._last_item_id()
        item = {
            "id": item_id,
            "type": "message",
            "object": "realtime.item",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self.items[item_id] = item
        self.item_audio[item_id] = bytearray(committed)
        await self.emit(
            "input_audio_buffer.committed", previous_item_id=previous_item_id, item_id=item_id
        )
        await self.emit("conversation.item.added", previous_item_id=previous_item_id, item=item)
        await self.emit("conversation.item.done", previous_item_id=previous_item_id, item=item)
        if self.session.session_config["audio"]["input"]["transcription"]:
            self.spawn(self._transcribe(item_id, audio_ms))

    async def _transcribe(self, item_id: str, audio_ms: int) -> None:
        if self.script.transcription_delay_ms is None:
            return  # a transcript that never comes
        await asyncio.sleep(self.script.transcription_delay_ms / 1000)
        transcript = "" if item_id in self.idle_items else self._next_caller_transcript()
        if item_id in self.items:
            self.items[item_id]["content"][0]["transcript"] = transcript
        for delta in _split_text(transcript):
            await self.emit(
                "conversation.item.input_audio_transcription.delta",
                item_id=item_id,
                content_index=0,
                delta=delta,
            )
        audio_tokens = audio_ms // 100
        output_tokens = _word_count(transcript)
        await self.emit(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
            usage={
                "type": "tokens",
                "input_tokens": audio_tokens,
                "output_tokens": output_tokens,
                "total_tokens": audio_tokens + output_tokens,
                "input_token_details": {"text_tokens": 0, "audio_tokens": audio_tokens},
            },
        )

    def _next_caller_transcript(self) -> str:
        transcripts = self.script.caller_transcripts
        index = self.transcript_index
        self.transcript_index += 1
        return transcripts[index] if index < len(transcripts) else DEFAULT_CALLER_TRANSCRIPT

    async def on_output_audio_buffer_clear(self, event: dict) -> None:
        # Over a WebSocket the client owns playback; the real API documents this event for
        # WebRTC/SIP only, so a phone bridge sending it is confused about who buffers audio.
        await self.send_error(
            "invalid_value",
            "output_audio_buffer.clear is only supported for WebRTC and SIP connections.",
            param="type",
            client_event=event,
        )

    # -- conversation items ------------------------------------------------------------

    def _last_item_id(self) -> str | None:
        return next(reversed(self.items), None)

    async def _item_not_found(self, event: dict, item_id: str, action: str) -> None:
        await self.send_error(
            "item_not_found",
            f"Error {action}: the item with id '{item_id}' does not exist in the conversation.",
            param="item_id",
            client_event=event,
        )

    async def on_item_create(self, event: dict) -> None:
        item = copy.deepcopy(event["item"])
        previous_item_id = event.get("previous_item_id")
        if previous_item_id is not None and previous_item_id not in self.items:
            await self._item_not_found(event, previous_item_id, "creating item")
            return
        if item.get("id") in self.items:
            await self.send_error(
                "invalid_value",
                f"Item with id '{item['id']}' already exists.",
                param="item.id",
                client_event=event,
            )
            return
        if item["type"] == "function_call_output" and item["call_id"] not in self.call_ids:
            await self.send_error(
                "invalid_value",
                f"No tool call found for function call output with call_id {item['call_id']}.",
                param="item.call_id",
                client_event=event,
            )
            return
        if item["type"] == "function_call":
            item.setdefault("call_id", new_id("call"))
            self.call_ids.add(item["call_id"])
        item.setdefault("id", new_id("item"))
        item["object"] = "realtime.item"
        item["status"] = "completed"
        if previous_item_id is None:
            previous_item_id = self._last_item_id()  # appended at the end
        self._insert_item(item, previous_item_id)
        wire_item = _without_audio(item)
        await self.emit(
            "conversation.item.added", previous_item_id=previous_item_id, item=wire_item
        )
        await self.emit("conversation.item.done", previous_item_id=previous_item_id, item=wire_item)

    def _insert_item(self, item: dict, previous_item_id: str | None) -> None:
        if previous_item_id is None or previous_item_id == self._last_item_id():
            self.items[item["id"]] = item
            return
        ordered = list(self.items.items())
        position = [key for key, _ in ordered].index(previous_item_id) + 1
        ordered.insert(position, (item["id"], item))
        self.items = dict(ordered)

    async def on_item_delete(self, event: dict) -> None:
        item_id = event["item_id"]
        if item_id not in self.items:
            await self._item_not_found(event, item_id, "deleting item")
            return
        del self.items[item_id]
        await self.emit("conversation.item.deleted", item_id=item_id)

    async def on_item_retrieve(self, event: dict) -> None:
        item_id = event["item_id"]
        if item_id not in self.items:
            await self._item_not_found(event, item_id, "retrieving item")
            return
        item = copy.deepcopy(self.items[item_id])
        if item_id in self.item_audio and item.get("content"):
            item["content"][0]["audio"] = base64.b64encode(self.item_audio[item_id]).decode()
        await self.emit("conversation.item.retrieved", item=item)

    async def on_item_truncate(self, event: dict) -> None:
        item_id, audio_end_ms = event["item_id"], event["audio_end_ms"]
        item = self.items.get(item_id)
        if item is None:
            await self._item_not_found(event, item_id, "truncating item")
            return
        if item.get("role") != "assistant" or item_id not in self.item_audio_ms:
            await self.send_error(
                "invalid_value",
                "Only assistant messages with audio can be truncated.",
                param="item_id",
                client_event=event,
            )
            return
        if event["content_index"] != 0:
            await self.send_error(
                "invalid_value",
                f"Invalid 'content_index': item {item_id} has no content part "
                f"{event['content_index']}.",
                param="content_index",
                client_event=event,
            )
            return
        available_ms = self.item_audio_ms[item_id]
        if audio_end_ms > available_ms:
            await self.send_error(
                "invalid_value",
                f"Audio content of {available_ms}ms is already shorter than {audio_end_ms}ms",
                param="audio_end_ms",
                client_event=event,
            )
            return
        # The audio now ends there and the unheard transcript is dropped, as in the API.
        self.item_audio_ms[item_id] = audio_end_ms
        for part in item.get("content", []):
            if "transcript" in part:
                part["transcript"] = ""
        self.session.truncations.append(
            {
                "item_id": item_id,
                "content_index": 0,
                "audio_end_ms": audio_end_ms,
                "generated_ms": available_ms,
            }
        )
        await self.emit(
            "conversation.item.truncated",
            item_id=item_id,
            content_index=0,
            audio_end_ms=audio_end_ms,
        )

    # -- responses ---------------------------------------------------------------------

    async def on_response_create(self, event: dict) -> None:
        params = event.get("response", {})
        in_conversation = params.get("conversation", "auto") != "none"
        if in_conversation and self.active is not None:
            # Racing a response that server VAD (or the idle timeout) just started is
            # normal; creating one while the client's own is still going is a client bug.
            await self.send_error(
                "conversation_already_has_active_response",
                f"Conversation already has an active response in progress: {self.active.id}. "
                "Wait until the response is finished before creating a new one.",
                client_event=event,
                kind="violation" if self.active.by_client else "benign",
            )
            return
        self._start_response(params, by_client=True)

    def _next_reply(self) -> Reply:
        replies = self.script.replies
        index = self.reply_index
        self.reply_index += 1
        return replies[index] if index < len(replies) else Reply()

    def _start_response(self, params: dict | None, by_client: bool = False) -> _Response:
        self._stop_idle_timer()
        params = params or {}
        config = self.session.session_config
        output = params.get("audio", {}).get("output", {})
        self.response_count += 1
        response = _Response(
            id=new_id("resp"),
            number=self.response_count,
            reply=self._next_reply(),
            in_conversation=params.get("conversation", "auto") != "none",
            modalities=params.get("output_modalities", config["output_modalities"]),
            output_format=_effective_format(
                output.get("format", config["audio"]["output"]["format"])
            ),
            voice=output.get("voice", config["audio"]["output"]["voice"]),
            max_output_tokens=params.get("max_output_tokens", config["max_output_tokens"]),
            metadata=params.get("metadata"),
            instructions=params.get("instructions", config["instructions"]),
            by_client=by_client,
        )
        if response.in_conversation:
            self.active = response
        else:
            self.out_of_band[response.id] = response
        delay_ms = self.script.reply_delay_ms
        if response.number == 1 and self.script.first_reply_delay_ms is not None:
            delay_ms = self.script.first_reply_delay_ms
        response.task = self.spawn(self._generate(response, delay_ms / 1000))
        return response

    def _finish(self, response: _Response) -> None:
        if self.active is response:
            self.active = None
        self.out_of_band.pop(response.id, None)

    async def _generate(self, response: _Response, delay_s: float) -> None:
        if await response.pause(delay_s):
            return  # cancelled during model latency; the canceller reports it
        reply = response.reply
        if reply.error is not None:
            self._finish(response)
            error_type, code = reply.error
            await self.send_error(
                code,
                _SCRIPTED_ERROR_MESSAGES.get(code, f"Scripted error: {code}."),
                error_type=error_type,
                kind="scripted",
            )
            return
        await self._send_response_created(response)
        await self.emit("rate_limits.updated", rate_limits=self._rate_limits())
        if response.cancelled:
            return
        if reply.fail is not None:
            self._finish(response)
            error_type, code = reply.fail
            details = {"type": "failed", "error": {"type": error_type, "code": code}}
            await self._send_response_done(response, "failed", details)
            return
        if reply.function_call is not None:
            finished = await self._stream_function_call(response)
        elif response.modalities == ["text"]:
            finished = await self._stream_text(response)
        else:
            finished = await self._stream_audio(response)
        if not finished or response.cancelled:
            return
        self._finish(response)
        await self._close_items(response, "completed")
        await self._send_response_done(response, "completed", None)
        if response.in_conversation:
            self._start_idle_timer(response)

    async def _send_response_created(self, response: _Response) -> None:
        response.created_sent = True
        await self.emit("response.created", response=self._response_object(response, "in_progress"))

    def _rate_limits(self) -> list[dict]:
        return [
            {"name": "requests", "limit": 5000, "remaining": 4999, "reset_seconds": 0.012},
            {"name": "tokens", "limit": 40000, "remaining": 38000, "reset_seconds": 3.0},
        ]

    async def _add_output_item(self, response: _Response, output: _OutputItem) -> None:
        response.items.append(output)
        item = output.item
        await self.emit(
            "response.output_item.added",
            response_id=response.id,
            output_index=len(response.items) - 1,
            item=copy.deepcopy(item),
        )
        if response.in_conversation:
            previous_item_id = self._last_item_id()
            self.items[item["id"]] = item
            await self.emit(
                "conversation.item.added",
                previous_item_id=previous_item_id,
                item=copy.deepcopy(item),
            )

    def _item_fields(self, response: _Response, output: _OutputItem) -> dict:
        return {
            "response_id": response.id,
            "item_id": output.item["id"],
            "output_index": response.items.index(output),
            "content_index": 0,
        }

    async def _stream_audio(self, response: _Response) -> bool:
        """Speak the reply; False when cancelled or the connection was dropped on purpose."""
        reply = response.reply
        item_id = new_id("item")
        output = _OutputItem(item=_assistant_item(item_id), kind="audio")
        await self._add_output_item(response, output)
        fields = self._item_fields(response, output)
        output.part_open = True
        await self.emit(
            "response.content_part.added", **fields, part={"type": "audio", "transcript": ""}
        )
        codec = _codec(response.output_format)
        bank = self.script.voice_bank
        audio_bytes = reply_audio(
            response.output_format["type"],
            bank.say("agent", reply.text, reply.audio_ms)
            if bank is not None
            else reply_tone_hz(self.session.index, response.number),
            reply.audio_ms,
        )
        self.item_audio_ms[item_id] = 0
        self.item_audio[item_id] = bytearray()
        self.session.audio_sent_by_item[item_id] = []
        transcript_deltas = _split_text(reply.text)
        chunk_size = max(1, self.script.audio_chunk_ms * codec.bytes_per_ms)
        chunk_interval = (
            self.script.audio_chunk_ms / 1000 / self.script.audio_speed
            if self.script.audio_speed > 0
            else 0.0
        )
        started = asyncio.get_running_loop().time()
        chunks = [audio_bytes[i : i + chunk_size] for i in range(0, len(audio_bytes), chunk_size)]
        for sent, chunk in enumerate(chunks):
            if response.cancelled or await self._inject_faults(reply, sent):
                return False
            if sent < len(transcript_deltas):
                await self._send_transcript_delta(output, fields, transcript_deltas[sent])
            await self._send_audio_delta(response, output, fields, chunk, codec)
            deadline = started + (sent + 1) * chunk_interval
            if await response.pause(deadline - asyncio.get_running_loop().time()):
                return False
        if response.cancelled or await self._inject_faults(reply, len(chunks)):
            return False
        for delta in transcript_deltas[len(chunks) :]:
            await self._send_transcript_delta(output, fields, delta)
        return not response.cancelled

    async def _send_transcript_delta(self, output: _OutputItem, fields: dict, delta: str) -> None:
        output.text_sent += delta
        await self.emit("response.output_audio_transcript.delta", **fields, delta=delta)

    async def _send_audio_delta(
        self, response: _Response, output: _OutputItem, fields: dict, chunk: bytes, codec: _Codec
    ) -> None:
        item_id = output.item["id"]
        delta = base64.b64encode(chunk).decode()
        self.audio_produced = True
        if response.first_audio_at is None:
            response.first_audio_at = asyncio.get_running_loop().time()
        self.item_audio[item_id].extend(chunk)
        self.item_audio_ms[item_id] = len(self.item_audio[item_id]) // codec.bytes_per_ms
        response.audio_ms_generated = self.item_audio_ms[item_id]
        await self.emit("response.output_audio.delta", **fields, delta=delta)
        self.session.audio_sent_by_item[item_id].append(delta)

    async def _inject_faults(self, reply: Reply, deltas_sent: int) -> bool:
        """Scripted faults at this point of the audio stream; True when the socket is gone."""
        if reply.malformed_after_chunks == deltas_sent:
            raw = '{"type": "response.output_audio.delta", "delta": '  # cut short on purpose
            self.session.sent.append({"type": "fake.malformed_frame", "raw": raw})
            await self.ws.send(raw)
        if reply.close_after_chunks == deltas_sent:
            self.session.close_reason = f"fault: dropped after {deltas_sent} audio deltas"
            self.session.closed = True
            self.ws.transport.abort()  # no close frame, like a dropped TCP connection
            return True
        return False

    async def _stream_text(self, response: _Response) -> bool:
        output = _OutputItem(item=_assistant_item(new_id("item")), kind="text")
        await self._add_output_item(response, output)
        fields = self._item_fields(response, output)
        output.part_open = True
        await self.emit("response.content_part.added", **fields, part={"type": "text", "text": ""})
        for delta in _split_text(response.reply.text):
            if await response.pause(0):
                return False
            output.text_sent += delta
            await self.emit("response.output_text.delta", **fields, delta=delta)
        return not response.cancelled

    async def _stream_function_call(self, response: _Response) -> bool:
        name, arguments = response.reply.function_call  # type: ignore[misc]
        call_id = new_id("call")
        self.call_ids.add(call_id)
        item = {
            "id": new_id("item"),
            "type": "function_call",
            "object": "realtime.item",
            "status": "in_progress",
            "name": name,
            "call_id": call_id,
            "arguments": "",
        }
        output = _OutputItem(item=item, kind="function_call")
        await self._add_output_item(response, output)
        fields = self._item_fields(response, output)
        del fields["content_index"]
        arguments_json = orjson.dumps(arguments).decode()
        half = len(arguments_json) // 2
        for delta in (arguments_json[:half], arguments_json[half:]):
            if await response.pause(0):
                return False
            await self.emit(
                "response.function_call_arguments.delta", **fields, call_id=call_id, delta=delta
            )
        output.text_sent = arguments_json
        named = {"name": name} if self.script.name_in_arguments_done else {}
        await self.emit(
            "response.function_call_arguments.done",
            **fields,
            call_id=call_id,
            **named,
            arguments=arguments_json,
        )
        return not response.cancelled

    async def _close_items(self, response: _Response, status: str) -> None:
        """The closing events of every open output item (completed or cut short)."""
        for output in response.items:
            if output.done:
                continue
            output.done = True
            item = output.item
            fields = self._item_fields(response, output)
            item["status"] = status
            if output.kind == "function_call":
                item["arguments"] = output.text_sent
            elif output.kind == "audio":
                await self.emit("response.output_audio.done", **fields)
                await self.emit(
                    "response.output_audio_transcript.done", **fields, transcript=output.text_sent
                )
                item["content"] = [{"type": "output_audio", "transcript": output.text_sent}]
                part = {"type": "audio", "transcript": output.text_sent}
                await self.emit("response.content_part.done", **fields, part=part)
            else:
                await self.emit("response.output_text.done", **fields, text=output.text_sent)
                item["content"] = [{"type": "output_text", "text": output.text_sent}]
                part = {"type": "text", "text": output.text_sent}
                await self.emit("response.content_part.done", **fields, part=part)
            output.part_open = False
            await self.emit(
                "response.output_item.done",
                response_id=response.id,
                output_index=fields["output_index"],
                item=copy.deepcopy(item),
            )
            if response.in_conversation:
                await self.emit(
                    "conversation.item.done",
                    previous_item_id=self._previous_item_id(item["id"]),
                    item=copy.deepcopy(item),
                )

    def _previous_item_id(self, item_id: str) -> str | None:
        previous = None
        for key in self.items:
            if key == item_id:
                return previous
            previous = key
        return previous

    async def _send_response_done(
        self, response: _Response, status: str, status_details: dict | None
    ) -> None:
        usage = self._usage(response)
        payload = self._response_object(response, status, status_details, usage)
        await self.emit("response.done", response=payload)

    def _response_object(
        self,
        response: _Response,
        status: str,
        status_details: dict | None = None,
        usage: dict | None = None,
    ) -> dict:
        return {
            "object": "realtime.response",
            "id": response.id,
            "status": status,
            "status_details": status_details,
            "output": [copy.deepcopy(o.item) for o in response.items],
            "conversation_id": self.conversation_id if response.in_conversation else None,
            "output_modalities": response.modalities,
            "max_output_tokens": response.max_output_tokens,
            "audio": {"output": {"format": response.output_format, "voice": response.voice}},
            "usage": usage,
            "metadata": response.metadata,
        }

    def _usage(self, response: _Response) -> dict:
        reply = response.reply
        if reply.function_call is not None:
            output_text = len(orjson.dumps(reply.function_call[1])) // 4 + 1
        else:
            output_text = _word_count("".join(o.text_sent for o in response.items))
        output_audio = response.audio_ms_generated // 50
        input_text = 10 + _word_count(response.instructions) + 5 * len(self.items)
        input_audio = self.committed_audio_ms // 100
        input_tokens = input_text + input_audio
        cached = min(input_tokens, self.previous_input_tokens // 64 * 64)
        self.previous_input_tokens = input_tokens
        cached_text = min(cached, input_text)
        return {
            "total_tokens": input_tokens + output_text + output_audio,
            "input_tokens": input_tokens,
            "output_tokens": output_text + output_audio,
            "input_token_details": {
                "text_tokens": input_text,
                "audio_tokens": input_audio,
                "image_tokens": 0,
                "cached_tokens": cached,
                "cached_tokens_details": {
                    "text_tokens": cached_text,
                    "audio_tokens": cached - cached_text,
                    "image_tokens": 0,
                },
            },
            "output_token_details": {"text_tokens": output_text, "audio_tokens": output_audio},
        }

    async def on_response_cancel(self, event: dict) -> None:
        response_id = event.get("response_id")
        targets_active = self.active is not None and response_id in (None, self.active.id)
        response = self.active if targets_active else self.out_of_band.get(response_id or "")
        if response is None:
            # A normal race: server VAD may have cancelled the response a moment earlier.
            await self.send_error(
                "response_cancel_not_active",
                "Cancellation failed: no active response found",
                client_event=event,
                kind="benign",
            )
            return
        await self.cancel_response(response, "client_cancelled")

    async def cancel_response(self, response: _Response, reason: str) -> None:
        """Stop generating, then report what was produced and `response.done` cancelled."""
        response.cancelled = True
        response.cancel_event.set()
        self._finish(response)
        if response.task is not None and response.task is not asyncio.current_task():
            await asyncio.gather(response.task, return_exceptions=True)
        if not response.created_sent:
            await self._send_response_created(response)
        await self._close_items(response, "incomplete")
        await self._send_response_done(
            response, "cancelled", {"type": "cancelled", "reason": reason}
        )

    # -- session lifetime --------------------------------------------------------------

    async def _expire_session(self, after_s: float) -> None:
        await asyncio.sleep(after_s)
        for response in [self.active, *self.out_of_band.values()]:
            if response is not None:
                response.cancelled = True
                response.cancel_event.set()
                self._finish(response)
        self.session.close_reason = "session expired"
        await self.send_error("session_expired", SESSION_EXPIRED_MESSAGE, kind="scripted")
        await self.ws.close(1000, "session expired")

    _HANDLERS: dict[str, Callable[[_SessionRunner, dict], Any]] = {
        "session.update": on_session_update,
        "input_audio_buffer.append": on_append,
        "input_audio_buffer.commit": on_commit,
        "input_audio_buffer.clear": on_clear,
        "output_audio_buffer.clear": on_output_audio_buffer_clear,
        "conversation.item.create": on_item_create,
        "conversation.item.delete": on_item_delete,
        "conversation.item.retrieve": on_item_retrieve,
        "conversation.item.truncate": on_item_truncate,
        "response.create": on_response_create,
        "response.cancel": on_response_cancel,
    }


_SCRIPTED_ERROR_MESSAGES = {
    "rate_limit_exceeded": "Rate limit reached for requests. Please try again later.",
    "server_error": "The server had an error while processing your request. Sorry about that!",
    "insufficient_quota": "You exceeded your current quota, please check your plan and billing.",
}


def _assistant_item(item_id: str) -> dict:
    return {
        "id": item_id,
        "type": "message",
        "object": "realtime.item",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }


def _without_audio(item: dict) -> dict:
    """Events echo items without their audio bytes, as the real API does."""
    echoed = copy.deepcopy(item)
    for part in echoed.get("content", []):
        part.pop("audio", None)
    return echoed


# --- the server -----------------------------------------------------------------------

_HANDSHAKE_ERRORS = {
    400: ("invalid_request_error", None, "Bad request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    404: ("invalid_request_error", None, "Not found."),
    429: (
        "requests",
        "rate_limit_exceeded",
        "Rate limit reached for requests. Please try again later.",
    ),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class FakeRealtimeServer:
    """Serves `ws://127.0.0.1:PORT/v1/realtime?model=...` with scripted model behaviour.

    Script precedence per connection: `script_for_next_connection` (used once), then
    `scripts` (consumed in order), then `script`, then a default `RealtimeScript()`.
    """

    # What records a connection and what plays its script; the benchmark swaps in
    # subclasses that also keep timings.
    session_class: type[FakeSession] = FakeSession
    runner_class: type[_SessionRunner] = _SessionRunner

    def __init__(
        self, script: RealtimeScript | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.script = script
        self.scripts: list[RealtimeScript] = []
        self.script_for_next_connection: RealtimeScript | None = None
        self.host = host
        self.port = port
        self.sessions: list[FakeSession] = []
        self.violations: list[str] = []
        self.rejected: list[int] = []
        self._server: Server | None = None
        self._accepted: dict[ServerConnection, tuple[RealtimeScript, str]] = {}
        self._runners: list[_SessionRunner] = []

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=2**24,
            ping_interval=None,  # the real API does not ping; keep traffic deterministic
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for runner in self._runners:
            if not runner.session.closed:
                runner.session.close_reason = "server stopped"
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for runner in self._runners:
            await runner.cancel_tasks()

    async def __aenter__(self) -> FakeRealtimeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}{REALTIME_PATH}"

    # -- recording ---------------------------------------------------------------------

    def record_violation(self, session: FakeSession | None, message: str) -> None:
        label = f"session {session.index}: {message}" if session else message
        if session is not None:
            session.violations.append(label)
        self.violations.append(label)

    def record_internal_error(self, session: FakeSession, exc: BaseException) -> None:
        logger.exception("fake realtime server failed", exc_info=exc)
        self.record_violation(session, f"fake internal error: {exc!r}")

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 5.0,  # noqa: ASYNC109 - the polling helper's public signature
        interval: float = 0.01,
    ) -> Any:
        """Poll until predicate() is truthy (awaiting it if needed) and return its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if loop.time() >= deadline:
                raise TimeoutError(
                    f"Condition {_describe_predicate(predicate)} not met within {timeout}s.\n"
                    + self.describe()
                )
            await asyncio.sleep(interval)

    def describe(self) -> str:
        """A short account of every session, for failure messages."""
        lines = [f"rejected handshakes: {self.rejected}", f"violations: {self.violations}"]
        for session in self.sessions:
            lines.append(
                f"session {session.index} (model {session.model}, closed={session.closed}, "
                f"{session.close_reason}): received {session.received_types()[-20:]}, "
                f"sent {session.sent_types()[-20:]}"
            )
        return "\n".join(lines)

    # -- handshake ---------------------------------------------------------------------

    def _next_script(self) -> RealtimeScript:
        if self.script_for_next_connection is not None:
            script, self.script_for_next_connection = self.script_for_next_connection, None
            return script
        if self.scripts:
            return self.scripts.pop(0)
        return self.script or RealtimeScript()

    def _reject(
        self,
        connection: ServerConnection,
        status: int,
        message: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> Response:
        default_type, default_code, default_message = _HANDSHAKE_ERRORS.get(
            status, ("invalid_request_error", None, http.HTTPStatus(status).phrase)
        )
        body = {
            "error": {
                "message": message or default_message,
                "type": default_type,
                "param": param,
                "code": code if code is not None else default_code,
            }
        }
        self.rejected.append(status)
        response = connection.respond(status, orjson.dumps(body).decode() + "\n")
        del response.headers["Content-Type"]
        response.headers["Content-Type"] = "application/json"
        return response

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        script = self._next_script()
        url = urlsplit(request.path)
        if url.path != REALTIME_PATH:
            return self._reject(connection, 404, f"Invalid URL (GET {url.path})")
        if "realtime=v1" in request.headers.get("OpenAI-Beta", ""):
            self.record_violation(None, "handshake: beta header 'OpenAI-Beta: realtime=v1' sent")
            return self._reject(
                connection,
                400,
                "This fake speaks the GA Realtime protocol only: drop 'OpenAI-Beta: realtime=v1'.",
                code="beta_protocol_not_supported",
            )
        authorization = request.headers.get("Authorization")
        if authorization is None:
            return self._reject(
                connection,
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        if authorization != f"Bearer {script.api_key}":
            shown = authorization.removeprefix("Bearer ")
            return self._reject(
                connection,
                401,
                f"Incorrect API key provided: {shown[:3]}***{shown[-4:]}. You can find your "
                "API key at https://platform.openai.com/account/api-keys.",
            )
        model = parse_qs(url.query).get("model", [""])[0]
        if not model:
            self.record_violation(None, "handshake: no ?model= in the URL")
            return self._reject(
                connection,
                400,
                "Missing required parameter: 'model'.",
                code="missing_required_parameter",
                param="model",
            )
        if script.reject_status is not None:
            return self._reject(connection, script.reject_status)
        self._accepted[connection] = (script, model)
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        script, model = self._accepted.pop(connection)
        session = self.session_class(
            model=model, headers=connection.request.headers, index=len(self.sessions)
        )
        self.sessions.append(session)
        runner = self.runner_class(self, session, script, connection)
        self._runners.append(runner)
        try:
            await runner.run()
        except Exception as exc:
            self.record_internal_error(session, exc)
            raise


def _describe_predicate(predicate: Callable) -> str:
    try:
        return inspect.getsource(predicate).strip()
    except (OSError, TypeError):
        return repr(predicate)


# --- manual demos ---------------------------------------------------------------------


async def _serve_forever(args: argparse.Namespace) -> None:
    script = RealtimeScript(
        reply_delay_ms=args.reply_delay_ms, audio_speed=args.audio_speed, api_key=args.api_key
    )
    async with FakeRealtimeServer(script, host=args.host, port=args.port) as server:
        print(f"Fake OpenAI Realtime server: OPENAI_BASE_URL={server.base_url}", flush=True)
        print(f"API key: {args.api_key}   (Ctrl-C to stop)", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            for line in server.violations:
                print(f"violation: {line}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Fake OpenAI Realtime (GA) server for demos.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--reply-delay-ms", type=int, default=0)
    parser.add_argument("--audio-speed", type=float, default=1.0, help="x real time; 0 = burst")
    parser.add_argument("--api-key", default="sk-test")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))


if __name__ == "__main__":
    main()
