"""The benchmark's bookkeeping: plans survive the trip to the other processes, and the
tool-heavy plan counts a call as done only with its three tool requests; variants, the
caller's barge-in figure and the native profile's summary."""

import pytest

from bench.figures import caller_barge_in_latencies, judge_calls, tool_plan_figures
from bench.profile import summarize
from bench.scenario import CallPlan, ToolCallPlan, plan_from_json
from bench.variants import Variant, parse_variant
from tests.live import ROOT


def test_plans_round_trip_through_json():
    for plan in (CallPlan(), ToolCallPlan(slow_tool_ms=1234)):
        assert plan_from_json(plan.to_json()) == plan


def test_the_tool_plans_reconnect_plays_its_second_part():
    plan = ToolCallPlan()
    assert CallPlan().resume_script() is None
    assert plan.resume_script().replies[0].text != plan.script().replies[0].text


def caller_record(sid: str, ok: bool = True) -> dict:
    return {"sid": sid, "ok": ok, "error": None, "violations": [], "stamps": [(0, 0, 1.0)]}


def stored_row(reason: str = "caller_hangup", errors: int = 1) -> dict:
    return {"completion_reason": reason, "ended_at": "x", "openai_error_count": errors}


def test_a_tool_plan_call_without_its_three_tool_requests_failed():
    calls = [caller_record("CA1"), caller_record("CA2"), caller_record("CA3")]
    stored = {
        "CA1": stored_row(),
        "CA2": stored_row(),
        "CA3": stored_row("openai_error"),
    }
    completed, failures = judge_calls(calls, stored, {"CA1": 3, "CA2": 2, "CA3": 3})
    assert completed == 1
    assert [f.split(":")[0] for f in failures] == ["CA2", "CA3"]
    assert "2 tool requests, 3 planned" in failures[0]
    figures = tool_plan_figures(calls, stored, {"CA1": 3, "CA2": 2, "CA3": 3}, 0)
    assert (figures.tool_requests, figures.ended_by_openai, figures.openai_errors_on_calls) == (
        8,
        1,
        3,
    )


def test_the_default_plan_ignores_tool_requests():
    completed, failures = judge_calls([caller_record("CA1")], {"CA1": stored_row()})
    assert (completed, failures) == (1, [])


def test_a_variant_names_its_label_commit_and_settings():
    variant = parse_variant("window60:INBOUND_AUDIO_WINDOW_MS=60,MARK_INTERVAL_MS=250")
    assert variant == Variant(
        "window60", ROOT, {"INBOUND_AUDIO_WINDOW_MS": "60", "MARK_INTERVAL_MS": "250"}
    )
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_variant("broken:INBOUND_AUDIO_WINDOW_MS")


def test_the_callers_barge_in_runs_from_their_first_word_to_the_next_clear():
    calls = [
        {"barge_spoke_at": 10.0, "clears": [4.0, 10.03, 10.5]},
        {"barge_spoke_at": None, "clears": [1.0]},  # never talked over the agent
        {"barge_spoke_at": 20.0, "clears": []},  # never cleared: a failed call, not a figure
    ]
    assert [round(ms, 3) for ms in caller_barge_in_latencies(calls)] == [30.0]


LOOP = "main (web_server.py:1);AsyncioSelectorReactor.run (twisted/internet/asyncioreactor.py:2)"
POOL = "Thread._bootstrap (threading.py:1);_worker (concurrent/futures/thread.py:81)"
NATIVE_PROFILE = "\n".join(
    [
        f"{LOOP};uv_run (core.c:464);epoll_pwait (libc.so.6) 50",
        f"{LOOP};Handle__run (loop.c:1);callWithLogger (twisted/python/log.py:9);"
        "Connection.doRead (twisted/internet/tcp.py:278);recv (libc.so.6) 3",
        f"{LOOP};Handle__run (loop.c:1);callWithLogger (twisted/python/log.py:9);"
        "LeanWebSocketProtocol.dataReceived (voiceagents/websocket_protocol.py:1) 2",
        f"{LOOP};Handle__run (loop.c:1);Py_DECREF (object.h:537) 1",
        f"{POOL};_queue_SimpleQueue_get (_queuemodule.c.h:177);0x7fac858a3f16 (libc.so.6) 40",
        f"{POOL};execute (django/db/backends/utils.py:1) 4",
    ]
)


def test_a_native_profile_leaves_out_idle_threads_and_names_callbacks_and_syscalls(tmp_path):
    raw = tmp_path / "profile.raw.txt"
    raw.write_text(NATIVE_PROFILE)
    summary = summarize(raw, native=True)
    assert summary.startswith("10 samples of Daphne's busy threads (py-spy --native")
    callbacks = summary.split("Event-loop callback")[1].split("Leaf of the stack")[0]
    assert "50.0%  callWithLogger (twisted/python/log.py)" in callbacks
    assert "40.0%  (other threads)" in callbacks
    assert "10.0%  (the event loop's own C code)" in callbacks
    leaves = summary.split("Leaf of the stack")[1]
    assert "30.0%  system call or libc: recv" in leaves
    assert "70.0%  CPU in Python or C code" in leaves
    assert "Event-loop callback" not in summarize(raw)  # the plain profile is unchanged
