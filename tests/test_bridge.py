"""The call bridge as pure logic: events in, actions out, no sockets."""

import base64

import orjson
import pytest

from calls.bridge import (
    GOODBYE_INSTRUCTIONS,
    MAX_STREAM_MS,
    MAX_TWILIO_MESSAGE_CHARS,
    NOT_TRANSCRIBED,
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


@pytest.mark.parametrize("timestamp", ["-20", str(MAX_STREAM_MS + 1), "9" * 30])
def test_a_media_timestamp_out_of_range_is_dropped_and_the_clock_kept(bridge, timestamp):
    bridge.on_twilio_text(media_msg(audio_b64(20), 1000))
    raw = twilio("media", media={"track": "inbound", "timestamp": timestamp, "payload": "AAAA"})
    assert bridge.on_twilio_text(raw) == []
    assert bridge.malformed_twilio == 1
    assert bridge.stream_ms == 1020
    assert not bridge.ended


def test_a_media_timestamp_from_the_past_does_not_turn_the_clock_back(bridge):
    bridge.on_twilio_text(media_msg(audio_b64(20), 1000))
    bridge.on_twilio_text(media_msg(audio_b64(20), 0))
    assert bridge.stream_ms == 1020


def test_a_speech_start_far_off_the_clock_is_kept_in_range(bridge):
    bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=10**15, item_id="u1")
    )
    (turn,) = bridge.on_openai_text(
        openai(
            "conversation.item.input_audio_transcription.completed",
            item_id="u1",
            content_index=0,
            transcript="Hi.",
        )
    )
    assert 0 <= turn.started_ms <= MAX_STREAM_MS


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
    # Our own event id, so an error about this truncate is recognised as harmless.
    assert to_openai[1].pop("event_id").startswith("va_truncate_")
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
    "error",
    [
        {"type": "invalid_request_error", "code": "rate_limit_exceeded", "message": "slow down"},
        {"type": "server_error", "code": None, "message": "boom"},
        {"type": "invalid_request_error", "code": "unknown_parameter", "message": "x"},
        {"type": "something_new", "message": "a type nobody has seen"},
    ],
    ids=["rate-limit", "null-code-server-error", "bad-parameter", "unknown-type"],
)
def test_recoverable_openai_errors_are_counted_and_the_call_goes_on(bridge, error):
    assert bridge.on_openai_text(openai("error", error=error)) == []
    assert not bridge.ended
    assert bridge.openai_errors == 1
    assert bridge.last_openai_error == (error.get("code") or error["type"])


@pytest.mark.parametrize(
    "code", ["response_cancel_not_active", "conversation_already_has_active_response"]
)
def test_races_with_server_vad_are_not_faults(bridge, code):
    error = {"type": "invalid_request_error", "code": code, "message": "x"}
    assert bridge.on_openai_text(openai("error", error=error)) == []
    assert not bridge.ended
    assert bridge.openai_errors == 0


def test_an_error_about_our_truncate_is_benign(bridge):
    speak(bridge, "resp_1", "item_1", [100], "Hi")
    actions = bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    )
    (truncate,) = [e for e in sent_openai(actions) if e["type"] == "conversation.item.truncate"]
    error = {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "Audio content of 0ms is already shorter than 10ms",
        "event_id": truncate["event_id"],
    }
    assert bridge.on_openai_text(openai("error", error=error)) == []
    assert not bridge.ended


@pytest.mark.parametrize(
    "error",
    [
        {"type": "invalid_request_error", "code": "invalid_api_key", "message": "bad key"},
        {"type": "insufficient_quota", "code": "insufficient_quota", "message": "no credit"},
        {"type": "authentication_error", "code": None, "message": "who are you"},
    ],
    ids=["api-key", "quota", "null-code-authentication"],
)
def test_fatal_openai_errors_end_the_call_with_their_code(bridge, error):
    (end,) = bridge.on_openai_text(openai("error", error=error))
    assert end == EndCall("openai_error", error["code"] or error["type"], error["message"])
    assert bridge.on_openai_text(openai("error", error=error)) == []  # one ending only


def test_a_refused_session_update_is_fatal():
    bridge = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    (update,) = sent_openai(bridge.on_openai_connected())
    error = {
        "type": "invalid_request_error",
        "code": "invalid_value",
        "message": "Invalid value: 'verse2'",
        "param": "session.audio.output.voice",
        "event_id": update["event_id"],
    }
    (end,) = bridge.on_openai_text(openai("error", error=error))
    assert (end.reason, end.error_code) == ("openai_error", "invalid_value")


