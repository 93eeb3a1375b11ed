"""Faults and bad input on the Twilio side, through the real app (Daphne subprocess):
refused stream handshakes (forged, expired, reused tokens; a deleted agent), streams that
never start or start wrongly, garbled and oversized frames, and the ways a stream can
end (no `stop`, a dropped TCP connection, `stop` twice)."""

import asyncio
import base64
import time
from unittest import mock

import orjson
import pytest
from channels.db import database_sync_to_async
from django.conf import settings
from django.core import signing
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from calls.models import Call, PhoneNumber
from calls.stream_tokens import SALT, make_stream_token
from tests.fakes import audio
from tests.fakes.realtime_server import Reply
from tests.fakes.twilio_caller import StreamRefused
from tests.integration.conftest import (
    load_call,
    log_lines,
    script,
    spoken,
    wait_for_end,
    wait_for_turns,
)

pytestmark = pytest.mark.django_db(transaction=True)

APOLOGY = settings.APOLOGY_TEXT
GREETING = "Hello, you have reached the bakery."
QUESTION = "Do you sell cakes?"
ANSWER = "Yes, every kind."


@pytest.fixture
def chat(realtime):
    """Script the next call: a greeting, then one answer to one question."""
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[Reply(text=GREETING, audio_ms=300), Reply(text=ANSWER, audio_ms=300)],
        caller_transcripts=[QUESTION],
    )
    return lambda: realtime.sessions[first] if len(realtime.sessions) > first else None


async def greeted(call) -> None:
    await call.wait_for(lambda: len(call.heard_audio) >= 300 * 8, timeout=10)
    await wait_for_turns(call.call_sid, 1)


async def ask_and_get_answer(call) -> None:
    """The caller asks; their words reach OpenAI and the answer is stored."""
    await asyncio.sleep(0.2)
    await call.speak_and_wait(400)
    turns = await wait_for_turns(call.call_sid, 3)
    assert spoken(turns) == [("agent", GREETING), ("caller", QUESTION), ("agent", ANSWER)]


def assert_audio_forwarded_exactly(call, session) -> None:
    """Only the caller's well-formed frames reached OpenAI, byte for byte, in order."""
    assert len(session.input_audio) > 0
    assert bytes(session.input_audio) == bytes(call.sent_audio[: len(session.input_audio)])


def media_frame(call, payload: str, timestamp_ms: int = 0) -> str:
    return orjson.dumps(
        {
            "event": "media",
            "streamSid": call.stream_sid,
            "media": {
                "track": "inbound",
                "chunk": "1",
                "timestamp": str(timestamp_ms),
                "payload": payload,
            },
        }
    ).decode()


async def assert_no_session_opened(realtime, sessions_before: int) -> None:
    await asyncio.sleep(0.3)  # an OpenAI connection would have been opened by now
    assert len(realtime.sessions) == sessions_before


@database_sync_to_async
def stream_state(sid: str) -> tuple[str, object]:
    call = Call.objects.get(sid=sid)
    return call.status, call.stream_connected_at


# --- The stream handshake ------------------------------------------------------------------


def forged_token(call_sid: str) -> str:
    return signing.dumps(call_sid, salt=SALT, key="not-the-app-secret")


def expired_token(call_sid: str) -> str:
    signed_at = time.time() - settings.STREAM_TOKEN_MAX_AGE_S - 60
    with mock.patch("django.core.signing.time.time", return_value=signed_at):
        return make_stream_token(call_sid)


@pytest.mark.parametrize(
    "bad_token",
    [lambda sid: "not-a-token", forged_token, expired_token],
    ids=["garbage", "forged", "expired"],
)
async def test_bad_stream_token_is_refused_before_openai(
    agent, realtime, caller_for, chat, bad_token
):
    call = caller_for()
    await call.dial()
    sessions_before = len(realtime.sessions)
    with pytest.raises(StreamRefused) as refused:
        await call.connect_stream(url_override=f"/twilio/stream/{bad_token(call.call_sid)}")
    assert refused.value.status == 403
    await assert_no_session_opened(realtime, sessions_before)
    assert await stream_state(call.call_sid) == ("ringing", None)

    # The refusal used nothing up: the stream Twilio was told about still works.
    await call.connect_stream()
    await greeted(call)
    await call.hangup()
    assert (await wait_for_end(call.call_sid)).completion_reason == "caller_hangup"


async def test_stream_token_works_once(agent, realtime, caller_for, chat):
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await greeted(call)
    sessions_before = len(realtime.sessions)

    replay = caller_for(call_sid=call.call_sid)
    with pytest.raises(StreamRefused) as refused:
        await replay.connect_stream(url_override=call.stream_url)
    assert refused.value.status == 403
    await assert_no_session_opened(realtime, sessions_before)

    await call.hangup()
    await wait_for_end(call.call_sid)
    late = caller_for(call_sid=call.call_sid)
    with pytest.raises(StreamRefused):
        await late.connect_stream(url_override=call.stream_url)
    stored, turns = await load_call(call.call_sid)
    assert stored.completion_reason == "caller_hangup"
    assert spoken(turns) == [("agent", GREETING)]


