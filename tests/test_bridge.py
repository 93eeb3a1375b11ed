"""The call bridge as pure logic: events in, actions out, no sockets."""

import base64

import orjson
import pytest

from calls.bridge import (
    MAX_TWILIO_MESSAGE_CHARS,
    RESUME_INSTRUCTIONS,
    CallBridge,
    EndCall,
    ReconnectOpenAI,
    RunTool,
    SaveTurn,
    SendOpenAI,
    SendTwilio,
    StreamStarted,
    base64_audio_bytes,
    cut_transcript,
)
from voiceagents.realtime import AgentConfig, ToolConfig

CALL_SID = "CA" + "1" * 32
STREAM_SID = "MZ" + "2" * 32
TOKEN = "tok-123"


def agent_config(**overrides) -> AgentConfig:
    fields = dict(
        name="Front desk",
        model="gpt-realtime-1.5",
        voice="marin",
        instructions="Be brief.",
        greeting="Hello, front desk.",
        turn_detection="server_vad",
        input_transcription_model="gpt-4o-transcribe",
        tools=(
            ToolConfig("end_call", "end_call", {"type": "function", "name": "end_call"}),
            ToolConfig("lookup", "http", {"type": "function", "name": "lookup"}, "http://t/lookup"),
        ),
    )
    fields.update(overrides)
    return AgentConfig(**fields)


def twilio(event: str, **body) -> str:
    return orjson.dumps({"event": event, "streamSid": STREAM_SID, **body}).decode()


def start_msg(token: str = TOKEN, call_sid: str = CALL_SID) -> str:
    return twilio(
        "start",
        start={
            "streamSid": STREAM_SID,
            "callSid": call_sid,
            "accountSid": "AC1",
            "tracks": ["inbound"],
            "customParameters": {"token": token},
        },
    )


def media_msg(payload: str, timestamp_ms: int = 0) -> str:
    return twilio(
        "media", media={"track": "inbound", "timestamp": str(timestamp_ms), "payload": payload}
    )


def mark_msg(name: str) -> str:
    return twilio("mark", mark={"name": name})


def openai(kind: str, **body) -> bytes:
    return orjson.dumps({"type": kind, "event_id": "event_x", **body})


def audio_b64(ms: int, byte: int = 0x55) -> str:
    return base64.b64encode(bytes([byte]) * (8 * ms)).decode()


def sent_twilio(actions) -> list[dict]:
    return [orjson.loads(a.text) for a in actions if isinstance(a, SendTwilio)]


def sent_openai(actions) -> list[dict]:
    return [orjson.loads(a.text) for a in actions if isinstance(a, SendOpenAI)]


def of_type(actions, kind) -> list:
    return [a for a in actions if isinstance(a, kind)]


@pytest.fixture
def bridge() -> CallBridge:
    b = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    b.on_twilio_text(twilio("connected", protocol="Call", version="1.0.0"))
    b.on_twilio_text(start_msg())
    return b


def speak(bridge: CallBridge, response_id: str, item_id: str, chunks_ms: list[int], text: str):
    """The model starts a response and streams audio chunks; returns all actions."""
    actions = bridge.on_openai_text(openai("response.created", response={"id": response_id}))
    actions += bridge.on_openai_text(
        openai(
            "response.output_item.added",
            response_id=response_id,
            output_index=0,
            item={"id": item_id, "type": "message", "role": "assistant"},
        )
    )
    actions += bridge.on_openai_text(
        openai(
            "response.output_audio_transcript.delta",
            response_id=response_id,
            item_id=item_id,
            output_index=0,
            content_index=0,
            delta=text,
        )
    )
    for ms in chunks_ms:
        actions += bridge.on_openai_text(
            openai(
                "response.output_audio.delta",
                response_id=response_id,
                item_id=item_id,
                output_index=0,
                content_index=0,
                delta=audio_b64(ms),
            )
        )
    return actions


def response_done(bridge: CallBridge, response_id: str, status="completed", usage=None):
    return bridge.on_openai_text(
        openai(
            "response.done",
            response={"id": response_id, "status": status, "usage": usage or {}, "output": []},
        )
    )