def failed_response(bridge, response_id, error):
    bridge.on_openai_text(openai("response.created", response={"id": response_id}))
    return bridge.on_openai_text(
        openai(
            "response.done",
            response={
                "id": response_id,
                "status": "failed",
                "status_details": {"type": "failed", "error": error},
            },
        )
    )


def test_a_failed_response_is_retried_once_then_ends_the_call(bridge):
    error = {"type": "server_error", "code": "server_error"}
    retry = failed_response(bridge, "r1", error)
    assert sent_openai(retry) == [
        {"type": "response.create", "response": {"instructions": "Be brief."}}
    ]
    assert not bridge.ended
    (end,) = of_type(failed_response(bridge, "r2", error), EndCall)
    assert (end.reason, end.error_code) == ("openai_error", "server_error")
    assert end.error_message == "response failed: type=server_error code=server_error"
    assert (bridge.openai_errors, bridge.last_openai_error) == (2, "server_error")


def test_a_completed_response_resets_the_failure_count(bridge):
    error = {"type": "server_error", "code": None}
    failed_response(bridge, "r1", error)
    speak(bridge, "r2", "item_2", [100], "Sorry, say again?")
    response_done(bridge, "r2")
    assert of_type(failed_response(bridge, "r3", error), EndCall) == []


def test_a_response_failed_for_quota_ends_at_once(bridge):
    error = {"type": "insufficient_quota", "code": "insufficient_quota"}
    (end,) = of_type(failed_response(bridge, "r1", error), EndCall)
    assert end.error_code == "insufficient_quota"


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


def dtmf(bridge, digit: str):
    return bridge.on_twilio_text(twilio("dtmf", dtmf={"track": "inbound_track", "digit": digit}))


def test_dtmf_is_noted_in_the_conversation_and_answered(bridge):
    actions = dtmf(bridge, "5")
    item, create = sent_openai(actions)
    assert item["item"]["content"][0]["text"] == "[caller pressed 5]"
    assert create == {"type": "response.create"}
    assert of_type(actions, SaveTurn)[0].text == "[caller pressed 5]"


def test_dtmf_only_shows_in_the_transcript_when_the_agent_says_so():
    quiet = CallBridge(CALL_SID, agent_config(dtmf_to_model=False), stream_token=TOKEN)
    quiet.on_twilio_text(twilio("connected", protocol="Call", version="1.0.0"))
    quiet.on_twilio_text(start_msg())

    actions = dtmf(quiet, "7")

    assert sent_openai(actions) == []
    assert [t.text for t in of_type(actions, SaveTurn)] == ["[caller pressed 7]"]


def test_dtmf_waits_for_a_response_or_a_caller_turn_already_under_way(bridge):
    bridge.on_openai_text(openai("response.created", response={"id": "r1"}))
    assert [e["type"] for e in sent_openai(dtmf(bridge, "1"))] == ["conversation.item.create"]
    response_done(bridge, "r1")
    bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=0, item_id="u")
    )
    assert [e["type"] for e in sent_openai(dtmf(bridge, "2"))] == ["conversation.item.create"]


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
    # Per-response instructions replace the session's: the agent's own come first.
    assert replay[-1]["response"]["instructions"] == f"Be brief.\n\n{RESUME_INSTRUCTIONS}"


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


# --- Tools while the caller talks ---------------------------------------------------------
def output_added(bridge, call_id):
    item = {"id": "out_" + call_id, "type": "function_call_output", "call_id": call_id}
    return bridge.on_openai_text(openai("conversation.item.added", item=item))


def caller_starts(bridge, item_id="u1"):
    return bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=0, item_id=item_id)
    )


def test_a_tool_result_while_the_caller_talks_is_left_to_their_turns_response(bridge):
    function_call(bridge, "r1", "call_1", "lookup")
    response_done(bridge, "r1")
    caller_starts(bridge)  # "uh-huh" during the slow tool
    result = sent_openai(bridge.on_tool_result("call_1", '{"open": true}'))
    assert [e["type"] for e in result] == ["conversation.item.create"]  # no response.create
    output_added(bridge, "call_1")
    # Server VAD answers the caller's turn, with the output already in the conversation.
    bridge.on_openai_text(openai("response.created", response={"id": "r2"}))
    assert sent_openai(response_done(bridge, "r2")) == []
    assert bridge.can_roll_over()