@database_sync_to_async
def delete_agent(agent) -> None:
    PhoneNumber.objects.filter(agent=agent).delete()
    agent.delete()


async def test_call_whose_agent_was_deleted_is_refused_and_finalised(agent, realtime, caller_for):
    call = caller_for()
    await call.dial()
    await delete_agent(agent)
    sessions_before = len(realtime.sessions)

    with pytest.raises(StreamRefused) as refused:
        await call.connect_stream()
    assert refused.value.status == 403
    await assert_no_session_opened(realtime, sessions_before)
    # Twilio moved on to the <Connect action>: the caller hears the apology.
    assert call.after_stream_say_texts == [APOLOGY]
    stored = await wait_for_end(call.call_sid, within_s=2)
    assert (stored.status, stored.completion_reason) == ("failed", "server_error")
    assert stored.error_code == "agent_missing"


# --- Starting the stream -------------------------------------------------------------------


async def test_stream_that_never_starts_is_ended(agent, realtime, caller_for, chat):
    call = caller_for()
    await call.dial()
    await call.connect_stream(send_start=False)
    session = await realtime.wait_for(chat, timeout=5)

    await call.wait_closed(timeout=15)
    assert call.closed_by_app
    assert call.after_stream_say_texts == [APOLOGY]
    stored = await wait_for_end(call.call_sid)
    assert (stored.status, stored.completion_reason) == ("failed", "server_error")
    assert stored.error_code == "stream_not_started"
    # The session was configured but nobody was greeted, and it is closed.
    assert session.received_types() == ["session.update"]
    await realtime.wait_for(lambda: session.closed, timeout=5)
    assert call.received == []


async def test_media_before_start_is_dropped(agent, realtime, caller_for, chat, app_server):
    call = caller_for()
    await call.dial()
    await call.connect_stream(send_start=False)
    early_speech = base64.b64encode(audio.tone(20, amplitude=8000, freq=300)).decode()
    for timestamp in range(0, 100, 20):
        await call.send_raw(media_frame(call, early_speech, timestamp))
    await call.send_start()

    await greeted(call)
    await ask_and_get_answer(call)
    assert_audio_forwarded_exactly(call, chat())
    assert log_lines(app_server, call.call_sid, "(media before start)")
    await call.hangup()
    assert (await wait_for_end(call.call_sid)).completion_reason == "caller_hangup"


@pytest.mark.parametrize(
    ("start_change", "error_code"),
    [
        ({"callSid": "CA" + "9" * 32}, "stream_call_mismatch"),
        ({"customParameters": {}}, "stream_token_mismatch"),
    ],
    ids=["another-call", "no-token-parameter"],
)
async def test_start_for_the_wrong_call_is_ended(
    agent, realtime, caller_for, chat, start_change, error_code
):
    call = caller_for()
    await call.dial()
    await call.connect_stream(send_start=False)
    start = {
        "accountSid": call.account_sid,
        "streamSid": call.stream_sid,
        "callSid": call.call_sid,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": call.stream_parameters,
        **start_change,
    }
    await call.send_raw(
        orjson.dumps({"event": "start", "streamSid": call.stream_sid, "start": start}).decode()
    )

    await call.wait_closed(timeout=10)
    assert call.closed_by_app
    assert call.after_stream_say_texts == [APOLOGY]
    stored = await wait_for_end(call.call_sid)
    assert (stored.status, stored.completion_reason) == ("failed", "server_error")
    assert stored.error_code == error_code
    # The call may end before its OpenAI session is even open; if it opened, nobody was
    # greeted and it is closed.
    await asyncio.sleep(0.3)
    session = chat()
    if session is not None:
        assert "response.create" not in session.received_types()
        await realtime.wait_for(lambda: session.closed, timeout=5)


# --- Bad frames during the call ------------------------------------------------------------


async def test_garbled_frames_are_logged_and_the_call_continues(
    agent, realtime, caller_for, chat, app_server
):
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await greeted(call)

    garbled = [
        "this is not json",
        orjson.dumps({"event": "shout", "streamSid": call.stream_sid}).decode(),
        media_frame(call, "not base64!"),
        orjson.dumps({"event": "media", "streamSid": call.stream_sid, "media": {}}).decode(),
        orjson.dumps(
            {"event": "mark", "streamSid": call.stream_sid, "mark": {"name": [1]}}
        ).decode(),
        orjson.dumps({"streamSid": call.stream_sid}).decode(),
        b"\x00\x01 binary",
        orjson.dumps([1, 2, 3]).decode(),
    ]
    for frame in garbled:
        await call.send_raw(frame)

    await ask_and_get_answer(call)
    assert_audio_forwarded_exactly(call, chat())
    logged = log_lines(app_server, call.call_sid, "dropped malformed Twilio frame")
    # The first few are logged; a peer sending garbage cannot flood the log.
    assert len(logged) == 5
    assert "not a JSON object with an event" in logged[0]
    assert "unknown event 'shout'" in logged[1]
    assert "media payload is not base64" in logged[2]
    assert "media without payload/timestamp" in logged[3]
    assert "mark name is not a string" in logged[4]
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert (stored.status, stored.completion_reason) == ("completed", "caller_hangup")


