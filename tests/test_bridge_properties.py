"""Random event sequences through the bridge: nothing escapes, invariants hold."""

import base64

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calls.bridge import (
    NOT_TRANSCRIBED,
    CallBridge,
    EndCall,
    SaveTurn,
    SendOpenAI,
    SendTwilio,
)
from tests.test_bridge import CALL_SID, STREAM_SID, TOKEN, agent_config, start_msg

RESPONSE_IDS = ["resp_a", "resp_b", "resp_c"]
ITEM_IDS = ["item_a", "item_b", "item_c"]


def _audio(ms: int) -> str:
    return base64.b64encode(b"\x55" * (8 * ms)).decode()


twilio_events = st.one_of(
    st.just(("twilio", start_msg())),
    st.builds(
        lambda ms, ts: (
            "twilio",
            orjson.dumps(
                {
                    "event": "media",
                    "streamSid": STREAM_SID,
                    "media": {"timestamp": str(ts), "payload": _audio(ms)},
                }
            ),
        ),
        st.sampled_from([0, 1, 20]),
        st.integers(0, 100_000),
    ),
    st.builds(lambda n: ("mark", n), st.integers(0, 30)),
    st.just(("twilio", orjson.dumps({"event": "stop", "streamSid": STREAM_SID}))),
    st.just(("dtmf", orjson.dumps({"event": "dtmf", "dtmf": {"digit": "1"}}))),
    st.binary(max_size=40).map(lambda b: ("twilio", b)),
    st.text(max_size=40).map(lambda t: ("twilio", t)),
)

openai_events = st.one_of(
    st.builds(
        lambda r: {"type": "response.created", "response": {"id": r}}, st.sampled_from(RESPONSE_IDS)
    ),
    st.builds(
        lambda r, i: {
            "type": "response.output_item.added",
            "response_id": r,
            "item": {"id": i, "type": "message"},
        },
        st.sampled_from(RESPONSE_IDS),
        st.sampled_from(ITEM_IDS),
    ),
    st.builds(
        lambda r, i, ms: {
            "type": "response.output_audio.delta",
            "response_id": r,
            "item_id": i,
            "delta": _audio(ms),
        },
        st.sampled_from(RESPONSE_IDS),
        st.sampled_from(ITEM_IDS),
        st.sampled_from([0, 1, 20, 100, 333]),
    ),
    st.builds(
        lambda r, i, t: {
            "type": "response.output_audio_transcript.delta",
            "response_id": r,
            "item_id": i,
            "delta": t,
        },
        st.sampled_from(RESPONSE_IDS),
        st.sampled_from(ITEM_IDS),
        st.text(max_size=10),
    ),
    st.builds(
        lambda s, i: {
            "type": "input_audio_buffer.speech_started",
            "audio_start_ms": s,
            "item_id": i,
        },
        st.integers(0, 10_000),
        st.sampled_from(["u1", "u2"]),
    ),
    st.builds(
        lambda i, t: {
            "type": "conversation.item.input_audio_transcription.completed",
            "item_id": i,
            "transcript": t,
        },
        st.sampled_from(["u1", "u2"]),
        st.text(max_size=10),
    ),
    st.builds(
        lambda r, s: {
            "type": "response.done",
            "response": {"id": r, "status": s, "usage": {"total_tokens": 3}},
        },
        st.sampled_from(RESPONSE_IDS),
        st.sampled_from(["completed", "cancelled", "incomplete"]),
    ),
    st.builds(
        lambda r, c, n: {
            "type": "response.function_call_arguments.done",
            "response_id": r,
            "call_id": c,
            "name": n,
            "arguments": "{}",
        },
        st.sampled_from(RESPONSE_IDS),
        st.sampled_from(["call_1", "call_2"]),
        st.sampled_from(["end_call", "lookup", "unknown"]),
    ),
    st.builds(
        lambda t, c, e: {
            "type": "error",
            "error": {"type": t, "code": c, "message": "m", "event_id": e},
        },
        st.sampled_from(["invalid_request_error", "server_error", "authentication_error"]),
        st.sampled_from(
            [
                "response_cancel_not_active",
                "conversation_already_has_active_response",
                "rate_limit_exceeded",
                "session_expired",
                "insufficient_quota",
                None,
            ]
        ),
        st.sampled_from([None, "va_truncate_1", "va_session_update_1"]),
    ),
    # A response that failed, with the error's type and code (no message there).
    st.builds(
        lambda r, c: {
            "type": "response.done",
            "response": {
                "id": r,
                "status": "failed",
                "status_details": {"type": "failed", "error": {"type": "server_error", "code": c}},
            },
        },
        st.sampled_from(RESPONSE_IDS),
        st.sampled_from(["server_error", None, "insufficient_quota"]),
    ),
    # Tool calls announced by their output item; outputs entering the conversation.
    st.builds(
        lambda r, c, n: {
            "type": "response.output_item.done",
            "response_id": r,
            "item": {
                "id": "fc_" + c,
                "type": "function_call",
                "status": "completed",
                "call_id": c,
                "name": n,
                "arguments": "{}",
            },
        },
        st.sampled_from(RESPONSE_IDS),
        st.sampled_from(["call_1", "call_2"]),
        st.sampled_from(["end_call", "lookup"]),
    ),
    st.builds(
        lambda c: {
            "type": "conversation.item.added",
            "item": {"id": "o_" + c, "type": "function_call_output", "call_id": c},
        },
        st.sampled_from(["call_1", "call_2"]),
    ),
    st.builds(
        lambda i: {"type": "input_audio_buffer.committed", "item_id": i},
        st.sampled_from(["u1", "u2", "t1"]),
    ),
    st.builds(
        lambda i: {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 0, "item_id": i},
        st.sampled_from(["u1", "u2"]),
    ),
    st.just(
        {
            "type": "input_audio_buffer.timeout_triggered",
            "audio_start_ms": 0,
            "audio_end_ms": 5000,
            "item_id": "t1",
        }
    ),
    st.builds(
        lambda f: {
            "type": "session.updated",
            "session": {
                "audio": {"input": {"format": {"type": f}}, "output": {"format": {"type": f}}}
            },
        },
        st.sampled_from(["audio/pcmu", "audio/pcmu", "audio/pcm"]),
    ),
    st.dictionaries(
        st.sampled_from(["type", "response", "item_id", "delta"]),
        st.none() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    ),
).map(lambda e: ("openai", orjson.dumps(e)))