def test_an_output_that_reached_the_server_after_its_response_began_gets_its_own(bridge):
    function_call(bridge, "r1", "call_1", "lookup")
    response_done(bridge, "r1")
    caller_starts(bridge)
    bridge.on_tool_result("call_1", "{}")
    # The caller's turn ended a moment before: server VAD created its response first.
    bridge.on_openai_text(openai("response.created", response={"id": "r2"}))
    output_added(bridge, "call_1")
    assert sent_openai(response_done(bridge, "r2")) == [{"type": "response.create"}]


def test_a_tool_result_left_to_a_turn_whose_response_errored_gets_its_own(bridge):
    """Found by the tool-heavy bench: server VAD committed the caller's "uh-huh" and an
    error came instead of its response; the tool's output must not wait for it forever."""
    function_call(bridge, "r1", "call_1", "lookup")
    response_done(bridge, "r1")
    caller_starts(bridge)
    bridge.on_openai_text(
        openai("input_audio_buffer.committed", item_id="u1", previous_item_id=None)
    )
    error = {"type": "server_error", "code": None, "message": "The server had an error."}
    assert bridge.on_openai_text(openai("error", error=error)) == []  # the tool still runs
    actions = bridge.on_tool_result("call_1", "{}")
    assert [e["type"] for e in sent_openai(actions)] == [
        "conversation.item.create",
        "response.create",
    ]
    assert not bridge.ended


def test_an_error_while_the_caller_is_still_talking_leaves_their_turn_to_server_vad(bridge):
    function_call(bridge, "r1", "call_1", "lookup")
    response_done(bridge, "r1")
    caller_starts(bridge)  # not committed yet: server VAD will answer when they stop
    error = {"type": "invalid_request_error", "code": None, "message": "Something."}
    bridge.on_openai_text(openai("error", error=error))
    actions = bridge.on_tool_result("call_1", "{}")
    assert [e["type"] for e in sent_openai(actions)] == ["conversation.item.create"]


@pytest.mark.parametrize("offset_events", range(4))
def test_a_tool_result_around_the_end_of_a_caller_turn_never_ends_the_call(bridge, offset_events):
    """The result lands at any point of: speech started, speech stopped, response.created,
    response.done; the call goes on and the output is answered exactly once."""
    function_call(bridge, "r1", "call_1", "lookup")
    response_done(bridge, "r1")
    steps = [
        lambda: caller_starts(bridge),
        lambda: bridge.on_openai_text(
            openai("input_audio_buffer.speech_stopped", audio_end_ms=900, item_id="u1")
        ),
        lambda: bridge.on_openai_text(openai("response.created", response={"id": "r2"})),
        lambda: response_done(bridge, "r2"),
    ]
    creates = 0
    for index, step in enumerate(steps):
        if index == offset_events:
            actions = bridge.on_tool_result("call_1", "{}")
            output_added(bridge, "call_1")
            creates += sum(e["type"] == "response.create" for e in sent_openai(actions))
        creates += sum(e["type"] == "response.create" for e in sent_openai(step()))
    assert not bridge.ended
    # Before the caller spoke: answered at once. During their turn or before r2 was
    # created: r2 covers it. After r2 was created: one response.create once r2 is done.
    assert creates == {0: 1, 1: 0, 2: 0, 3: 1}[offset_events]
    assert bridge.unanswered_outputs == {}


def test_the_tool_name_and_call_id_are_taken_from_the_output_item_too(bridge):
    bridge.on_openai_text(openai("response.created", response={"id": "r1"}))
    item = {
        "id": "fc_1",
        "type": "function_call",
        "status": "completed",
        "name": "lookup",
        "call_id": "call_9",
        "arguments": '{"q": 1}',
    }
    actions = bridge.on_openai_text(
        openai("response.output_item.done", response_id="r1", output_index=0, item=item)
    )
    assert of_type(actions, RunTool) == [RunTool("call_9", "lookup", '{"q": 1}', "http://t/lookup")]
    # The arguments event for the same call runs nothing twice.
    again = bridge.on_openai_text(
        openai(
            "response.function_call_arguments.done",
            response_id="r1",
            item_id="fc_1",
            output_index=0,
            call_id="call_9",
            name="lookup",
            arguments='{"q": 1}',
        )
    )
    assert again == []


def test_a_name_missing_from_the_arguments_event_comes_from_the_added_item(bridge):
    bridge.on_openai_text(openai("response.created", response={"id": "r1"}))
    added = {"id": "fc_2", "type": "function_call", "name": "lookup", "call_id": "call_2"}
    bridge.on_openai_text(
        openai("response.output_item.added", response_id="r1", output_index=0, item=added)
    )
    actions = bridge.on_openai_text(
        openai(
            "response.function_call_arguments.done",
            response_id="r1",
            item_id="fc_2",
            output_index=0,
            call_id="call_2",
            arguments="{}",
        )
    )
    assert [a.name for a in of_type(actions, RunTool)] == ["lookup"]