def test_session_update_is_sent_first_on_connect():
    bridge = CallBridge(CALL_SID, agent_config())
    (event,) = sent_openai(bridge.on_openai_connected())
    assert event["type"] == "session.update"
    assert event["session"]["type"] == "realtime"
    assert event["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}


def test_start_reports_the_stream_and_makes_the_agent_greet():
    b = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    actions = b.on_twilio_text(start_msg())
    assert of_type(actions, StreamStarted) == [StreamStarted(STREAM_SID)]
    (greeting,) = sent_openai(actions)
    assert greeting["type"] == "response.create"
    assert "Hello, front desk." in greeting["response"]["instructions"]


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (start_msg(token="forged"), "stream_token_mismatch"),
        (start_msg(call_sid="CA" + "9" * 32), "stream_call_mismatch"),
    ],
)
def test_start_for_another_call_or_without_its_token_ends_the_call(message, code):
    b = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    (end,) = of_type(b.on_twilio_text(message), EndCall)
    assert end.reason == "server_error"
    assert end.error_code == code


def test_caller_audio_is_forwarded_without_re_encoding(bridge):
    payload = audio_b64(20, byte=0x12)
    (append,) = sent_openai(bridge.on_twilio_text(media_msg(payload, 40)))
    assert append == {"type": "input_audio_buffer.append", "audio": payload}
    assert bridge.stream_ms == 60


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        b"\xff\xfe",
        "[]",
        '{"no_event": 1}',
        twilio("media"),
        twilio("media", media={"payload": "abc"}),
        media_msg("not base64!!"),
        media_msg('AAAA","type":"session.update'),
        media_msg("AAA"),
        twilio("mark", mark={}),
        twilio("dtmf", dtmf=None),
        twilio("start", start={}),
        twilio("something_new"),
    ],
)
def test_malformed_twilio_frames_are_dropped_without_ending_the_call(bridge, raw):
    assert bridge.on_twilio_text(raw) == []
    assert not bridge.ended
    assert bridge.malformed_twilio == 1


def test_media_before_start_is_dropped():
    b = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    assert b.on_twilio_text(media_msg(audio_b64(20))) == []
    assert b.malformed_twilio == 1


def test_agent_audio_goes_to_twilio_unchanged_with_a_mark_after_each_chunk(bridge):
    actions = speak(bridge, "resp_1", "item_1", [100, 100], "Hello there")
    sent = sent_twilio(actions)
    assert [m["event"] for m in sent] == ["media", "mark", "media", "mark"]
    assert sent[0] == {
        "event": "media",
        "streamSid": STREAM_SID,
        "media": {"payload": audio_b64(100)},
    }
    assert sent[1]["mark"]["name"] != sent[3]["mark"]["name"]


def test_marks_measure_what_was_heard_and_barge_in_truncates_to_it(bridge):
    marks = [
        m["mark"]["name"]
        for m in sent_twilio(
            speak(
                bridge,
                "resp_1",
                "item_1",
                [100] * 5,
                "one two three four five six seven eight nine ten",
            )
        )
        if m["event"] == "mark"
    ]
    bridge.on_twilio_text(mark_msg(marks[0]))
    bridge.on_twilio_text(mark_msg(marks[1]))
    actions = bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=900, item_id="item_caller")
    )
    to_twilio, to_openai = sent_twilio(actions), sent_openai(actions)
    assert to_twilio == [{"event": "clear", "streamSid": STREAM_SID}]
    assert [e["type"] for e in to_openai] == ["response.cancel", "conversation.item.truncate"]
    assert to_openai[1] == {
        "type": "conversation.item.truncate",
        "item_id": "item_1",
        "content_index": 0,
        "audio_end_ms": 200,
    }
    # Twilio echoes the dropped marks at once on clear: they must not count as heard.
    for name in marks[2:]:
        assert bridge.on_twilio_text(mark_msg(name)) == []
    # Audio of the cancelled response still in flight is never played.
    late = bridge.on_openai_text(
        openai(
            "response.output_audio.delta",
            response_id="resp_1",
            item_id="item_1",
            output_index=0,
            content_index=0,
            delta=audio_b64(100),
        )
    )
    assert late == []
    (turn,) = of_type(response_done(bridge, "resp_1", status="cancelled"), SaveTurn)
    assert turn.speaker == "agent"
    assert turn.interrupted
    assert turn.text == "one two three four"  # 200 of 500 ms heard


