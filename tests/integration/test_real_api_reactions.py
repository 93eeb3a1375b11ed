"""How calls react to what the real OpenAI and Twilio do, through the real app (Daphne)
with the strict fakes: recoverable and fatal `error` events, failed responses, a tool
that answers while the caller talks (swept across the end of the caller's turn), key
presses, a server that applies other audio formats, idle callers, the time limit, the
caller's last words after a fault, and the signed media-stream handshake."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async

from calls.bridge import NOT_TRANSCRIBED
from tests.fakes.realtime_server import Reply
from tests.fakes.twilio_caller import StreamRefused
from tests.integration.conftest import (
    HealthyCall,
    load_call,
    script,
    spoken,
    wait_for_end,
    wait_for_turns,
)
from tests.integration.test_openai_faults import (
    assert_apologised,
    assert_no_apology,
    hear_greeting_then_ask,
)
from tests.integration.test_tools import ToolServer
from tests.live import TEST_AUTH_TOKEN, TEST_WEBHOOK_SHARED_KEY
from voiceagents.models import Agent, Tool

pytestmark = pytest.mark.django_db(transaction=True)

GREETING = "Hello, you have reached the bakery."
QUESTION = "When do you open?"
AGAIN = "Are you there? When do you open?"
ANSWER = "We open at eight."


async def connected(caller_for, **kwargs):
    """A caller who dialled and whose media stream is open."""
    call = caller_for(**kwargs)
    await call.dial()
    await call.connect_stream()
    return call


async def call_and_ask(caller_for):
    """Dial, hear the 300 ms greeting, ask the question."""
    call = await connected(caller_for)
    await hear_greeting_then_ask(call, 300)
    return call


# --- `error` events -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_type", "code"),
    [("requests", "rate_limit_exceeded"), ("server_error", None)],
    ids=["rate-limit", "null-code"],
)
async def test_a_recoverable_error_is_counted_and_the_call_goes_on(
    agent, realtime, caller_for, error_type, code
):
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(error=(error_type, code)),  # the answer to the question never comes
            Reply(text=ANSWER, audio_ms=300),
        ],
        caller_transcripts=[QUESTION, AGAIN],
    )
    call = await call_and_ask(caller_for)
    session = await realtime.wait_for(lambda: realtime.sessions[first : first + 1])
    await realtime.wait_for(lambda: session[0].sent_events("error"), timeout=5)

    # The session stayed open: the caller asks again and is answered.
    await asyncio.sleep(0.3)
    await call.speak_and_wait(400)
    turns = await wait_for_turns(call.call_sid, 4)
    assert spoken(turns)[-1] == ("agent", ANSWER)
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")
    assert (stored.openai_error_count, stored.openai_last_error) == (1, code or error_type)
    assert len(realtime.sessions) == first + 1  # the same session all along


async def test_a_fatal_error_ends_the_call_but_keeps_the_callers_last_words(
    agent, realtime, caller_for
):
    healthy = HealthyCall(realtime, caller_for)
    await healthy.start()
    realtime.script_for_next_connection = script(
        replies=[Reply(text=GREETING, audio_ms=300), Reply(error=("insufficient_quota", None))],
        caller_transcripts=[QUESTION],
        # The error comes at once; the transcript of the question a moment later.
        transcription_delay_ms=400,
    )
    call = await call_and_ask(caller_for)

    await assert_apologised(call)
    stored, turns = await load_call(call.call_sid)
    assert (stored.completion_reason, stored.error_code) == ("openai_error", "insufficient_quota")
    assert spoken(turns) == [("agent", GREETING), ("caller", QUESTION)]
    await healthy.finish()


async def test_a_transcript_that_never_comes_is_stored_as_not_transcribed(
    agent, realtime, caller_for
):
    realtime.script_for_next_connection = script(
        replies=[Reply(text=GREETING, audio_ms=300), Reply(error=("insufficient_quota", None))],
        transcription_delay_ms=None,
    )
    call = await call_and_ask(caller_for)

    await assert_apologised(call)
    _, turns = await load_call(call.call_sid)
    assert spoken(turns) == [("agent", GREETING), ("caller", NOT_TRANSCRIBED)]


# --- Failed responses ---------------------------------------------------------------------


async def test_a_failed_response_is_retried_with_the_agents_instructions(
    agent, realtime, caller_for
):
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(fail=("server_error", "server_error")),
            Reply(text=ANSWER, audio_ms=300),
        ],
        caller_transcripts=[QUESTION],
    )
    call = await call_and_ask(caller_for)

    turns = await wait_for_turns(call.call_sid, 3)
    assert spoken(turns) == [("agent", GREETING), ("caller", QUESTION), ("agent", ANSWER)]
    session = realtime.sessions[first]
    retry = [e for e in session.received if e["type"] == "response.create"][-1]
    assert retry["response"]["instructions"] == agent.instructions
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.openai_error_count) == ("caller_hangup", 1)
    assert stored.openai_last_error == "server_error"


async def test_a_response_failing_twice_ends_the_call(agent, realtime, caller_for):
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(fail=("server_error", "server_error")),
            Reply(fail=("server_error", None)),
        ],
        caller_transcripts=[QUESTION],
    )
    call = await call_and_ask(caller_for)

    await assert_apologised(call)
    stored, turns = await load_call(call.call_sid)
    assert (stored.completion_reason, stored.error_code) == ("openai_error", "server_error")
    assert stored.error_message == "response failed: type=server_error code=None"
    assert stored.openai_error_count == 2
    assert spoken(turns) == [("agent", GREETING), ("caller", QUESTION)]


# --- A slow tool and a caller who talks meanwhile -----------------------------------------


@database_sync_to_async
def add_tool(agent: Agent, url: str) -> None:
    tool = Tool.objects.create(
        name="opening_hours",
        description="Look up today's opening hours.",
        kind=Tool.Kind.HTTP,
        url=url,
        parameters={"type": "object", "properties": {}},
    )
    agent.tools.add(tool)


SILENCE_MS = 500  # the agent's server VAD silence_duration_ms (the default)


@pytest.mark.parametrize("offset_ms", [-60, -40, -20, 0, 20, 36, 60])
async def test_a_tool_result_around_the_end_of_the_callers_turn_never_drops_the_call(
    agent, realtime, caller_for, offset_ms
):
    """The caller says "uh-huh" during a slow tool; the tool answers `offset_ms` from the
    moment server VAD ends that turn (measured on the audio the fake has received). The
    call goes on and the tool's answer is spoken once."""
    tool = ToolServer(body=b'{"opens": "eight"}', gate=threading.Event())
    await add_tool(agent, tool.url)
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(function_call=("opening_hours", {})),
            Reply(text=ANSWER, audio_ms=300),  # to the "uh-huh", or to the tool output
            Reply(text="Anything else?", audio_ms=300),
        ],
        caller_transcripts=[QUESTION, "Uh-huh."],
    )
    try:
        call = await connected(caller_for)
        await hear_greeting_then_ask(call, 300)
        await asyncio.get_running_loop().run_in_executor(None, tool.requested.wait, 10)
        session = realtime.sessions[first]
        # The mic is sending silence: the "uh-huh" starts with its next frame.
        speech_starts_at = len(call.sent_audio)
        call.speak(300)
        turn_ends_at = speech_starts_at + (300 + SILENCE_MS) * 8
        await realtime.wait_for(
            lambda: len(session.input_audio) >= turn_ends_at + offset_ms * 8, timeout=10
        )
        tool.gate.set()

        await realtime.wait_for(
            lambda: (
                "response.done" in session.sent_types()[-3:]
                and len(session.sent_events("response.done")) >= 3
            ),
            timeout=10,
        )
        await asyncio.sleep(0.5)
        outputs = [
            e
            for e in session.received
            if e["type"] == "conversation.item.create"
            and e["item"]["type"] == "function_call_output"
        ]
        assert len(outputs) == 1
        # Only the normal races with server VAD, which the app shrugs off.
        assert {e["error"]["code"] for e in session.benign_errors} <= {
            "conversation_already_has_active_response",
            "response_cancel_not_active",
        }
        await call.hangup()
        stored = await wait_for_end(call.call_sid)
        assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")
        assert stored.openai_error_count == 0
        _, turns = await load_call(call.call_sid)
        assert ("agent", ANSWER) in spoken(turns)
    finally:
        tool.close()