# --- Sessions, formats and transcripts ----------------------------------------------------
def session_updated(bridge, input_type="audio/pcmu", output_type="audio/pcmu"):
    session = {
        "audio": {
            "input": {"format": {"type": input_type}},
            "output": {"format": {"type": output_type}},
        }
    }
    return bridge.on_openai_text(openai("session.updated", session=session))


def test_session_updated_with_phone_formats_is_fine_and_checked_once(bridge):
    assert session_updated(bridge) == []
    assert session_updated(bridge, output_type="audio/pcm") == []  # only the first counts


def test_session_updated_with_other_formats_ends_the_call(bridge):
    (end,) = session_updated(bridge, output_type="audio/pcm")
    assert (end.reason, end.error_code) == ("openai_error", "audio_format_mismatch")
    assert "audio/pcm out" in end.error_message


def test_barge_in_after_a_reconnect_clears_old_audio_but_truncates_only_new_items(bridge):
    speak(bridge, "r1", "old_item", [100, 100], "From the old session")
    bridge.on_openai_closed("lost")
    bridge.on_openai_reconnected()
    actions = caller_starts(bridge)
    assert sent_twilio(actions) == [{"event": "clear", "streamSid": STREAM_SID}]
    assert [e for e in sent_openai(actions) if e["type"] == "conversation.item.truncate"] == []
    speak(bridge, "r2", "new_item", [100, 100], "From the new session")
    truncates = [
        e
        for e in sent_openai(caller_starts(bridge, "u2"))
        if e["type"] == "conversation.item.truncate"
    ]
    assert [t["item_id"] for t in truncates] == ["new_item"]


def commit(bridge, item_id, audio_start_ms=0):
    bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=audio_start_ms, item_id=item_id)
    )
    return bridge.on_openai_text(
        openai("input_audio_buffer.committed", previous_item_id=None, item_id=item_id)
    )


def transcript(bridge, item_id, text):
    return bridge.on_openai_text(
        openai(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=text,
        )
    )


def test_a_fatal_error_waits_for_the_callers_last_transcript(bridge):
    commit(bridge, "u1", audio_start_ms=1200)
    error = {"type": "insufficient_quota", "code": "insufficient_quota", "message": "m"}
    (end,) = bridge.on_openai_text(openai("error", error=error))
    assert end.wait_for_transcripts
    (turn,) = transcript(bridge, "u1", "Can I book for Friday?")
    assert (turn.speaker, turn.text, turn.started_ms) == ("caller", "Can I book for Friday?", 1200)
    assert bridge.awaiting_transcripts == {}
    assert bridge.on_openai_text(openai("response.created", response={"id": "r9"})) == []


def test_a_transcript_that_never_comes_is_stored_as_not_transcribed(bridge):
    commit(bridge, "u1", audio_start_ms=300)
    bridge.on_openai_text(
        openai("error", error={"type": "invalid_request_error", "code": "invalid_api_key"})
    )
    (turn,) = bridge.finish()
    assert (turn.speaker, turn.text, turn.started_ms) == ("caller", NOT_TRANSCRIBED, 300)


def test_a_lost_connection_stores_pending_caller_turns_as_not_transcribed(bridge):
    commit(bridge, "u1")
    actions = bridge.on_openai_closed("lost")
    assert [(t.speaker, t.text) for t in of_type(actions, SaveTurn)] == [
        ("caller", NOT_TRANSCRIBED)
    ]
    assert of_type(actions, ReconnectOpenAI)


def test_the_replay_keeps_the_answer_being_heard_cut_to_what_was_heard(bridge):
    bridge.on_twilio_text(media_msg(audio_b64(20), 0))
    speak(bridge, "r1", "item_1", [100] * 4, "one two three four five six seven eight")
    first = next(iter(bridge.pending_marks))
    bridge.on_twilio_text(mark_msg(first))  # 100 ms heard at stream time 20 ms
    bridge.on_twilio_text(media_msg(audio_b64(20), 100))  # 100 ms later: about 200 ms heard
    bridge.on_openai_closed("lost")
    replay = sent_openai(bridge.on_openai_reconnected())
    items = [e["item"] for e in replay if e["type"] == "conversation.item.create"]
    assert [(i["role"], i["content"][0]["text"]) for i in items] == [
        ("assistant", "one two three four")
    ]