def test_barge_in_uses_marks_not_wall_clock_and_is_zero_when_nothing_played(bridge):
    speak(bridge, "resp_1", "item_1", [100, 100], "Hi")
    actions = bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=0, item_id="i")
    )
    (truncate,) = [e for e in sent_openai(actions) if e["type"] == "conversation.item.truncate"]
    assert truncate["audio_end_ms"] == 0


def test_speech_while_agent_silent_does_not_clear_or_cancel(bridge):
    speak(bridge, "resp_1", "item_1", [100], "Hi")
    (mark,) = [m for m in bridge.pending_marks]
    response_done(bridge, "resp_1")
    bridge.on_twilio_text(mark_msg(mark))
    actions = bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=500, item_id="i")
    )
    assert actions == []


def test_barge_in_during_model_latency_only_cancels(bridge):
    bridge.on_openai_text(openai("response.created", response={"id": "resp_2"}))
    actions = bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=500, item_id="i")
    )
    assert sent_twilio(actions) == []
    assert sent_openai(actions) == [{"type": "response.cancel"}]


def test_no_barge_in_when_the_agent_does_not_allow_interruptions():
    b = CallBridge(CALL_SID, agent_config(interrupt_response=False), stream_token=TOKEN)
    b.on_twilio_text(start_msg())
    speak(b, "resp_1", "item_1", [100], "Hi")
    assert (
        b.on_openai_text(openai("input_audio_buffer.speech_started", audio_start_ms=1, item_id="i"))
        == []
    )


def test_agent_turn_is_saved_once_generated_and_played(bridge):
    speak(bridge, "resp_1", "item_1", [100], "Hello")
    bridge.on_openai_text(
        openai(
            "response.output_audio_transcript.done",
            response_id="resp_1",
            item_id="item_1",
            output_index=0,
            content_index=0,
            transcript="Hello, front desk.",
        )
    )
    assert of_type(response_done(bridge, "resp_1"), SaveTurn) == []  # still playing
    (mark,) = list(bridge.pending_marks)
    (turn,) = of_type(bridge.on_twilio_text(mark_msg(mark)), SaveTurn)
    assert turn == SaveTurn("agent", "Hello, front desk.", 0, False, "item_1")


def test_caller_turn_starts_where_speech_started():
    b = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    b.on_twilio_text(start_msg())
    b.on_openai_text(openai("input_audio_buffer.speech_started", audio_start_ms=1234, item_id="u1"))
    (turn,) = b.on_openai_text(
        openai(
            "conversation.item.input_audio_transcription.completed",
            item_id="u1",
            content_index=0,
            transcript="I need help",
        )
    )
    assert turn == SaveTurn("caller", "I need help", 1234, item_id="u1")


def test_usage_is_summed_over_responses(bridge):
    usage = {
        "total_tokens": 30,
        "input_tokens": 10,
        "output_tokens": 20,
        "input_token_details": {"text_tokens": 4, "audio_tokens": 6, "cached_tokens": 2},
        "output_token_details": {"text_tokens": 5, "audio_tokens": 15},
    }
    response_done(bridge, "r1", usage=usage)
    response_done(bridge, "r2", usage=usage)
    assert bridge.usage == {
        "input_tokens": 20,
        "output_tokens": 40,
        "total_tokens": 60,
        "input_text_tokens": 8,
        "input_audio_tokens": 12,
        "cached_tokens": 4,
        "output_text_tokens": 10,
        "output_audio_tokens": 30,
    }