async def test_a_tool_is_named_by_its_output_item_when_arguments_done_has_no_name(
    agent, realtime, caller_for
):
    tool = ToolServer(body=b'{"opens": "eight"}')
    await add_tool(agent, tool.url)
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(function_call=("opening_hours", {})),
            Reply(text=ANSWER, audio_ms=300),
        ],
        caller_transcripts=[QUESTION],
        name_in_arguments_done=False,
    )
    try:
        call = await call_and_ask(caller_for)
        turns = await wait_for_turns(call.call_sid, 4)
        assert spoken(turns)[-1] == ("agent", ANSWER)
        assert [(t.speaker, t.text) for t in turns if t.speaker == "tool"] == [
            ("tool", "opening_hours({})")
        ]
        assert len(tool.requests) == 1
        await call.hangup()
        stored = await wait_for_end(call.call_sid)
        assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")
    finally:
        tool.close()


# --- Barge-in after a reconnect -------------------------------------------------------------


async def test_a_barge_in_over_audio_from_a_lost_session_clears_it_and_truncates_nothing(
    agent, realtime, caller_for
):
    """The connection drops while Twilio still has two seconds of the answer queued; the
    caller talks over that audio once the new session is open. Twilio is told to clear it,
    and the new session is not asked to truncate an item it never had."""
    first = len(realtime.sessions)
    realtime.scripts = [
        script(
            replies=[
                Reply(text=GREETING, audio_ms=300),
                Reply(text=ANSWER * 4, audio_ms=4000, close_after_chunks=20),
            ],
            caller_transcripts=[QUESTION],
        ),
        script(
            replies=[Reply(text="Sorry, the line dropped.", audio_ms=300), Reply(text=ANSWER)],
            caller_transcripts=["Hold on."],
            first_reply_delay_ms=2000,  # the pick-up is still coming when the caller talks
        ),
    ]
    call = await call_and_ask(caller_for)
    await realtime.wait_for(lambda: len(realtime.sessions) >= first + 2, timeout=10)
    old, new = realtime.sessions[first], realtime.sessions[first + 1]
    assert old.close_reason == "fault: dropped after 20 audio deltas"
    assert call.queued_audio_ms > 500  # the old session's answer is still playing
    clears_before = len(call.clears)
    call.speak(500)

    await call.wait_for(lambda: len(call.clears) > clears_before, timeout=5)
    await realtime.wait_for(lambda: new.sent_events("input_audio_buffer.committed"), timeout=5)
    await asyncio.sleep(0.5)
    assert "conversation.item.truncate" not in new.received_types()
    assert new.sent_events("error") == []
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")
    assert stored.openai_error_count == 0


