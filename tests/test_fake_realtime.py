"""Tests of the fake OpenAI Realtime server itself, driven by a plain websockets client.

Run without Django: `.venv/bin/pytest tests/test_fake_realtime.py -p no:django`.
"""

from __future__ import annotations

import asyncio
import base64

import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.fakes import audio
from tests.fakes.realtime_schema import find_problems, validate_client_event
from tests.fakes.realtime_server import (
    FakeRealtimeServer,
    RealtimeScript,
    Reply,
    reply_audio,
    reply_tone_hz,
)

MODEL = "gpt-realtime"
FAST = {"audio_speed": 0}  # timing does not matter: send all audio at once

# Required fields of every server event the fake sends, from openai-python's
# src/openai/types/realtime/*_event.py models (non-Optional fields).
SERVER_EVENT_FIELDS = {
    "error": {"error"},
    "session.created": {"session"},
    "session.updated": {"session"},
    "input_audio_buffer.speech_started": {"audio_start_ms", "item_id"},
    "input_audio_buffer.speech_stopped": {"audio_end_ms", "item_id"},
    "input_audio_buffer.committed": {"item_id"},
    "input_audio_buffer.cleared": set(),
    "conversation.item.added": {"item"},
    "conversation.item.done": {"item"},
    "conversation.item.deleted": {"item_id"},
    "conversation.item.retrieved": {"item"},
    "conversation.item.truncated": {"audio_end_ms", "content_index", "item_id"},
    "conversation.item.input_audio_transcription.delta": {"item_id"},
    "conversation.item.input_audio_transcription.completed": {
        "content_index",
        "item_id",
        "transcript",
        "usage",
    },
    "response.created": {"response"},
    "response.done": {"response"},
    "rate_limits.updated": {"rate_limits"},
    "response.output_item.added": {"item", "output_index", "response_id"},
    "response.output_item.done": {"item", "output_index", "response_id"},
    "response.content_part.added": {
        "content_index",
        "item_id",
        "output_index",
        "part",
        "response_id",
    },
    "response.content_part.done": {
        "content_index",
        "item_id",
        "output_index",
        "part",
        "response_id",
    },
    "response.output_audio.delta": {
        "content_index",
        "delta",
        "item_id",
        "output_index",
        "response_id",
    },
    "response.output_audio.done": {"content_index", "item_id", "output_index", "response_id"},
    "response.output_audio_transcript.delta": {
        "content_index",
        "delta",
        "item_id",
        "output_index",
        "response_id",
    },
    "response.output_audio_transcript.done": {
        "content_index",
        "item_id",
        "output_index",
        "response_id",
        "transcript",
    },
    "response.output_text.delta": {"content_index", "delta", "item_id", "output_index"},
    "response.output_text.done": {"content_index", "item_id", "output_index", "text"},
    "response.function_call_arguments.delta": {
        "call_id",
        "delta",
        "item_id",
        "output_index",
        "response_id",
    },
    "response.function_call_arguments.done": {
        "arguments",
        "call_id",
        "item_id",
        "name",
        "output_index",
        "response_id",
    },
}


# --- helpers --------------------------------------------------------------------------


