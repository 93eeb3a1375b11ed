"""Turning what the processes recorded into the figures of one step."""

from dataclasses import dataclass, field

from bench.scenario import TOOL_CALLS_PER_CALL
from bench.stats import p50_p99


@dataclass
class Step:
    """Everything one step measured, in plain numbers."""

    mode: str
    calls: int
    completed: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    peak_concurrent: int = 0
    forward_ms: tuple = (None, None)
    forward_samples: int = 0
    greeting_ms: tuple = (None, None)
    greeting_added_ms: tuple = (None, None)
    reply_delay_ms: int = 0
    barge_in_ms: tuple = (None, None)
    barge_in_samples: int = 0
    caller_barge_in_ms: tuple = (None, None)
    window_s: float = 0.0
    call_minutes: float = 0.0
    app_cpu_s: list[float] = field(default_factory=list)
    app_rss_per_call_mb: list[float] = field(default_factory=list)
    calls_per_app: list[int] = field(default_factory=list)
    loadgen_cpu_s: float = 0.0
    fake_openai_cpu_s: float = 0.0
    callers_cpu_s: float = 0.0
    caller_lag_p99_ms: float | None = None
    fake_openai_lag_p99_ms: float | None = None
    machine_busy_cores: float = 0.0
    probe: dict | None = None
    tool_plan: "ToolPlanFigures | None" = None

    @property
    def app_cpu_per_call_minute(self) -> float | None:
        return sum(self.app_cpu_s) / self.call_minutes if self.call_minutes else None

    @property
    def rss_per_call_mb(self) -> float | None:
        return sum(self.app_rss_per_call_mb) if self.app_rss_per_call_mb else None


def forwarding_latencies(calls: list[dict], sessions: list[dict]) -> list[float]:
    """Fake OpenAI sent the stamped delta → the fake Twilio received it, in ms."""
    sent = [s["delta_sent_at"] for s in sessions]
    return [
        (received_at - sent[session][number]) * 1000
        for call in calls
        for session, number, received_at in call["stamps"]
    ]


def greeting_latencies(calls: list[dict]) -> list[float]:
    """Twilio's `start` sent → the first agent audio received, in ms."""
    return [
        (c["first_media_at"] - c["start_sent_at"]) * 1000
        for c in calls
        if c["first_media_at"] is not None and c["start_sent_at"] is not None
    ]


def greeting_added_latencies(calls: list[dict], sessions: list[dict]) -> list[float]:
    """The greeting less the fake model's own time (its response.create arrived → its
    first audio delta sent, i.e. the scripted reply delay plus the fake's own events):
    what the app and the sockets added, in ms."""
    added = []
    for c in calls:
        if not c["stamps"] or c["first_media_at"] is None:
            continue
        session = sessions[c["stamps"][0][0]]
        if not session["response_create_at"]:
            continue
        model_s = session["delta_sent_at"][0] - session["response_create_at"][0]
        added.append((c["first_media_at"] - c["start_sent_at"] - model_s) * 1000)
    return added


def barge_in_latencies(calls: list[dict], sessions: list[dict]) -> list[float]:
    """The fake OpenAI sent speech_started → the fake Twilio received `clear`, in ms: each
    clear is paired with the last speech_started of that call's session before it."""
    latencies = []
    for call in calls:
        if not call["stamps"]:
            continue
        speech = sessions[call["stamps"][0][0]]["speech_started_at"]
        for cleared_at in call["clears"]:
            before = [t for t in speech if t <= cleared_at]
            if before:
                latencies.append((cleared_at - before[-1]) * 1000)
    return latencies


def caller_barge_in_latencies(calls: list[dict]) -> list[float]:
    """The caller started talking over the agent → the fake Twilio received `clear`, in
    ms: what the caller lives through, the model's voice detection included (the fake's
    VAD fires on the first 20 ms of speech it is sent, so batching caller audio shows)."""
    latencies = []
    for call in calls:
        spoke = call.get("barge_spoke_at")
        after = [t for t in call["clears"] if spoke is not None and t >= spoke]
        if after:
            latencies.append((after[0] - spoke) * 1000)
    return latencies


def peak_concurrency(calls: list[dict]) -> int:
    events = []
    for c in calls:
        if c["stream_connected_at"] is not None:
            events += [(c["stream_connected_at"], 1), (c["hung_up_at"], -1)]
    level = peak = 0
    for _, change in sorted(events):
        level += change
        peak = max(peak, level)
    return peak


def call_minutes(calls: list[dict]) -> float:
    return (
        sum(
            c["hung_up_at"] - c["stream_connected_at"]
            for c in calls
            if c["stream_connected_at"] is not None
        )
        / 60
    )


def judge_calls(
    calls: list[dict], stored: dict[str, dict], tool_requests: dict[str, int] | None = None
) -> tuple[int, list[str]]:
    """Completed calls, and why the others failed (caller side, then what was stored, then
    for the tool-heavy plan the tool requests the call made)."""
    completed, failures = 0, []
    for c in calls:
        row = stored.get(c["sid"])
        if not c["ok"]:
            failures.append(f"{c['sid']}: {c['error'] or c['violations'] or 'closed by the app'}")
        elif row is None or row["completion_reason"] != "caller_hangup" or not row["ended_at"]:
            failures.append(f"{c['sid']}: stored as {row}")
        elif tool_requests is not None and tool_requests.get(c["sid"], 0) != TOOL_CALLS_PER_CALL:
            made = tool_requests.get(c["sid"], 0)
            failures.append(f"{c['sid']}: {made} tool requests, {TOOL_CALLS_PER_CALL} planned")
        else:
            completed += 1
    return completed, failures


def fill_latencies(step: Step, calls: list[dict], sessions: list[dict]) -> None:
    forward = forwarding_latencies(calls, sessions)
    barge = barge_in_latencies(calls, sessions)
    step.forward_ms, step.forward_samples = p50_p99(forward), len(forward)
    step.greeting_ms = p50_p99(greeting_latencies(calls))
    step.greeting_added_ms = p50_p99(greeting_added_latencies(calls, sessions))
    step.barge_in_ms, step.barge_in_samples = p50_p99(barge), len(barge)
    step.caller_barge_in_ms = p50_p99(caller_barge_in_latencies(calls))
    step.peak_concurrent = peak_concurrency(calls)
    step.call_minutes = call_minutes(calls)


@dataclass
class ToolPlanFigures:
    """What the tool-heavy plan is about: tools answered, OpenAI errors survived, the
    reconnect made, and no call ended by OpenAI."""

    tool_requests: int  # answered by the bench tool server
    tool_bad_requests: int
    openai_errors_on_calls: int  # recorded on the stored calls (1 per call planned)
    ended_by_openai: int  # calls stored with an OpenAI completion reason
    sessions: int  # fake OpenAI sessions the step's calls opened (2 per call planned)


OPENAI_REASONS = ("openai_error", "openai_connection_failed")


def tool_plan_figures(
    calls: list[dict], stored: dict[str, dict], tool_requests: dict[str, int], bad_requests: int
) -> ToolPlanFigures:
    rows = [stored[c["sid"]] for c in calls if c["sid"] in stored]
    return ToolPlanFigures(
        tool_requests=sum(tool_requests.get(c["sid"], 0) for c in calls),
        tool_bad_requests=bad_requests,
        openai_errors_on_calls=sum(r["openai_error_count"] for r in rows),
        ended_by_openai=sum(r["completion_reason"] in OPENAI_REASONS for r in rows),
        sessions=len({s for c in calls for s, _, _ in c["stamps"]}),
    )
