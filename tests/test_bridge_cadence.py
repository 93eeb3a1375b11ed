"""The bridge's hot-path cadence: marks after every `mark_interval_ms` of agent audio (and
after each item's last chunk), and caller audio batched into `inbound_window_ms` per
append. Truncation with sparse marks is also proved in test_bridge_properties.py."""

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from calls.bridge import CallBridge, EndCall, ReconnectOpenAI, SaveTurn
from tests.test_bridge import (
    CALL_SID,
    TOKEN,
    agent_config,
    audio_b64,
    mark_msg,
    media_msg,
    of_type,
    openai,
    response_done,
    sent_openai,
    sent_twilio,
    speak,
    start_msg,
    twilio,
)


def started_bridge(**cadence) -> CallBridge:
    bridge = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN, **cadence)
    bridge.on_twilio_text(start_msg())
    return bridge


def audio_done(bridge: CallBridge, response_id: str, item_id: str):
    return bridge.on_openai_text(
        openai(
            "response.output_audio.done",
            response_id=response_id,
            item_id=item_id,
            output_index=0,
            content_index=0,
        )
    )


def events(actions) -> list[str]:
    return [m["event"] for m in sent_twilio(actions)]


# --- Marks ----------------------------------------------------------------------------
def test_a_mark_follows_each_interval_of_agent_audio_and_the_items_last_chunk():
    bridge = started_bridge(mark_interval_ms=100)
    actions = speak(bridge, "r1", "item_1", [40] * 5, "hello there")
    # 40, 80, 120 ms: a mark; 160, 200 ms: not yet.
    assert events(actions) == ["media", "media", "media", "mark", "media", "media"]
    assert events(audio_done(bridge, "r1", "item_1")) == ["mark"]
    assert events(response_done(bridge, "r1")) == []  # the last chunk has its mark already


def test_an_echo_counts_all_the_audio_before_its_mark_as_heard():
    bridge = started_bridge(mark_interval_ms=100)
    actions = speak(bridge, "r1", "item_1", [40] * 5, "hello there")
    (first,) = [m["mark"]["name"] for m in sent_twilio(actions) if m["event"] == "mark"]
    bridge.on_twilio_text(mark_msg(first))
    assert bridge.items["item_1"].heard_ms == 120
    assert len(bridge.queued) == 2  # 160 and 200 ms: not known played yet


def test_the_agent_turn_is_saved_when_the_mark_after_its_last_chunk_comes_back():
    bridge = started_bridge(mark_interval_ms=100)
    actions = speak(bridge, "r1", "item_1", [40] * 5, "hello there")
    actions += audio_done(bridge, "r1", "item_1")
    actions += response_done(bridge, "r1")
    first, last = [m["mark"]["name"] for m in sent_twilio(actions) if m["event"] == "mark"]
    assert of_type(bridge.on_twilio_text(mark_msg(first)), SaveTurn) == []
    (turn,) = of_type(bridge.on_twilio_text(mark_msg(last)), SaveTurn)
    assert (turn.text, turn.interrupted) == ("hello there", False)
    assert bridge.items["item_1"].heard_ms == 200


def test_barge_in_between_sparse_marks_cuts_where_the_schedule_says():
    bridge = started_bridge(mark_interval_ms=1000)
    bridge.on_twilio_text(media_msg(audio_b64(20), 0))  # stream clock 20 ms
    speak(bridge, "r1", "item_1", [100] * 6, "one two three four five six")
    for t in range(20, 360, 20):  # the caller's frames up to stream time 360 ms
        bridge.on_twilio_text(media_msg(audio_b64(20), t))
    actions = bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=300, item_id="u1")
    )
    (truncate,) = [e for e in sent_openai(actions) if e["type"] == "conversation.item.truncate"]
    assert truncate["audio_end_ms"] == 340  # played from 20 ms, no mark echoed yet
    assert events(actions) == ["clear"]
    assert not bridge.queued and not bridge.pending_marks


def test_the_goodbye_hangs_up_only_once_its_last_mark_has_come_back():
    bridge = started_bridge(mark_interval_ms=1000)
    bridge.hangup_after_playback = True  # as the end_call tool leaves it
    actions = speak(bridge, "r1", "item_1", [100] * 3, "goodbye")
    actions += audio_done(bridge, "r1", "item_1")
    actions += response_done(bridge, "r1")
    assert of_type(actions, EndCall) == []  # generated, not yet heard
    (mark,) = [m["mark"]["name"] for m in sent_twilio(actions) if m["event"] == "mark"]
    assert of_type(bridge.on_twilio_text(mark_msg(mark)), EndCall) == [EndCall("agent_hangup")]


# --- Caller audio batched ---------------------------------------------------------------
def appended_audio(actions) -> list[bytes]:
    return [
        base64.b64decode(e["audio"])
        for e in sent_openai(actions)
        if e["type"] == "input_audio_buffer.append"
    ]


def test_without_a_window_each_frame_is_forwarded_as_it_came():
    bridge = started_bridge()
    payload = audio_b64(20, 0x12)
    actions = bridge.on_twilio_text(media_msg(payload, 0))
    assert sent_openai(actions) == [{"type": "input_audio_buffer.append", "audio": payload}]


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([20, 40, 60, 100, 250]), st.integers(1, 40))
def test_batched_caller_audio_reaches_openai_whole_and_in_order(window_ms, frames):
    bridge = started_bridge(inbound_window_ms=window_ms)
    sent, spoken = [], b""
    for k in range(frames):
        frame = bytes([k % 256]) * 160  # 20 ms of µ-law, each frame different
        spoken += frame
        sent += appended_audio(
            bridge.on_twilio_text(media_msg(base64.b64encode(frame).decode(), 20 * k))
        )
    frames_per_append = -(-window_ms // 20)  # the first whole frame that fills the window
    assert all(len(chunk) == frames_per_append * 160 for chunk in sent)
    sent += appended_audio(bridge.on_twilio_text(twilio("stop", stop={})))  # the rest
    assert b"".join(sent) == spoken


def test_a_bad_payload_is_refused_before_it_is_held_back():
    bridge = started_bridge(inbound_window_ms=60)
    bridge.on_twilio_text(media_msg(audio_b64(20), 0))
    assert bridge.on_twilio_text(media_msg("not base64!!", 20)) == []
    assert bridge.malformed_twilio == 1 and bridge.inbound_ms == 20


def test_after_a_reconnect_speech_is_timed_from_the_audio_the_new_session_gets_first():
    bridge = started_bridge(inbound_window_ms=100)
    for t in (0, 20, 40, 60, 80, 100, 120):  # 100 ms sent, 40 ms held back
        bridge.on_twilio_text(media_msg(audio_b64(20), t))
    assert of_type(bridge.on_openai_closed("lost"), ReconnectOpenAI)
    assert bridge.session_audio_start_ms == 100  # the held 40 ms go to the new session
    bridge.on_openai_text(
        openai("input_audio_buffer.speech_started", audio_start_ms=0, item_id="u1")
    )
    assert bridge.caller_started_ms["u1"] == 100