def function_call(bridge, response_id, call_id, name, arguments="{}"):
    bridge.on_openai_text(openai("response.created", response={"id": response_id}))
    return bridge.on_openai_text(
        openai(
            "response.function_call_arguments.done",
            response_id=response_id,
            item_id="fc_" + call_id,
            output_index=0,
            call_id=call_id,
            name=name,
            arguments=arguments,
        )
    )


def test_http_tool_result_goes_back_and_the_next_response_waits_for_response_done(bridge):
    actions = function_call(bridge, "r1", "call_1", "lookup", '{"order": 7}')
    assert of_type(actions, RunTool) == [
        RunTool("call_1", "lookup", '{"order": 7}', "http://t/lookup")
    ]
    assert of_type(actions, SaveTurn)[0].speaker == "tool"
    result = sent_openai(bridge.on_tool_result("call_1", '{"status": "shipped"}'))
    assert result == [
        {
            "type": "conversation.item.create",
            "item": {
                "type": "function_call_output",
                "call_id": "call_1",
                "output": '{"status": "shipped"}',
            },
        }
    ]
    assert sent_openai(response_done(bridge, "r1")) == [{"type": "response.create"}]
    assert bridge.on_tool_result("call_1", "again") == []  # answered once only


def test_response_create_follows_result_when_the_tool_is_slower_than_response_done(bridge):
    function_call(bridge, "r1", "call_1", "lookup")
    assert sent_openai(response_done(bridge, "r1")) == []
    assert [e["type"] for e in sent_openai(bridge.on_tool_result("call_1", "{}"))] == [
        "conversation.item.create",
        "response.create",
    ]


def test_unknown_tool_gets_an_error_output(bridge):
    actions = function_call(bridge, "r1", "call_1", "nope")
    (output,) = sent_openai(actions)
    assert "unknown tool" in output["item"]["output"]


def test_end_call_tool_hangs_up_after_the_goodbye_has_played(bridge):
    function_call(bridge, "r1", "call_1", "end_call")
    assert sent_openai(response_done(bridge, "r1")) == [{"type": "response.create"}]
    speak(bridge, "r2", "item_bye", [100], "Goodbye")
    assert of_type(response_done(bridge, "r2"), EndCall) == []  # goodbye still playing
    (mark,) = list(bridge.pending_marks)
    actions = bridge.on_twilio_text(mark_msg(mark))
    assert of_type(actions, EndCall) == [EndCall("agent_hangup")]
    assert of_type(actions, SaveTurn)[0].text == "Goodbye"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (
            {
                "type": "invalid_request_error",
                "code": "rate_limit_exceeded",
                "message": "slow down",
            },
            "rate_limit_exceeded",
        ),
        ({"type": "server_error", "code": None, "message": "boom"}, "server_error"),
    ],
)
def test_openai_errors_end_the_call_with_their_code(bridge, error, code):
    (end,) = bridge.on_openai_text(openai("error", error=error))
    assert end == EndCall("openai_error", code, error["message"])
    assert bridge.on_openai_text(openai("error", error=error)) == []  # one ending only


def test_cancel_race_error_is_not_a_fault(bridge):
    error = {"type": "invalid_request_error", "code": "response_cancel_not_active", "message": "x"}
    assert bridge.on_openai_text(openai("error", error=error)) == []
    assert not bridge.ended


def test_failed_response_ends_the_call(bridge):
    bridge.on_openai_text(openai("response.created", response={"id": "r1"}))
    actions = bridge.on_openai_text(
        openai(
            "response.done",
            response={
                "id": "r1",
                "status": "failed",
                "status_details": {
                    "type": "failed",
                    "error": {"type": "server_error", "code": "server_error", "message": "m"},
                },
            },
        )
    )
    assert of_type(actions, EndCall) == [EndCall("openai_error", "server_error", "m")]


@pytest.mark.parametrize(
    "raw", [b"{not json", b'{"no_type": 1}', openai("response.output_audio.delta")]
)
def test_malformed_openai_events_are_ignored(bridge, raw):
    assert bridge.on_openai_text(raw) == []
    assert bridge.malformed_openai == 1
    assert not bridge.ended


