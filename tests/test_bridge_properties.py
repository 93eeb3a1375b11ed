"""Random event sequences through the bridge: nothing escapes, invariants hold."""

import base64

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calls.bridge import CallBridge, EndCall, SendOpenAI, SendTwilio
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
    st.just(("twilio", orjson.dumps({"event": "dtmf", "dtmf": {"digit": "1"}}))),
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
        lambda c: {
            "type": "error",
            "error": {"type": "invalid_request_error", "code": c, "message": "m"},
        },
        st.sampled_from(["response_cancel_not_active", "rate_limit_exceeded", "session_expired"]),
    ),
    st.dictionaries(
        st.sampled_from(["type", "response", "item_id", "delta"]),
        st.none() | st.integers(-(2**40), 2**40) | st.text(max_size=5),
    ),
).map(lambda e: ("openai", orjson.dumps(e)))

tool_results = st.builds(lambda c: ("tool", c), st.sampled_from(["call_1", "call_2"]))
# The OpenAI socket drops, a new session is opened, or one rolls over at a quiet moment.
session_changes = st.sampled_from([("closed", None), ("reconnected", None), ("rollover", None)])
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
    for source, payload in sequence:
        if source == "twilio":
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
        else:
            actions = bridge.on_openai_text(payload)

        if ends:
            assert actions == [], "nothing may happen after the call ended"
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
        # What the bridge believes was generated, checked against what it forwarded.
        for item in bridge.items.values():
            generated_ms[item.item_id] = item.generated_ms
            assert 0 <= item.heard_ms <= item.generated_ms
        assert set(bridge.pending_marks) <= set(marks_sent)
    assert ends <= 1
    for turn in bridge.finish():
        assert turn.speaker == "agent"
