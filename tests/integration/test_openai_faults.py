"""Faults on the OpenAI side, through the real app (Daphne subprocess) with the fake
Twilio and the fake Realtime server: an unreachable or refusing server, a dropped
connection (one reconnect with the conversation replayed, then giving up), `error`
events, a slow first response, a malformed frame and the session time limit.

For each: the stored completion reason, an apology for the caller after a fault (none
after a normal end), the turns stored before the fault kept, and a healthy call running
at the same time unaffected."""

import asyncio

import pytest
from django.conf import settings

from calls.bridge import RECONNECT_INSTRUCTIONS, RESUME_INSTRUCTIONS
from tests.fakes.realtime_server import Reply
from tests.integration.conftest import (
    HealthyCall,
    load_call,
    log_lines,
    make_caller,
    script,
    spoken,
    start_app,
    wait_for_end,
    wait_for_turns,
)
from tests.live import free_port

pytestmark = pytest.mark.django_db(transaction=True)

APOLOGY = settings.APOLOGY_TEXT
GREETING = "Hello, you have reached the bakery."
QUESTION = "When do you open?"
LONG_ANSWER = "We open at eight and close at six every day of the week except on public holidays."
GOODBYE = "Goodbye!"


@pytest.fixture(scope="module")
def app_without_openai(django_db_setup, realtime_server):
    """The app with OPENAI_BASE_URL on a loopback port where nothing listens."""
    port = free_port()
    app = start_app({"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}, "no-openai")
    app.openai_port = port
    yield app
    app.stop()


@pytest.fixture(scope="module")
def app_rolling_over(django_db_setup, realtime_server):
    """The app moving calls to a new Realtime session every 2 seconds."""
    app = start_app(
        {"OPENAI_BASE_URL": realtime_server.base_url, "OPENAI_SESSION_ROLLOVER_S": "2"},
        "rollover",
    )
    yield app
    app.stop()


def items_created(session) -> list[tuple[str, str]]:
    """(role, text) of the conversation items the app created in a session."""
    created = []
    for event in session.received:
        if event["type"] == "conversation.item.create" and event["item"]["type"] == "message":
            item = event["item"]
            created.append((item["role"], item["content"][0]["text"]))
    return created


def response_creates(session) -> list[dict]:
    return [e for e in session.received if e["type"] == "response.create"]


async def assert_apologised(call) -> None:
    """The app closed the stream and Twilio, asking what next, was told to apologise."""
    await call.wait_closed(timeout=15)
    assert call.closed_by_app
    assert call.after_stream_response is not None
    assert call.after_stream_say_texts == [APOLOGY]
    assert call.after_stream_hung_up


async def assert_no_apology(call) -> None:
    await call.wait_closed(timeout=15)
    assert call.closed_by_app
    assert call.after_stream_response is not None  # Twilio did ask what next
    assert call.after_stream_say_texts == []
    assert call.after_stream_hung_up


async def hear_greeting_then_ask(call, greeting_ms: int) -> None:
    await call.wait_for(lambda: len(call.heard_audio) >= greeting_ms * 8, timeout=10)
    await asyncio.sleep(0.2)
    await call.speak_and_wait(400)


# --- The connection cannot be opened -------------------------------------------------------


async def test_unreachable_openai_ends_the_call_with_an_apology(agent, app_without_openai):
    call = make_caller(app_without_openai)
    await call.dial()
    await call.connect_stream()

    await assert_apologised(call)
    assert call.media_received == []
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("openai_connection_failed", "failed")
    assert stored.error_code == "connect_failed"
    assert str(app_without_openai.openai_port) in stored.error_message
    assert call.violations == []


@pytest.mark.parametrize(
    ("refusal", "status"),
    [({"api_key": "sk-some-other-key"}, 401), ({"reject_status": 503}, 503)],
    ids=["wrong-api-key", "overloaded"],
)
async def test_refused_handshake_ends_only_that_call(agent, realtime, caller_for, refusal, status):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    rejected_before = len(realtime.rejected)
    realtime.script_for_next_connection = script(**refusal)
    call = caller_for()
    await call.dial()
    await call.connect_stream()

    await assert_apologised(call)
    assert realtime.rejected[rejected_before:] == [status]
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("openai_connection_failed", "failed")
    assert stored.error_code == "connect_failed"
    assert str(status) in stored.error_message
    await healthy.finish()


# --- `error` events ------------------------------------------------------------------------


# Recoverable errors leave the call going: tests/integration/test_real_api_reactions.py.
@pytest.mark.parametrize(
    ("error_type", "code"),
    [("insufficient_quota", "insufficient_quota"), ("invalid_request_error", "invalid_api_key")],
)
async def test_fatal_error_event_ends_the_call_keeping_its_turns(
    agent, realtime, caller_for, error_type, code
):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[Reply(text=GREETING, audio_ms=300), Reply(error=(error_type, code))],
        caller_transcripts=[QUESTION],
        first_reply_delay_ms=0,
        reply_delay_ms=300,  # the caller's transcript is stored before the failure
    )
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await hear_greeting_then_ask(call, 300)

    await assert_apologised(call)
    session = realtime.sessions[first]
    (error,) = session.sent_events("error")
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("openai_error", "failed")
    assert stored.error_code == code
    assert stored.error_message == error["error"]["message"] != ""
    _, turns = await load_call(call.call_sid)
    assert spoken(turns) == [("agent", GREETING), ("caller", QUESTION)]
    await healthy.finish()


# --- The connection drops ------------------------------------------------------------------


async def test_dropped_connection_reconnects_once_with_the_conversation(
    agent, realtime, caller_for
):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    first = len(realtime.sessions)
    realtime.scripts = [
        script(
            replies=[
                Reply(text=GREETING, audio_ms=300),
                Reply(text=LONG_ANSWER, audio_ms=2000, close_after_chunks=3),
            ],
            caller_transcripts=[QUESTION],
        ),
        script(
            replies=[
                Reply(text="Sorry, the line dropped. We open at eight.", audio_ms=400),
                Reply(function_call=("end_call", {})),
                Reply(text=GOODBYE, audio_ms=300),
            ],
            caller_transcripts=["Thank you, bye."],
        ),
    ]
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await hear_greeting_then_ask(call, 300)

    # The first session dies three chunks into the answer; a second one is opened, told
    # the conversation so far, and asked to pick it up.
    await realtime.wait_for(lambda: len(realtime.sessions) >= first + 2, timeout=10)
    old, new = realtime.sessions[first], realtime.sessions[first + 1]
    assert old.close_reason == "fault: dropped after 3 audio deltas"
    await realtime.wait_for(lambda: response_creates(new), timeout=5)
    assert new.received_types()[0] == "session.update"
    # The answer the caller was hearing is replayed too, cut to what they had heard.
    created = items_created(new)
    assert created[:2] == [("assistant", GREETING), ("user", QUESTION)]
    (cut_role, cut_text) = created[2]
    assert cut_role == "assistant" and cut_text and LONG_ANSWER.startswith(cut_text)
    assert cut_text != LONG_ANSWER
    (resume,) = response_creates(new)
    # The agent's own instructions first: persona and language survive the reconnect.
    assert resume["response"]["instructions"] == f"{agent.instructions}\n\n{RECONNECT_INSTRUCTIONS}"
    turns = await wait_for_turns(call.call_sid, 3)
    assert spoken(turns)[2] == ("agent", "Sorry, the line dropped. We open at eight.")
    (sorry_item,) = new.audio_sent_by_item
    heard_payloads = [payload for _, payload in call.media_received]
    assert (
        heard_payloads[-len(new.audio_sent_by_item[sorry_item]) :]
        == (new.audio_sent_by_item[sorry_item])
    )

    # The caller carries on in the new session, and the agent ends the call normally.
    await call.speak_and_wait(400)
    await assert_no_apology(call)
    assert len(realtime.sessions) == first + 2  # one reconnect, no more
    assert bytes(old.input_audio) == bytes(call.sent_audio[: len(old.input_audio)])
    assert len(new.input_audio) > 400 * 8
    assert bytes(new.input_audio) in bytes(call.sent_audio)
    stored, turns = await load_call(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("agent_hangup", "completed")
    speakers = ["agent", "caller", "agent", "agent", "caller", "tool", "agent"]
    assert [t.speaker for t in turns] == speakers
    assert spoken(turns)[:2] == [("agent", GREETING), ("caller", QUESTION)]
    cut_answer = turns[2]
    assert cut_answer.interrupted and LONG_ANSWER.startswith(cut_answer.text)
    assert turns[3].text == "Sorry, the line dropped. We open at eight."
    assert turns[4].text == "Thank you, bye."
    assert turns[6].text == GOODBYE
    await healthy.finish()


async def test_second_drop_ends_the_call_as_a_connection_failure(agent, realtime, caller_for):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    first = len(realtime.sessions)
    realtime.scripts = [
        script(
            replies=[
                Reply(text=GREETING, audio_ms=300),
                Reply(text=LONG_ANSWER, audio_ms=2000, close_after_chunks=2),
            ],
            caller_transcripts=[QUESTION],
        ),
        script(replies=[Reply(text="Sorry about that.", audio_ms=1000, close_after_chunks=2)]),
    ]
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await hear_greeting_then_ask(call, 300)

    await assert_apologised(call)
    assert len(realtime.sessions) == first + 2
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("openai_connection_failed", "failed")
    assert stored.error_code == "connection_closed"
    _, turns = await load_call(call.call_sid)
    assert spoken(turns)[:2] == [("agent", GREETING), ("caller", QUESTION)]
    # What the caller heard of both cut-off replies is kept, marked as interrupted.
    assert [(t.speaker, t.interrupted) for t in turns[2:]] == [("agent", True), ("agent", True)]
    assert LONG_ANSWER.startswith(turns[2].text)
    assert "Sorry about that.".startswith(turns[3].text)
    await healthy.finish()


# --- Slow and malformed answers ------------------------------------------------------------


async def test_slow_first_response_still_greets(agent, realtime, caller_for):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(function_call=("end_call", {})),
            Reply(text=GOODBYE, audio_ms=300),
        ],
        first_reply_delay_ms=2500,
    )
    call = caller_for()
    await call.dial()
    await call.connect_stream()

    # The healthy call is served while this one waits for its greeting.
    await healthy.finish()
    await call.wait_for(lambda: len(call.heard_audio) >= 300 * 8, timeout=10)
    assert call.first_media_at - call.start_sent_at >= 2.5
    await asyncio.sleep(0.2)
    await call.speak_and_wait(400)
    await assert_no_apology(call)
    stored, turns = await load_call(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("agent_hangup", "completed")
    assert spoken(turns)[0] == ("agent", GREETING)
    assert turns[-1].text == GOODBYE


async def test_malformed_frame_is_logged_and_skipped(agent, realtime, caller_for, app_server):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=600, malformed_after_chunks=2),
            Reply(function_call=("end_call", {})),
            Reply(text=GOODBYE, audio_ms=300),
        ],
    )
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await realtime.wait_for(lambda: len(realtime.sessions) > first)
    session = realtime.sessions[first]

    # Every chunk of the greeting around the broken frame reaches the caller, in order.
    await call.wait_for(lambda: len(call.heard_audio) >= 600 * 8, timeout=10)
    (greeting_item,) = list(session.audio_sent_by_item)[:1]
    chunks = session.audio_sent_by_item[greeting_item]
    assert len(chunks) == 6
    assert [payload for _, payload in call.media_received[:6]] == chunks
    assert "fake.malformed_frame" in session.sent_types()
    assert log_lines(app_server, call.call_sid, "ignored malformed OpenAI event")

    await asyncio.sleep(0.2)
    await call.speak_and_wait(400)
    await assert_no_apology(call)
    stored, turns = await load_call(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("agent_hangup", "completed")
    assert [(t.speaker, t.interrupted) for t in turns] == [
        ("agent", False),
        ("caller", False),
        ("tool", False),
        ("agent", False),
    ]
    await healthy.finish()


# --- The session time limit ----------------------------------------------------------------


async def test_rollover_moves_the_call_to_a_new_session_before_it_expires(
    agent, realtime, app_rolling_over
):
    first = len(realtime.sessions)
    realtime.scripts = [
        # Would expire at 3.5 s; the app rolls over at 2 s.
        script(replies=[Reply(text=GREETING, audio_ms=300)], session_max_ms=3500),
        script(
            replies=[Reply(text="We open at eight.", audio_ms=300)], caller_transcripts=[QUESTION]
        ),
    ]
    call = make_caller(app_rolling_over)
    await call.dial()
    await call.connect_stream()
    await call.wait_for(lambda: len(call.heard_audio) >= 300 * 8, timeout=10)

    await realtime.wait_for(lambda: len(realtime.sessions) >= first + 2, timeout=10)
    old, new = realtime.sessions[first], realtime.sessions[first + 1]
    await realtime.wait_for(lambda: old.closed, timeout=5)
    assert old.close_reason != "session expired"
    assert old.sent_events("error") == []
    await realtime.wait_for(lambda: items_created(new), timeout=5)
    assert new.received_types()[0] == "session.update"
    assert items_created(new) == [("assistant", GREETING)]

    await asyncio.sleep(0.2)
    await call.speak_and_wait(400)
    turns = await wait_for_turns(call.call_sid, 3)
    assert spoken(turns) == [
        ("agent", GREETING),
        ("caller", QUESTION),
        ("agent", "We open at eight."),
    ]
    assert response_creates(new) == []  # nobody was prompted: the caller spoke next
    assert len(new.input_audio) >= 400 * 8
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")
    assert call.violations == []


async def test_expiry_mid_answer_moves_to_a_new_session_that_answers_again(
    agent, realtime, caller_for
):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    first = len(realtime.sessions)
    realtime.scripts = [
        # A six-second greeting in real time; the session expires 1.5 s into it.
        script(replies=[Reply(text=GREETING, audio_ms=6000)], audio_speed=1.0, session_max_ms=1500),
        script(replies=[Reply(text="Sorry, as I was saying: hello!", audio_ms=300)]),
    ]
    call = caller_for()
    await call.dial()
    await call.connect_stream()

    await realtime.wait_for(lambda: len(realtime.sessions) >= first + 2, timeout=10)
    old, new = realtime.sessions[first], realtime.sessions[first + 1]
    assert old.close_reason == "session expired"
    (expired,) = old.sent_events("error")
    assert expired["error"]["code"] == "session_expired"
    assert "response.done" not in old.sent_types()  # the greeting was cut off
    await realtime.wait_for(lambda: response_creates(new), timeout=5)
    (resume,) = response_creates(new)
    assert resume["response"]["instructions"] == f"{agent.instructions}\n\n{RESUME_INSTRUCTIONS}"
    turns = await wait_for_turns(call.call_sid, 1)
    assert spoken(turns) == [("agent", "Sorry, as I was saying: hello!")]
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    _, turns = await load_call(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")
    # The cut greeting is kept too, as far as it was played.
    assert [(t.speaker, t.interrupted) for t in turns] == [("agent", True), ("agent", False)]
    assert GREETING.startswith(turns[0].text)
    await healthy.finish()


async def test_expiry_without_a_new_session_ends_the_call(agent, realtime, caller_for):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    realtime.scripts = [
        script(replies=[Reply(text=GREETING, audio_ms=300)], session_max_ms=1500),
        script(reject_status=503),
    ]
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await wait_for_turns(call.call_sid, 1)

    await assert_apologised(call)
    stored, turns = await load_call(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("openai_connection_failed", "failed")
    assert stored.error_code == "connect_failed"
    assert "503" in stored.error_message
    assert spoken(turns) == [("agent", GREETING)]
    await healthy.finish()