def test_stop_and_closes_give_their_completion_reasons(bridge):
    assert bridge.on_twilio_text(twilio("stop", stop={})) == [EndCall("caller_hangup")]
    assert bridge.on_twilio_text(twilio("stop", stop={})) == []  # duplicate stop
    other = CallBridge(CALL_SID, agent_config())
    assert other.on_twilio_closed()[0].reason == "normal"
    assert CallBridge(CALL_SID, agent_config()).on_openai_closed("x")[0].reason == (
        "openai_connection_failed"
    )


def test_finish_saves_what_the_caller_heard_of_an_unfinished_turn(bridge):
    speak(bridge, "resp_1", "item_1", [100, 100], "alpha beta gamma delta")
    bridge.on_twilio_text(mark_msg(next(iter(bridge.pending_marks))))
    bridge.on_twilio_text(twilio("stop", stop={}))
    (turn,) = bridge.finish()
    assert turn.interrupted
    assert turn.text == "alpha beta"


def test_dtmf_is_noted_in_the_conversation_and_the_transcript(bridge):
    actions = bridge.on_twilio_text(twilio("dtmf", dtmf={"track": "inbound_track", "digit": "5"}))
    (item,) = sent_openai(actions)
    assert item["item"]["content"][0]["text"] == "[caller pressed 5]"
    assert of_type(actions, SaveTurn)[0].text == "[caller pressed 5]"


def test_base64_length_and_transcript_cut_helpers():
    for n in range(0, 20):
        assert base64_audio_bytes(base64.b64encode(b"x" * n).decode()) == n
    assert cut_transcript("a b c d", 50, 100) == "a b"
    assert cut_transcript("a b c d", 150, 100) == "a b c d"
    assert cut_transcript("a b c d", 0, 0) == "a b c d"


def test_lost_openai_connection_reconnects_once_and_replays_the_conversation(bridge):
    bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=1000, item_id="u1")
    )
    bridge.on_openai_text(
        openai(
            "conversation.item.input_audio_transcription.completed",
            item_id="u1",
            content_index=0,
            transcript="Where is my order?",
        )
    )
    bridge.on_twilio_text(media_msg(audio_b64(20), 3000))
    speak(bridge, "r1", "item_1", [100], "It ships today")
    response_done(bridge, "r1")
    bridge.on_twilio_text(mark_msg(next(iter(bridge.pending_marks))))
    bridge.on_openai_text(openai("response.created", response={"id": "r2"}))

    assert bridge.on_openai_closed("reset") == [ReconnectOpenAI("connection_lost")]
    replay = sent_openai(bridge.on_openai_reconnected())
    assert replay[0]["type"] == "session.update"
    assert [e["item"]["role"] for e in replay[1:3]] == ["user", "assistant"]
    assert replay[1]["item"]["content"] == [{"type": "input_text", "text": "Where is my order?"}]
    assert replay[2]["item"]["content"] == [{"type": "output_text", "text": "It ships today"}]
    assert replay[3]["type"] == "response.create"
    # Audio still arriving from the dead session's response is never played.
    assert bridge.response_id is None and "r2" in bridge.cancelled_responses
    # A second loss ends the call.
    (end,) = bridge.on_openai_closed("reset again")
    assert end.reason == "openai_connection_failed"


def test_session_expiry_rolls_over_without_using_up_the_reconnect(bridge):
    error = {"type": "invalid_request_error", "code": "session_expired", "message": "60 minutes"}
    assert bridge.on_openai_text(openai("error", error=error)) == [
        ReconnectOpenAI("session_rollover")
    ]
    replay = sent_openai(bridge.on_openai_reconnected())
    assert [e["type"] for e in replay] == ["session.update"]  # quiet moment: nobody prompted
    assert bridge.on_openai_closed("x") == [ReconnectOpenAI("connection_lost")]


def test_rollover_waits_for_a_quiet_moment(bridge):
    speak(bridge, "r1", "item_1", [100], "Hi")
    assert not bridge.can_roll_over()
    response_done(bridge, "r1")
    assert not bridge.can_roll_over()  # still playing
    bridge.on_twilio_text(mark_msg(next(iter(bridge.pending_marks))))
    assert bridge.can_roll_over()
    assert bridge.roll_over() == [ReconnectOpenAI("session_rollover")]