tool_results = st.builds(lambda c: ("tool", c), st.sampled_from(["call_1", "call_2"]))
# The OpenAI socket drops, a new session is opened, or one rolls over at a quiet moment.
# The time limit passes, or its goodbye overruns.
session_changes = st.sampled_from(
    [
        ("closed", None),
        ("reconnected", None),
        ("rollover", None),
        ("time_limit", None),
        ("goodbye_overdue", None),
    ]
)
events = st.lists(
    st.one_of(twilio_events, openai_events, tool_results, session_changes), max_size=80
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_random_event_sequences_keep_the_invariants(sequence):
    bridge = CallBridge(CALL_SID, agent_config(), stream_token=TOKEN)
    generated_ms: dict[str, int] = {}
    marks_sent: list[str] = []
    ends = 0
    busy = False
    for source, payload in sequence:
        awaited_before = set(bridge.awaiting_transcripts) if bridge.draining else set()
        if source in ("twilio", "dtmf"):
            actions = bridge.on_twilio_text(payload)
        elif source == "mark":
            name = marks_sent[payload % len(marks_sent)] if marks_sent else str(payload)
            actions = bridge.on_twilio_text(
                orjson.dumps({"event": "mark", "streamSid": STREAM_SID, "mark": {"name": name}})
            )
        elif source == "tool":
            actions = bridge.on_tool_result(payload, "{}")
        elif source == "closed":
            actions = bridge.on_openai_closed("lost")
        elif source == "reconnected":
            actions = bridge.on_openai_reconnected() if not bridge.ended else []
        elif source == "rollover":
            actions = bridge.roll_over() if bridge.can_roll_over() else []
        elif source == "time_limit":
            actions = bridge.on_max_duration()
        elif source == "goodbye_overdue":
            actions = bridge.on_goodbye_overdue() if bridge.hangup_after_playback else []
        else:
            actions = bridge.on_openai_text(payload)
        busy_before = busy
        busy = bridge.response_id is not None or bridge.caller_turn_open

        if ends:
            # Nothing happens after the call ended, except the caller's last words: the
            # transcripts of turns committed before a fault ended it (drained, not lost).
            assert all(
                isinstance(a, SaveTurn) and a.speaker == "caller" and a.item_id in awaited_before
                for a in actions
            ), "nothing may happen after the call ended"
        for action in actions:
            if isinstance(action, EndCall):
                ends += 1
            elif isinstance(action, SendTwilio):
                msg = orjson.loads(action.text)
                assert msg["streamSid"] == STREAM_SID  # never before `start`
                if msg["event"] == "mark":
                    marks_sent.append(msg["mark"]["name"])
            elif isinstance(action, SendOpenAI):
                event = orjson.loads(action.text)
                if event["type"] == "conversation.item.truncate":
                    assert 0 <= event["audio_end_ms"] <= generated_ms.get(event["item_id"], 0)
                    # Only the current session knows the item.
                    assert bridge.items[event["item_id"]].session == bridge.session_number
                if event["type"] == "response.create" and source in ("tool", "dtmf"):
                    # A tool result or key press never races a response or a caller turn.
                    assert not busy_before
        # What the bridge believes was generated, checked against what it forwarded.
        for item in bridge.items.values():
            generated_ms[item.item_id] = item.generated_ms
            assert 0 <= item.heard_ms <= item.generated_ms
        assert set(bridge.pending_marks) <= set(marks_sent)
        if not bridge.ended and not bridge.tool_calls and not busy:
            # No tool output is left waiting for a response nobody will ask for.
            assert not bridge.unanswered_outputs, "a tool output waits in silence"
    assert ends <= 1
    for turn in bridge.finish():
        # Agent turns cut to what was heard, or caller turns whose transcript never came.
        assert turn.speaker == "agent" or (turn.speaker, turn.text) == ("caller", NOT_TRANSCRIBED)


# --- Truncation follows what the caller heard, whatever the chunk size -------------------
chunk_plans = st.lists(
    st.tuples(st.integers(0, 300), st.integers(1, 500)),  # (gap before it arrives, ms)
    min_size=1,
    max_size=12,
)


# Marks after every chunk (0), every 60 ms, 250 ms or second of audio, or only after an
# item's last chunk: the played position must come out the same.
mark_intervals = st.sampled_from([0, 60, 250, 1000, 10**9])


@settings(max_examples=400, deadline=None)
@given(chunk_plans, st.integers(0, 6000), mark_intervals)
def test_barge_in_truncates_within_20_ms_of_what_was_heard(plan, barge_in_at, mark_interval_ms):
    """A simulated Twilio: caller frames every 20 ms (the bridge's only clock), agent
    chunks of random sizes arriving at random times, played back to back in real time,
    each mark echoed when the audio before it has played; the item's audio ends (and
    its last mark is sent) after the last chunk."""
    bridge = CallBridge(
        CALL_SID, agent_config(), stream_token=TOKEN, mark_interval_ms=mark_interval_ms
    )
    bridge.on_twilio_text(start_msg())
    bridge.on_openai_text(orjson.dumps({"type": "response.created", "response": {"id": "r"}}))
    arrivals, at = [], 0
    for gap, ms in plan:
        at += gap
        arrivals.append((at, ms))
    starts, ends, playing_until = [], [], 0
    for arrive, ms in arrivals:
        start = max(arrive, playing_until)
        starts.append(start)
        playing_until = start + ms
        ends.append(playing_until)

    events = [(20 * k + 20, 0, ("frame", 20 * k)) for k in range((barge_in_at + 20) // 20)]
    events += [(end, 1, ("echo", i)) for i, end in enumerate(ends)]
    events += [(arrive, 2, ("chunk", i)) for i, (arrive, _) in enumerate(arrivals)]
    events.append((arrivals[-1][0], 3, ("audio done", len(arrivals) - 1)))
    mark_after: dict[int, str] = {}  # chunk index -> the mark that followed it

    def note_marks(actions, chunk: int) -> None:
        for action in actions:
            if isinstance(action, SendTwilio) and '"mark"' in action.text:
                mark_after[chunk] = orjson.loads(action.text)["mark"]["name"]

    for time_ms, _, (kind, value) in sorted(events):
        if time_ms > barge_in_at:
            break
        if kind == "frame":
            bridge.on_twilio_text(
                orjson.dumps(
                    {
                        "event": "media",
                        "streamSid": STREAM_SID,
                        "media": {"timestamp": str(value), "payload": _audio(20)},
                    }
                )
            )
        elif kind == "chunk":
            delta = {
                "type": "response.output_audio.delta",
                "response_id": "r",
                "item_id": "item",
                "delta": _audio(arrivals[value][1]),
            }
            note_marks(bridge.on_openai_text(orjson.dumps(delta)), value)
        elif kind == "audio done":
            done = {"type": "response.output_audio.done", "response_id": "r", "item_id": "item"}
            note_marks(bridge.on_openai_text(orjson.dumps(done)), value)
        elif value in mark_after:
            mark = {"event": "mark", "streamSid": STREAM_SID, "mark": {"name": mark_after[value]}}
            bridge.on_twilio_text(orjson.dumps(mark))

    speech = {"type": "input_audio_buffer.speech_started", "audio_start_ms": 0, "item_id": "u"}
    truncates = [
        orjson.loads(a.text)
        for a in bridge.on_openai_text(orjson.dumps(speech))
        if isinstance(a, SendOpenAI) and "conversation.item.truncate" in a.text
    ]
    heard = sum(
        min(max(barge_in_at - start, 0), ms)
        for start, (arrive, ms) in zip(starts, arrivals, strict=True)
        if arrive <= barge_in_at
    )
    generated = sum(ms for arrive, ms in arrivals if arrive <= barge_in_at)
    if heard < generated:
        (truncate,) = truncates  # something unheard: it is cut
    if truncates:
        (truncate,) = truncates
        assert abs(truncate["audio_end_ms"] - heard) <= 20, (truncate["audio_end_ms"], heard)
    if mark_interval_ms >= 10**9:
        # Marks only after the item's last chunk: one per item, whatever its length.
        assert len(mark_after) <= 1