# --- Key presses, formats, idle callers, the time limit -----------------------------------


async def test_a_key_press_is_answered(agent, realtime, caller_for):
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[Reply(text=GREETING, audio_ms=300), Reply(text="You pressed one.", audio_ms=300)]
    )
    call = await connected(caller_for)
    await call.wait_for(lambda: len(call.heard_audio) >= 300 * 8, timeout=10)
    await asyncio.sleep(0.2)
    await call.dtmf("1")

    turns = await wait_for_turns(call.call_sid, 3)
    assert spoken(turns) == [
        ("agent", GREETING),
        ("caller", "[caller pressed 1]"),
        ("agent", "You pressed one."),
    ]
    assert realtime.sessions[first].received_types().count("response.create") == 2
    await call.hangup()


async def test_a_session_with_other_audio_formats_ends_with_an_apology(agent, realtime, caller_for):
    realtime.script_for_next_connection = script(
        reported_audio_format={"type": "audio/pcm", "rate": 24000}
    )
    call = await connected(caller_for)

    await assert_apologised(call)
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.error_code) == (
        "openai_error",
        "audio_format_mismatch",
    )
    assert "audio/pcm" in stored.error_message


@database_sync_to_async
def configure(agent: Agent, **fields) -> None:
    Agent.objects.filter(pk=agent.pk).update(**fields)