def test_connection_lost_before_the_stream_started_ends_the_call():
    b = CallBridge(CALL_SID, agent_config())
    (end,) = b.on_openai_closed("refused")
    assert end.reason == "openai_connection_failed"


# --- Bad input and session changes found by the fault tests ------------------------------


def test_oversized_twilio_frame_is_dropped_unread(bridge):
    payload = "A" * MAX_TWILIO_MESSAGE_CHARS
    assert bridge.on_twilio_text(media_msg(payload, 20)) == []
    assert bridge.malformed_twilio == 1
    assert bridge.stream_ms == 0
    assert sent_openai(bridge.on_twilio_text(media_msg(audio_b64(20), 40)))


def test_mark_with_a_name_that_is_not_a_string_is_dropped(bridge):
    speak(bridge, "r1", "item_1", [100], "Hi")
    assert bridge.on_twilio_text(twilio("mark", mark={"name": ["1"]})) == []
    assert bridge.malformed_twilio == 1
    assert not bridge.ended and bridge.pending_marks


def test_start_with_parameters_that_are_not_an_object_is_a_token_mismatch():
    b = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    start = {"streamSid": STREAM_SID, "callSid": CALL_SID, "customParameters": ["token"]}
    (end,) = b.on_twilio_text(twilio("start", start=start))
    assert (end.reason, end.error_code) == ("server_error", "stream_token_mismatch")


def test_openai_event_with_a_field_of_the_wrong_type_is_ignored(bridge):
    assert bridge.on_openai_text(openai("error", error="rate limited")) == []
    assert (
        bridge.on_openai_text(openai("response.done", response={"id": "r", "usage": "n/a"})) == []
    )
    assert bridge.malformed_openai == 2
    assert not bridge.ended


def test_a_stream_that_never_starts_ends_the_call():
    b = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    b.on_twilio_text(twilio("connected", protocol="Call", version="1.0.0"))
    (end,) = b.on_start_timeout()
    assert (end.reason, end.error_code) == ("server_error", "stream_not_started")


def test_start_timeout_after_start_changes_nothing(bridge):
    assert bridge.on_start_timeout() == []
    assert not bridge.ended


def test_rollover_waits_while_the_caller_is_speaking(bridge):
    assert bridge.can_roll_over()
    bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    )
    assert not bridge.can_roll_over()
    bridge.on_openai_text(
        openai("input_audio_buffer.speech_stopped", audio_end_ms=900, item_id="u1")
    )
    assert not bridge.can_roll_over()  # the answer to that turn is still to come
    bridge.on_openai_text(openai("response.created", response={"id": "r1"}))
    response_done(bridge, "r1")
    assert bridge.can_roll_over()


def test_expiry_in_the_middle_of_an_answer_asks_the_new_session_to_answer_again(bridge):
    speak(bridge, "r1", "item_1", [100], "We open at")
    error = {"type": "invalid_request_error", "code": "session_expired", "message": "60 minutes"}
    assert bridge.on_openai_text(openai("error", error=error)) == [
        ReconnectOpenAI("session_rollover")
    ]
    replay = sent_openai(bridge.on_openai_reconnected())
    assert [e["type"] for e in replay] == ["session.update", "response.create"]
    assert replay[-1]["response"]["instructions"] == RESUME_INSTRUCTIONS


def test_caller_turns_after_a_new_session_stay_on_the_stream_clock(bridge):
    bridge.on_twilio_text(media_msg(audio_b64(20), 60_000))
    bridge.roll_over()
    bridge.on_openai_reconnected()
    # The new session counts its input audio from zero.
    bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=500, item_id="u2")
    )
    (turn,) = bridge.on_openai_text(
        openai(
            "conversation.item.input_audio_transcription.completed",
            item_id="u2",
            content_index=0,
            transcript="Still there?",
        )
    )
    assert turn.started_ms == 60_020 + 500