def test_the_playing_position_runs_on_from_the_last_mark_up_to_the_next(bridge):
    bridge.on_twilio_text(media_msg(audio_b64(20), 0))  # stream time 20 ms
    speak(bridge, "r1", "item_1", [200, 200], "a b c d")
    assert bridge.playing_position() == ("item_1", 0)
    bridge.on_twilio_text(media_msg(audio_b64(20), 60))  # 80 ms
    assert bridge.playing_position() == ("item_1", 60)
    bridge.on_twilio_text(media_msg(audio_b64(20), 400))  # far past the first mark's 200 ms
    assert bridge.playing_position() == ("item_1", 200)  # not past an unechoed mark
    bridge.on_twilio_text(mark_msg(next(iter(bridge.pending_marks))))
    bridge.on_twilio_text(media_msg(audio_b64(20), 430))
    assert bridge.playing_position() == ("item_1", 230)


# --- Idle callers and the time limit ------------------------------------------------------
def test_the_silence_committed_by_an_idle_timeout_is_not_a_caller_turn(bridge):
    bridge.on_openai_text(
        openai(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=0,
            audio_end_ms=5000,
            item_id="t1",
        )
    )
    bridge.on_openai_text(
        openai("input_audio_buffer.committed", previous_item_id=None, item_id="t1")
    )
    assert transcript(bridge, "t1", "") == []
    assert bridge.awaiting_transcripts == {}


def test_the_time_limit_waits_for_the_answer_then_says_goodbye_and_hangs_up(bridge):
    speak(bridge, "r1", "item_1", [100], "Our hours are")
    assert bridge.on_max_duration() == []  # the current answer finishes first
    (goodbye,) = sent_openai(response_done(bridge, "r1"))
    assert goodbye["type"] == "response.create"
    assert goodbye["response"]["tool_choice"] == "none"
    assert goodbye["response"]["instructions"] == f"Be brief.\n\n{GOODBYE_INSTRUCTIONS}"
    for mark in list(bridge.pending_marks):
        bridge.on_twilio_text(mark_msg(mark))
    speak(bridge, "r2", "item_bye", [100], "Goodbye!")
    response_done(bridge, "r2")
    (mark,) = list(bridge.pending_marks)
    assert of_type(bridge.on_twilio_text(mark_msg(mark)), EndCall) == [EndCall("time_limit")]


def test_the_time_limit_in_a_quiet_moment_says_goodbye_at_once(bridge):
    (goodbye,) = sent_openai(bridge.on_max_duration())
    assert goodbye["type"] == "response.create"
    assert bridge.on_max_duration() == []  # once
    assert bridge.on_goodbye_overdue() == [EndCall("time_limit")]


# --- Tool arguments checked against the schema ------------------------------------------
ORDER_SCHEMA = {
    "type": "object",
    "properties": {"order": {"type": "integer", "minimum": 1}},
    "required": ["order"],
}


def bridge_with_schema() -> CallBridge:
    lookup = ToolConfig(
        "lookup",
        "http",
        {"type": "function", "name": "lookup", "parameters": ORDER_SCHEMA},
        "http://t/lookup",
    )
    b = CallBridge(CALL_SID, agent_config(tools=(lookup,)), stream_token=TOKEN)
    b.on_twilio_text(start_msg())
    return b


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        ('{"order": "seven"}', "order: 'seven' is not of type 'integer'"),
        ("{}", "arguments: 'order' is a required property"),
        ('{"order": 0}', "order: 0 is less than the minimum of 1"),
        ('{"order": ', "arguments are not valid JSON"),
    ],
)
def test_arguments_that_do_not_fit_the_schema_get_an_error_output_not_a_request(arguments, problem):
    b = bridge_with_schema()
    actions = function_call(b, "r1", "call_1", "lookup", arguments)
    assert of_type(actions, RunTool) == []
    (output,) = [e for e in sent_openai(actions) if e["type"] == "conversation.item.create"]
    assert orjson.loads(output["item"]["output"]) == {
        "error": f"invalid arguments, not run: {problem}"
    }
    # The model hears about it once its response is done, and can call the tool again.
    assert {"type": "response.create"} in sent_openai(response_done(b, "r1"))


def test_arguments_that_fit_the_schema_run_the_tool():
    b = bridge_with_schema()
    actions = function_call(b, "r1", "call_1", "lookup", '{"order": 7}')
    assert of_type(actions, RunTool) == [
        RunTool("call_1", "lookup", '{"order": 7}', "http://t/lookup")
    ]