class Client:
    """A bare Realtime client: sends dicts, reads events, keeps everything it read."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict] = []
        self.raw_frames: list[str] = []  # frames that were not JSON

    async def send(self, event: dict) -> None:
        await self.ws.send(orjson.dumps(event).decode())

    async def append(self, chunk: bytes, frame_bytes: int = 160) -> None:
        for i in range(0, len(chunk), frame_bytes):
            piece = base64.b64encode(chunk[i : i + frame_bytes]).decode()
            await self.send({"type": "input_audio_buffer.append", "audio": piece})

    async def recv(self, wait_s: float = 3.0) -> dict:
        while True:
            async with asyncio.timeout(wait_s):
                frame = await self.ws.recv()
            try:
                event = orjson.loads(frame)
            except orjson.JSONDecodeError:
                self.raw_frames.append(frame)
                continue
            self.events.append(event)
            return event

    async def until(self, event_type: str, wait_s: float = 3.0) -> dict:
        while True:
            event = await self.recv(wait_s)
            if event["type"] == event_type:
                return event

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, event_type: str) -> list[dict]:
        return [e for e in self.events if e["type"] == event_type]


async def connect(
    server: FakeRealtimeServer,
    model: str | None = MODEL,
    api_key: str | None = "sk-test",
    headers: dict | None = None,
) -> Client:
    url = server.ws_url + (f"?model={model}" if model else "")
    all_headers = dict(headers or {})
    if api_key is not None:
        all_headers["Authorization"] = f"Bearer {api_key}"
    ws = await websockets.connect(url, additional_headers=all_headers, compression=None)
    client = Client(ws)
    await client.until("session.created")
    return client


PHONE_SESSION = {
    "type": "realtime",
    "model": MODEL,
    "output_modalities": ["audio"],
    "instructions": "You answer the phone for a bakery.",
    "audio": {
        "input": {
            "format": {"type": "audio/pcmu"},
            "noise_reduction": None,
            "transcription": {"model": "gpt-4o-transcribe"},
            "turn_detection": {
                "type": "server_vad",
                "threshold": 0.5,
                "prefix_padding_ms": 300,
                "silence_duration_ms": 500,
                "create_response": True,
                "interrupt_response": True,
            },
        },
        "output": {"format": {"type": "audio/pcmu"}, "voice": "cedar", "speed": 1.0},
    },
    "tools": [
        {
            "type": "function",
            "name": "lookup_order",
            "description": "Find an order.",
            "parameters": {"type": "object", "properties": {"id": {"type": "integer"}}},
        }
    ],
    "tool_choice": "auto",
}


def manual_session(**extra) -> dict:
    """The phone session without server VAD: the client commits and asks for responses."""
    session = orjson.loads(orjson.dumps(PHONE_SESSION))
    session["audio"]["input"]["turn_detection"] = None
    session.update(extra)
    return session


async def configure(client: Client, session: dict) -> dict:
    await client.send({"type": "session.update", "session": session})
    return await client.until("session.updated")


def assert_server_events_match_types(server: FakeRealtimeServer) -> None:
    for session in server.sessions:
        for event in session.sent:
            if event["type"] == "fake.malformed_frame":
                continue
            assert event["type"] in SERVER_EVENT_FIELDS, event["type"]
            missing = SERVER_EVENT_FIELDS[event["type"]] - set(event)
            assert not missing, (event["type"], missing)
            assert event["event_id"].startswith("event_")


@pytest.fixture
async def server():
    fake = FakeRealtimeServer(RealtimeScript(**FAST))
    await fake.start()
    yield fake
    await fake.stop()
    assert_server_events_match_types(fake)


# --- audio helpers --------------------------------------------------------------------


def test_audio_helpers():
    assert audio.ULAW_SILENCE == 0xFF
    assert audio.ulaw_to_linear(audio.ULAW_SILENCE) == 0
    assert audio.linear_to_ulaw(0) == audio.ULAW_SILENCE
    for sample in (-30000, -1000, -50, 50, 1000, 30000):
        decoded = audio.ulaw_to_linear(audio.linear_to_ulaw(sample))
        assert abs(decoded - sample) <= abs(sample) // 16 + 8
    assert len(audio.tone(20)) == 160 and audio.ms_of(160) == 20
    assert audio.is_speech(audio.tone(20))
    assert not audio.is_speech(audio.silence(20))
    assert not audio.is_speech(audio.tone(20, amplitude=200))


# --- client event schema --------------------------------------------------------------


def test_schema_accepts_ga_events():
    good = [
        {"type": "session.update", "session": PHONE_SESSION},
        {"type": "session.update", "session": manual_session()},
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "audio": {
                    "input": {
                        "format": {"type": "audio/pcm", "rate": 24000},
                        "noise_reduction": {"type": "near_field"},
                        "turn_detection": {"type": "semantic_vad", "eagerness": "low"},
                    },
                    "output": {"format": {"type": "audio/pcma"}, "voice": {"id": "voice_1"}},
                },
                "truncation": {"type": "retention_ratio", "retention_ratio": 0.8},
            },
        },
        {"type": "input_audio_buffer.append", "audio": base64.b64encode(b"\xff" * 160).decode()},
        {"type": "input_audio_buffer.commit", "event_id": "evt_1"},
        {"type": "input_audio_buffer.clear"},
        {
            "type": "conversation.item.truncate",
            "item_id": "i",
            "content_index": 0,
            "audio_end_ms": 0,
        },
        {"type": "conversation.item.delete", "item_id": "item_1"},
        {"type": "conversation.item.retrieve", "item_id": "item_1"},
        {"type": "response.cancel"},
        {"type": "response.create"},
        {
            "type": "response.create",
            "response": {
                "instructions": "Say goodbye.",
                "conversation": "none",
                "output_modalities": ["text"],
                "metadata": {"purpose": "summary"},
                "input": [{"type": "message", "role": "user", "content": []}],
                "tool_choice": {"type": "function", "name": "lookup_order"},
            },
        },
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": "{}"},
        },
        {
            "type": "conversation.item.create",
            "previous_item_id": "item_0",
            "item": {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Hello."}],
            },
        },
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hi"}],
            },
        },
    ]
    for event in good:
        assert validate_client_event(event) == [], event


@pytest.mark.parametrize(
    ("event", "code", "param"),
    [
        ({"type": "response.audio.delta"}, "invalid_value", "type"),
        ({"type": "transcription_session.update", "session": {}}, "invalid_value", "type"),
        ({"type": "response.create", "extra": 1}, "unknown_parameter", "extra"),
        (
            {"type": "response.create", "response": {"modalities": ["audio"]}},
            "unknown_parameter",
            "response.modalities",
        ),
        (
            {"type": "input_audio_buffer.append", "audio": "not base64!"},
            "invalid_value",
            "audio",
        ),
        ({"type": "input_audio_buffer.append"}, "missing_required_parameter", "audio"),
        (
            {"type": "conversation.item.truncate", "item_id": "i", "content_index": 0},
            "missing_required_parameter",
            "audio_end_ms",
        ),
        (
            {
                "type": "conversation.item.truncate",
                "item_id": "i",
                "content_index": 0,
                "audio_end_ms": -5,
            },
            "integer_below_min_value",
            "audio_end_ms",
        ),
        (
            {"type": "conversation.item.create", "item": {"type": "function_call_output"}},
            "missing_required_parameter",
            "item.call_id",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {"type": "function_call_output", "call_id": "c", "output": {"ok": 1}},
            },
            "invalid_type",
            "item.output",
        ),
        (
            {
                "type": "conversation.item.create",
                "item": {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "text", "text": "beta part type"}],
                },
            },
            "invalid_value",
            "item.content[0].type",
        ),
        ({"type": "response.cancel", "response_id": 7}, "invalid_type", "response_id"),
    ],
)
def test_schema_rejects(event, code, param):
    problems = find_problems(event)
    assert problems, event
    assert (problems[0].code, problems[0].param) == (code, param)


# --- handshake ------------------------------------------------------------------------


async def expect_rejection(server: FakeRealtimeServer, **kwargs) -> tuple[int, dict]:
    with pytest.raises(InvalidStatus) as caught:
        await connect(server, **kwargs)
    response = caught.value.response
    assert response.headers["Content-Type"] == "application/json"
    return response.status_code, orjson.loads(response.body)


async def test_handshake_rejects_bad_key_missing_key_beta_header_and_missing_model(server):
    status, body = await expect_rejection(server, api_key="sk-wrong")
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["type"] == "invalid_request_error"
    status, _ = await expect_rejection(server, api_key=None)
    assert status == 401
    assert server.violations == []  # a wrong key is the caller's problem, not the protocol's

    status, _ = await expect_rejection(server, headers={"OpenAI-Beta": "realtime=v1"})
    assert status == 400
    status, body = await expect_rejection(server, model=None)
    assert status == 400
    assert body["error"]["param"] == "model"

    assert server.rejected == [401, 401, 400, 400]
    assert len(server.violations) == 2
    assert "OpenAI-Beta" in server.violations[0]
    assert server.sessions == []


async def test_scripted_handshake_rejections_then_a_retry_succeeds(server):
    server.scripts = [RealtimeScript(reject_status=429), RealtimeScript(reject_status=500)]
    status, body = await expect_rejection(server)
    assert (status, body["error"]["code"]) == (429, "rate_limit_exceeded")
    status, body = await expect_rejection(server)
    assert (status, body["error"]["type"]) == (500, "server_error")
    client = await connect(server)  # scripts exhausted: falls back to server.script
    await client.ws.close()
    assert server.rejected == [429, 500]
    assert len(server.sessions) == 1
    assert server.sessions[0].headers["Authorization"] == "Bearer sk-test"


# --- session configuration ------------------------------------------------------------


async def test_session_created_and_update_merges(server):
    client = await connect(server)
    created = client.of("session.created")[0]["session"]
    assert created["type"] == "realtime" and created["model"] == MODEL
    assert created["audio"]["output"]["voice"] == "marin"
    assert created["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}

    updated = (await configure(client, PHONE_SESSION))["session"]
    assert updated["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert updated["audio"]["output"]["voice"] == "cedar"
    assert updated["tools"][0]["name"] == "lookup_order"
    assert updated["audio"]["input"]["turn_detection"]["idle_timeout_ms"] is None

    # A partial update keeps everything else (deep merge per audio direction).
    partial = {"type": "realtime", "audio": {"output": {"speed": 1.2}}}
    updated = (await configure(client, partial))["session"]
    assert updated["audio"]["output"] == {
        "format": {"type": "audio/pcmu"},
        "voice": "cedar",
        "speed": 1.2,
    }
    assert updated["instructions"] == PHONE_SESSION["instructions"]
    semantic = {
        "type": "realtime",
        "audio": {"input": {"turn_detection": {"type": "semantic_vad"}}},
    }
    updated = (await configure(client, semantic))["session"]
    assert updated["audio"]["input"]["turn_detection"] == {
        "type": "semantic_vad",
        "eagerness": "auto",
        "create_response": True,
        "interrupt_response": True,
    }
    assert server.sessions[0].session_config == updated
    assert server.violations == []


def _with_input(**changes) -> dict:
    session = orjson.loads(orjson.dumps(PHONE_SESSION))
    session["audio"]["input"].update(changes)
    return session


@pytest.mark.parametrize(
    ("session", "code", "param"),
    [
        ({"type": "realtime", "input_audio_format": "g711_ulaw"}, "unknown_parameter", None),
        ({"type": "realtime", "modalities": ["audio", "text"]}, "unknown_parameter", None),
        ({"type": "realtime", "voice": "alloy"}, "unknown_parameter", "session.voice"),
        (
            {"type": "realtime", "turn_detection": {"type": "server_vad"}},
            "unknown_parameter",
            "session.turn_detection",
        ),
        ({"instructions": "no type"}, "missing_required_parameter", "session.type"),
        ({"type": "transcription"}, "invalid_value", "session.type"),
        (
            _with_input(turn_detection={"type": "semantic_vad", "threshold": 0.5}),
            "unknown_parameter",
            "session.audio.input.turn_detection.threshold",
        ),
        (
            _with_input(turn_detection={"type": "server_vad", "eagerness": "high"}),
            "unknown_parameter",
            "session.audio.input.turn_detection.eagerness",
        ),
        (_with_input(format="g711_ulaw"), "invalid_type", "session.audio.input.format"),
        (
            _with_input(format={"type": "audio/pcm", "rate": 16000}),
            "invalid_value",
            "session.audio.input.format.rate",
        ),
        (
            _with_input(format={"type": "audio/pcmu", "rate": 8000}),
            "unknown_parameter",
            "session.audio.input.format.rate",
        ),
        (
            {"type": "realtime", "audio": {"output": {"speed": 2.0}}},
            "decimal_above_max_value",
            "session.audio.output.speed",
        ),
        (
            {"type": "realtime", "audio": {"output": {"voice": ""}}},
            "empty_string",
            "session.audio.output.voice",
        ),
        (
            {"type": "realtime", "output_modalities": ["audio", "text"]},
            "invalid_value",
            "session.output_modalities",
        ),
        (
            {"type": "realtime", "tools": [{"type": "function", "name": "x", "strict": True}]},
            "unknown_parameter",
            "session.tools[0].strict",
        ),
    ],
)
async def test_session_update_rejections(server, session, code, param):
    client = await connect(server)
    await client.send({"type": "session.update", "event_id": "evt_bad", "session": session})
    error = (await client.until("error"))["error"]
    assert error["code"] == code
    assert error["type"] == "invalid_request_error"
    assert error["event_id"] == "evt_bad"
    if param:
        assert error["param"] == param
        assert param in error["message"]
    assert len(server.violations) >= 1
    # The session is still usable after a bad event.
    await configure(client, PHONE_SESSION)
    assert server.sessions[0].session_config["audio"]["output"]["voice"] == "cedar"
    server.violations.clear()


async def test_unknown_event_and_invalid_json_are_violations(server):
    client = await connect(server)
    await client.send({"type": "response.audio.delta", "delta": ""})
    assert (await client.until("error"))["error"]["code"] == "invalid_value"
    await client.ws.send("{nope")
    assert (await client.until("error"))["error"]["code"] == "invalid_json"
    assert len(server.violations) == 2
    server.violations.clear()


# --- server VAD -----------------------------------------------------------------------


async def test_vad_turn_with_prefix_padding_transcription_and_automatic_response(server):
    server.script = RealtimeScript(caller_transcripts=["Is the shop open?"], **FAST)
    client = await connect(server)
    await configure(client, PHONE_SESSION)
    await client.append(audio.silence(1000) + audio.tone(600) + audio.silence(700))

    started = await client.until("input_audio_buffer.speech_started")
    assert started["audio_start_ms"] == 1000 - 300  # speech at 1000 ms minus prefix padding
    stopped = await client.until("input_audio_buffer.speech_stopped")
    assert stopped["audio_end_ms"] == 1600
    assert stopped["item_id"] == started["item_id"]
    committed = await client.until("input_audio_buffer.committed")
    assert committed["item_id"] == started["item_id"]
    assert committed["previous_item_id"] is None
    added = await client.until("conversation.item.added")
    assert added["item"]["role"] == "user"
    assert added["item"]["content"] == [{"type": "input_audio", "transcript": None}]
    await client.until("response.done")
    completed = client.of("conversation.item.input_audio_transcription.completed")
    if not completed:  # transcription may arrive after the response, as in the real API
        completed = [await client.until("conversation.item.input_audio_transcription.completed")]
    assert completed[0]["transcript"] == "Is the shop open?"
    assert completed[0]["item_id"] == started["item_id"]
    assert client.types().index("response.created") > client.types().index("conversation.item.done")
    session = server.sessions[0]
    assert len(session.input_audio) == 2300 * 8
    assert session.received_types().count("input_audio_buffer.append") == 115
    assert session.received[-1]["audio_bytes"] == 160 and "audio" not in session.received[-1]
    assert server.violations == []


async def test_vad_speech_interrupts_the_response_in_progress(server):
    server.script = RealtimeScript(
        replies=[Reply(text="A long answer.", audio_ms=3000)], audio_speed=1.0
    )
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    await client.until("response.output_audio.delta")
    vad_on = {"type": "realtime", "audio": {"input": {"turn_detection": {"type": "server_vad"}}}}
    await configure(client, vad_on)
    await client.append(audio.tone(100))
    await client.until("input_audio_buffer.speech_started")
    done = await client.until("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"] == {"type": "cancelled", "reason": "turn_detected"}
    assert done["response"]["output"][0]["status"] == "incomplete"
    deltas = client.of("response.output_audio.delta")
    assert len(deltas) < 30  # stopped well before the 3 s of audio were generated
    assert client.types().index("response.done") > client.types().index(
        "input_audio_buffer.speech_started"
    )
    assert server.violations == []


# --- responses ------------------------------------------------------------------------


async def test_response_streaming_distinct_audio_and_usage(server):
    server.script = RealtimeScript(
        replies=[Reply(text="Hello, this is the bakery.", audio_ms=600), Reply(audio_ms=250)],
        audio_speed=20.0,
    )
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    first = await client.until("response.done")
    await client.send({"type": "response.create", "response": {"instructions": "Bye."}})
    second = await client.until("response.done")

    session = server.sessions[0]
    item_ids = [r["response"]["output"][0]["id"] for r in (first, second)]
    first_audio = session.audio_bytes_for_item(item_ids[0])
    second_audio = session.audio_bytes_for_item(item_ids[1])
    assert len(first_audio) == 600 * 8 and len(second_audio) == 250 * 8
    assert first_audio != second_audio[: len(first_audio)]
    assert first_audio == reply_audio("audio/pcmu", reply_tone_hz(0, 1), 600)
    assert audio.is_speech(first_audio[:160])
    # What the client received is byte-for-byte what the fake recorded.
    received = b"".join(
        base64.b64decode(e["delta"])
        for e in client.of("response.output_audio.delta")
        if e["item_id"] == item_ids[0]
    )
    assert received == first_audio
    assert len(session.audio_sent_by_item[item_ids[0]]) == 6  # 100 ms per delta

    transcript = "".join(
        e["delta"]
        for e in client.of("response.output_audio_transcript.delta")
        if e["item_id"] == item_ids[0]
    )
    assert transcript == "Hello, this is the bakery."
    assert first["response"]["output"][0]["content"] == [
        {"type": "output_audio", "transcript": transcript}
    ]
    usage = first["response"]["usage"]
    assert usage["output_token_details"] == {"text_tokens": 5, "audio_tokens": 12}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    assert usage["input_token_details"]["cached_tokens"] == 0
    expected_order = [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.added",
        "response.content_part.added",
        "response.output_audio_transcript.delta",
        "response.output_audio.delta",
    ]
    types = client.types()
    start = types.index("response.created")
    assert types[start : start + len(expected_order)] == expected_order
    tail = [
        "response.output_audio.done",
        "response.output_audio_transcript.done",
        "response.content_part.done",
        "response.output_item.done",
        "conversation.item.done",
        "response.done",
    ]
    end = types.index("response.done") + 1
    assert types[end - len(tail) : end] == tail
    assert second["response"]["output"][0]["content"][0]["transcript"] == "Okay."
    assert server.violations == []


async def test_text_only_and_out_of_band_responses(server):
    client = await connect(server)
    await configure(client, manual_session())
    await client.send(
        {
            "type": "response.create",
            "response": {"conversation": "none", "output_modalities": ["text"]},
        }
    )
    done = await client.until("response.done")
    assert done["response"]["conversation_id"] is None
    assert "".join(e["delta"] for e in client.of("response.output_text.delta")) == "Okay."
    assert "conversation.item.added" not in client.types()
    assert server.violations == []


async def test_second_response_create_while_active_is_a_violation(server):
    server.script = RealtimeScript(reply_delay_ms=200)
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    await client.send({"type": "response.create"})
    error = (await client.until("error"))["error"]
    assert error["code"] == "conversation_already_has_active_response"
    await client.until("response.done")
    assert len(server.violations) == 1
    server.violations.clear()


async def test_function_call_round_trip(server):
    server.script = RealtimeScript(
        replies=[Reply(function_call=("lookup_order", {"id": 7})), Reply(text="Found it.")],
        **FAST,
    )
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    args_done = await client.until("response.function_call_arguments.done")
    assert args_done["name"] == "lookup_order"
    assert orjson.loads(args_done["arguments"]) == {"id": 7}
    arg_deltas = "".join(e["delta"] for e in client.of("response.function_call_arguments.delta"))
    assert arg_deltas == args_done["arguments"]
    done = await client.until("response.done")
    call_item = done["response"]["output"][0]
    assert call_item["type"] == "function_call"
    assert call_item["call_id"] == args_done["call_id"] and call_item["status"] == "completed"

    # An output for a call the model never made is an error.
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_unknown", "output": "{}"},
        }
    )
    assert (await client.until("error"))["error"]["param"] == "item.call_id"
    assert len(server.violations) == 1
    server.violations.clear()

    output = {"type": "function_call_output", "call_id": args_done["call_id"], "output": '{"a":1}'}
    await client.send({"type": "conversation.item.create", "item": output})
    added = await client.until("conversation.item.added")
    assert added["item"]["call_id"] == args_done["call_id"]
    assert added["previous_item_id"] == call_item["id"]
    await client.until("conversation.item.done")
    await client.send({"type": "response.create"})
    spoken = await client.until("response.done")
    assert spoken["response"]["output"][0]["content"][0]["transcript"] == "Found it."
    assert server.violations == []


async def test_cancel_active_response_and_benign_cancel_when_idle(server):
    server.script = RealtimeScript(replies=[Reply(audio_ms=3000)], audio_speed=1.0)
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    await client.until("response.output_audio.delta")
    await client.send({"type": "response.cancel"})
    done = await client.until("response.done")
    assert done["response"]["status"] == "cancelled"
    assert done["response"]["status_details"]["reason"] == "client_cancelled"
    deltas_at_done = len(client.of("response.output_audio.delta"))
    assert deltas_at_done < 30

    await client.send({"type": "response.cancel", "event_id": "evt_late"})
    error = (await client.until("error"))["error"]
    assert error["code"] == "response_cancel_not_active"
    assert error["event_id"] == "evt_late"
    await asyncio.sleep(0.15)
    assert len(client.of("response.output_audio.delta")) == deltas_at_done  # nothing after done
    session = server.sessions[0]
    assert len(session.benign_errors) == 1
    assert server.violations == []


async def test_truncate_accepts_heard_audio_and_rejects_beyond_generated(server):
    server.script = RealtimeScript(replies=[Reply(audio_ms=600)], **FAST)
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    item_id = (await client.until("response.done"))["response"]["output"][0]["id"]

    truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
    await client.send({**truncate, "audio_end_ms": 700})
    error = (await client.until("error"))["error"]
    assert error["param"] == "audio_end_ms" and "600ms" in error["message"]
    assert len(server.violations) == 1
    server.violations.clear()

    await client.send({**truncate, "audio_end_ms": 320})
    truncated = await client.until("conversation.item.truncated")
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 320)
    assert server.sessions[0].truncations == [
        {"item_id": item_id, "content_index": 0, "audio_end_ms": 320, "generated_ms": 600}
    ]
    # The item now ends at 320 ms: truncating later than that fails like the real API.
    await client.send({**truncate, "audio_end_ms": 400})
    assert (await client.until("error"))["error"]["code"] == "invalid_value"
    await client.send({**truncate, "item_id": "item_missing", "audio_end_ms": 0})
    assert (await client.until("error"))["error"]["code"] == "item_not_found"
    assert len(server.violations) == 2
    server.violations.clear()


async def test_manual_commit_and_empty_commit(server):
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "input_audio_buffer.commit"})
    assert (await client.until("error"))["error"]["code"] == "input_audio_buffer_commit_empty"
    assert len(server.violations) == 1
    server.violations.clear()
    await client.append(audio.tone(200))
    await client.send({"type": "input_audio_buffer.commit"})
    committed = await client.until("input_audio_buffer.committed")
    await client.until("conversation.item.done")
    await client.until("conversation.item.input_audio_transcription.completed")
    await asyncio.sleep(0.05)
    assert "response.created" not in client.types()  # a commit alone never responds
    await client.send({"type": "conversation.item.retrieve", "item_id": committed["item_id"]})
    retrieved = await client.until("conversation.item.retrieved")
    assert base64.b64decode(retrieved["item"]["content"][0]["audio"]) == audio.tone(200)
    await client.send({"type": "input_audio_buffer.clear"})
    await client.until("input_audio_buffer.cleared")
    assert server.violations == []


async def test_voice_cannot_change_after_audio(server):
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    await client.until("response.done")
    await client.send(
        {
            "type": "session.update",
            "session": {"type": "realtime", "audio": {"output": {"voice": "ash"}}},
        }
    )
    assert (await client.until("error"))["error"]["code"] == "cannot_update_voice"
    assert len(server.violations) == 1
    server.violations.clear()


# --- faults ---------------------------------------------------------------------------


async def test_scripted_error_reply_then_normal_reply(server):
    server.script = RealtimeScript(
        replies=[Reply(error=("invalid_request_error", "rate_limit_exceeded"))], **FAST
    )
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    error = (await client.until("error"))["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "rate_limit_exceeded")
    await client.send({"type": "response.create"})  # no response is active after the error
    assert (await client.until("response.done"))["response"]["status"] == "completed"
    assert server.violations == []


async def test_close_after_chunks_drops_the_connection(server):
    server.script = RealtimeScript(replies=[Reply(close_after_chunks=2)], **FAST)
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    with pytest.raises(ConnectionClosed):
        while True:
            await client.recv()
    assert len(client.of("response.output_audio.delta")) == 2
    await server.wait_for(lambda: server.sessions[0].closed)
    assert server.sessions[0].close_reason.startswith("fault")
    assert server.violations == []


async def test_malformed_frame_then_the_reply_carries_on(server):
    server.script = RealtimeScript(replies=[Reply(malformed_after_chunks=1)], **FAST)
    client = await connect(server)
    await configure(client, manual_session())
    await client.send({"type": "response.create"})
    assert (await client.until("response.done"))["response"]["status"] == "completed"
    assert len(client.raw_frames) == 1
    assert len(client.of("response.output_audio.delta")) == 6


async def test_session_expiry_sends_the_real_error_and_closes(server):
    server.script = RealtimeScript(session_max_ms=150, **FAST)
    client = await connect(server)
    error = (await client.until("error"))["error"]
    assert error["code"] == "session_expired"
    assert "maximum duration" in error["message"]
    with pytest.raises(ConnectionClosed):
        await client.recv()
    assert server.sessions[0].close_reason == "session expired"
    assert server.violations == []


async def test_slow_first_reply(server):
    server.script = RealtimeScript(first_reply_delay_ms=300, **FAST)
    client = await connect(server)
    await configure(client, manual_session())
    loop = asyncio.get_running_loop()
    for expected_min, expected_max in ((0.28, 2.0), (0.0, 0.2)):
        started = loop.time()
        await client.send({"type": "response.create"})
        await client.until("response.created")
        assert expected_min <= loop.time() - started < expected_max
        await client.until("response.done")


async def test_audio_pacing_follows_audio_speed(server):
    server.script = RealtimeScript(replies=[Reply(audio_ms=800)], audio_speed=4.0)
    client = await connect(server)
    await configure(client, manual_session())
    loop = asyncio.get_running_loop()
    await client.send({"type": "response.create"})
    await client.until("response.output_audio.delta")
    first_delta_at = loop.time()
    await client.until("response.done")
    elapsed = loop.time() - first_delta_at
    assert 0.15 <= elapsed < 0.6  # 800 ms of audio at 4x is about 200 ms


async def test_sessions_are_independent(server):
    good, bad = await connect(server), await connect(server)
    await configure(good, manual_session())
    await bad.ws.send("garbage")
    await bad.send({"type": "session.update", "session": {"type": "realtime", "voice": "x"}})
    await good.send({"type": "response.create"})
    await good.until("response.done")
    await bad.until("error")
    assert all(v.startswith("session 1:") for v in server.violations)
    assert server.sessions[0].violations == []
    server.violations.clear()


async def test_wait_for_times_out_with_a_description(server):
    await connect(server)
    with pytest.raises(TimeoutError, match="session 0"):
        await server.wait_for(lambda: False, timeout=0.05)
