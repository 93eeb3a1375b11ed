"""The benchmark's bookkeeping: plans survive the trip to the other processes, and the
tool-heavy plan counts a call as done only with its three tool requests."""

from bench.figures import judge_calls, tool_plan_figures
from bench.scenario import CallPlan, ToolCallPlan, plan_from_json


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