async def test_oversized_frame_is_dropped(agent, realtime, caller_for, chat, app_server):
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await greeted(call)

    # Thirty seconds of audio in one frame, where Twilio sends 20 ms.
    loud = base64.b64encode(audio.tone(30_000, amplitude=8000, freq=300)).decode()
    await call.send_raw(media_frame(call, loud, 1000))

    await ask_and_get_answer(call)
    assert_audio_forwarded_exactly(call, chat())
    assert log_lines(app_server, call.call_sid, "oversized frame")
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert (stored.status, stored.completion_reason) == ("completed", "caller_hangup")


async def test_frame_beyond_the_servers_limit_cuts_the_stream_keeping_the_call(
    agent, realtime, caller_for, chat
):
    """Daphne drops the connection on a message over 1 MiB before the app sees it; the
    app only sees a lost stream, and still finalises the call with its turns."""
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await greeted(call)
    await ask_and_get_answer(call)

    huge = base64.b64encode(bytes([audio.ULAW_SILENCE]) * 1024 * 1024).decode()
    await call.send_raw(media_frame(call, huge, 1000))

    await call.wait_closed(timeout=10)
    stored = await wait_for_end(call.call_sid)
    assert (stored.status, stored.completion_reason) == ("completed", "normal")
    _, turns = await load_call(call.call_sid)
    assert spoken(turns) == [("agent", GREETING), ("caller", QUESTION), ("agent", ANSWER)]
    assert_audio_forwarded_exactly(call, chat())
    await realtime.wait_for(lambda: chat().closed, timeout=5)


# --- How the stream ends -------------------------------------------------------------------


async def test_stream_closed_without_stop_ends_normally(agent, realtime, caller_for, chat):
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await greeted(call)
    await ask_and_get_answer(call)

    await call.hangup(stop_count=0)
    assert not call.stop_sent
    stored, turns = await load_call((await wait_for_end(call.call_sid)).sid)
    assert (stored.status, stored.completion_reason) == ("completed", "normal")
    assert spoken(turns) == [("agent", GREETING), ("caller", QUESTION), ("agent", ANSWER)]
    await realtime.wait_for(lambda: chat().closed, timeout=5)


async def test_dropped_connection_finalises_the_call(agent, realtime, caller_for, chat):
    realtime.script_for_next_connection.replies.append(Reply(text="A long story", audio_ms=3000))
    realtime.script_for_next_connection.audio_speed = 1.0
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await greeted(call)
    await ask_and_get_answer(call)
    # The caller asks again and the line dies while the next answer plays.
    await call.speak_and_wait(400)
    await call.wait_for(lambda: len(call.heard_audio) >= (300 + 300 + 200) * 8, timeout=5)

    await call.drop_connection()
    stored = await wait_for_end(call.call_sid)
    assert (stored.status, stored.completion_reason) == ("completed", "normal")
    _, turns = await load_call(call.call_sid)
    assert spoken(turns)[:3] == [("agent", GREETING), ("caller", QUESTION), ("agent", ANSWER)]
    assert turns[-1].speaker == "agent" and turns[-1].interrupted
    await realtime.wait_for(lambda: chat().closed, timeout=5)


async def test_duplicate_stop_completes_the_call_once(
    agent, realtime, caller_for, chat, app_server
):
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await greeted(call)
    await ask_and_get_answer(call)

    await call.hangup(stop_count=2)
    stored = await wait_for_end(call.call_sid)
    assert (stored.status, stored.completion_reason) == ("completed", "caller_hangup")
    _, turns = await load_call(call.call_sid)
    assert spoken(turns) == [("agent", GREETING), ("caller", QUESTION), ("agent", ANSWER)]
    await asyncio.sleep(0.3)
    assert len(log_lines(app_server, call.call_sid, "ending: ")) == 1


@pytest.mark.parametrize("path", ["/", "/nope", "/twilio/stream", "/twilio/stream/a/b"])
async def test_an_unknown_websocket_path_is_refused_without_a_traceback(app_server, path):
    log_before = len(app_server.log())
    with pytest.raises(InvalidStatus) as refused:
        async with connect(app_server.base_url.replace("http", "ws", 1) + path):
            pass
    assert refused.value.response.status_code == 403
    await asyncio.sleep(0.2)
    new_log = app_server.log()[log_before:]
    assert "Traceback" not in new_log
    assert "No route found" not in new_log


async def test_a_nonsense_media_timestamp_does_not_stop_later_turns_saving(
    agent, realtime, caller_for, chat, app_server
):
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await greeted(call)
    silence = base64.b64encode(audio.silence(20)).decode()
    await call.send_raw(media_frame(call, silence, 10**19))

    await ask_and_get_answer(call)
    _, turns = await load_call(call.call_sid)
    assert all(0 <= t.started_ms < 60_000 for t in turns)
    assert log_lines(app_server, call.call_sid, "(media timestamp out of range)")
    await call.hangup()
    assert (await wait_for_end(call.call_sid)).completion_reason == "caller_hangup"