async def test_a_silent_caller_is_prompted_after_the_idle_timeout(agent, realtime, caller_for):
    await configure(agent, idle_timeout_ms=1000)
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(text="Are you still there?", audio_ms=300),
        ],
        audio_speed=1.0,
    )
    call = await connected(caller_for)

    turns = await wait_for_turns(call.call_sid, 2, within_s=8)
    assert spoken(turns) == [("agent", GREETING), ("agent", "Are you still there?")]
    session = realtime.sessions[first]
    vad = session.received[0]["session"]["audio"]["input"]["turn_detection"]
    assert vad["idle_timeout_ms"] == 1000
    (timeout,) = session.sent_events("input_audio_buffer.timeout_triggered")
    assert timeout["audio_end_ms"] - timeout["audio_start_ms"] >= 1000
    await call.hangup()


async def test_the_time_limit_says_goodbye_and_hangs_up(agent, realtime, caller_for):
    await configure(agent, max_call_duration_s=2)
    first = len(realtime.sessions)
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(text="We have to stop here. Goodbye!", audio_ms=400),
        ]
    )
    call = await connected(caller_for)

    await assert_no_apology(call)
    stored, turns = await load_call(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("time_limit", "completed")
    assert spoken(turns)[-1] == ("agent", "We have to stop here. Goodbye!")
    goodbye = [e for e in realtime.sessions[first].received if e["type"] == "response.create"][-1]
    assert goodbye["response"]["tool_choice"] == "none"
    assert goodbye["response"]["instructions"].startswith(agent.instructions)
    assert 2.0 <= stored.duration_s < 6.0


# --- The media stream handshake -----------------------------------------------------------


async def test_a_stream_handshake_without_twilios_signature_is_refused(agent, realtime, caller_for):
    sessions_before = len(realtime.sessions)
    call = caller_for()
    await call.dial()
    with pytest.raises(StreamRefused) as refused:
        await call.connect_stream(
            url_override=call.stream_url, handshake_signature="bm90IHR3aWxpbw=="
        )
    assert refused.value.status == 403
    await asyncio.sleep(0.3)
    assert len(realtime.sessions) == sessions_before  # no OpenAI session for it
    # The token was not spent: the real Twilio, signing properly, still gets through.
    await call.connect_stream()
    await call.wait_for(lambda: len(call.heard_audio) > 0, timeout=10)
    await call.hangup()


# --- Twilio webhooks signed with a SharedKey, and configured as GET -------------------------


async def answered_heard_and_completed(call) -> None:
    """The webhook answers, the stream opens, the agent is heard, the caller hangs up, and
    the call is stored as completed."""
    answered = await call.dial()
    assert answered.status_code == 200
    await call.connect_stream()
    await call.wait_for(lambda: len(call.heard_audio) > 0, timeout=10)
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")


async def test_a_call_signed_with_the_webhook_shared_key_goes_through(agent, realtime, caller_for):
    """Every request of the call (voice webhook, stream handshake, the <Connect> action)
    carries X-Twilio-Webhooks-Signature-Settings and is signed with the SharedKey."""
    await answered_heard_and_completed(caller_for(shared_key=TEST_WEBHOOK_SHARED_KEY))


async def test_a_shared_key_signature_made_with_the_auth_token_is_refused(
    agent, realtime, caller_for
):
    sessions_before = len(realtime.sessions)
    call = caller_for(shared_key=(TEST_WEBHOOK_SHARED_KEY[0], TEST_AUTH_TOKEN))
    answered = await call.dial()
    assert answered.status_code == 403
    assert call.stream_url is None
    assert len(realtime.sessions) == sessions_before


async def test_a_voice_url_configured_as_get_answers_the_call(agent, realtime, caller_for):
    await answered_heard_and_completed(caller_for(voice_method="GET"))
