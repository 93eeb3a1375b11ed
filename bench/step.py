"""One step of the benchmark: N simultaneous calls against one or two fresh Daphne
processes, a fresh fake OpenAI server, and one or more caller processes."""

import time
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench import database, figures, processes
from bench.profile import summarize
from bench.scenario import Plan
from bench.tool_server import BenchToolServer
from bench.variants import Variant

SAMPLE_S = 0.5
START_DELAY_S = 2.5  # caller processes import and get ready meanwhile
WARM_UPS_PER_PROCESS = 2  # with several processes on one port, each most likely gets one


@dataclass
class StepConfig:
    calls: int
    plan: Plan
    work: Path  # this step's files
    database_url: str
    var_dir: Path
    apps: int = 1
    web_processes: int = 1  # WEB_PROCESSES of each app: Daphne processes on one port
    redis_url: str = ""
    caller_processes: int = 1
    ramp_s: float = 5.0  # calls start evenly over this long
    profile_to: Path | None = None  # py-spy flame graph of the first app process
    profile_s: int = 10
    profile_native: bool = False  # py-spy --native: C frames and syscalls too
    asgi: str = processes.DEFAULT_ASGI  # another ASGI application, for experiments
    server: str = "daphne"  # or "uvicorn", an experiment (processes.UvicornAppProcess)
    tool_server: BenchToolServer | None = None  # the tool-heavy plan's HTTP tool
    variant: Variant = field(default_factory=lambda: Variant(""))  # which checkout, settings


class Sampler:
    """Peak RSS and open sockets of the serving processes, sampled while the calls run."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.peak_rss = [processes.rss_bytes(pid) for pid in pids]
        self.baseline_sockets = [processes.open_sockets(pid) for pid in pids]
        self.peak_sockets = list(self.baseline_sockets)

    def __call__(self) -> None:
        for i, pid in enumerate(self.pids):
            self.peak_rss[i] = max(self.peak_rss[i], processes.rss_bytes(pid))
            self.peak_sockets[i] = max(self.peak_sockets[i], processes.open_sockets(pid))


def serving_pids(apps: list[processes.AppProcess], web_processes: int) -> list[int]:
    """The Daphne processes that carry the calls: each app's, or with WEB_PROCESSES the
    supervisor's children."""
    if web_processes <= 1:
        return [a.pid for a in apps]
    pids = [child for a in apps for child in processes.children(a.pid)]
    if len(pids) != web_processes * len(apps):
        raise RuntimeError(f"expected {web_processes} web processes per app, found {pids}")
    return pids


def caller_specs(config: StepConfig, apps: list, t0: float) -> list[dict]:
    gap = config.ramp_s / max(1, config.calls - 1) if config.calls > 1 else 0
    specs = [{"plan": config.plan.to_json(), "calls": []} for _ in range(config.caller_processes)]
    for i in range(config.calls):
        app = apps[i % len(apps)]
        specs[i % len(specs)]["calls"].append(
            {"app": app.base_url, "public": app.public_url, "at": t0 + i * gap}
        )
    return specs


def warm_up(apps: list, plan: Plan, work: Path) -> None:
    """One short call per app process first, so lazy imports and first connections do
    not count against the figures."""
    now = time.monotonic() + 1.0
    spec = {
        "plan": plan.to_json(),
        "calls": [
            {"app": a.base_url, "public": a.public_url, "at": now, "warmup": True} for a in apps
        ],
    }
    process, out = processes.start_callers(spec, work, "warmup")
    processes.wait_all([process], lambda: None)
    failed = [c for c in orjson.loads(out.read_bytes())["calls"] if c["error"]]
    if failed:
        raise RuntimeError(f"the warm-up call failed: {failed[0]['error']}")


def run_step(config: StepConfig, mode: str, staff: tuple[str, str] | None = None) -> figures.Step:
    config.work.mkdir(parents=True, exist_ok=True)
    fake = processes.start_fake_openai(config.plan, config.work)
    apps: list[processes.AppProcess] = []
    try:
        env = (
            processes.app_env(
                openai_base_url=fake.base_url,
                database_url=config.database_url,
                var_dir=config.var_dir,
                redis_url=config.redis_url,
            )
            | {"WEB_PROCESSES": str(config.web_processes)}
            | config.variant.env
        )
        for i in range(config.apps):
            log = config.work / f"daphne-{i}.log"
            server = processes.SERVERS[config.server]
            apps.append(server(env, log, config.asgi, config.variant.app_dir))
        pids = serving_pids(apps, config.web_processes)
        warm_up(apps * config.web_processes * WARM_UPS_PER_PROCESS, config.plan, config.work)
        time.sleep(1.0)

        tools = config.tool_server
        bad_requests_before = len(tools.bad_requests) if tools else 0
        sampler = Sampler(pids)
        baseline_rss = list(sampler.peak_rss)
        app_cpu_before = [processes.cpu_seconds(pid) for pid in pids]
        fake_cpu_before = processes.cpu_seconds(fake.process.pid)
        machine_before = processes.machine_cpu()
        started = time.monotonic()
        t0 = started + START_DELAY_S
        specs = caller_specs(config, apps, t0)
        if staff is not None and len(apps) > 1:
            specs[0]["probe"] = {
                "app": apps[0].base_url,
                "public": apps[0].public_url,
                "via": apps[1].base_url,
                "at": t0 + config.ramp_s / 2,
                "session": staff[0],
                "csrf": staff[1],
            }
        callers = [
            processes.start_callers(spec, config.work, f"callers-{i}")
            for i, spec in enumerate(specs)
        ]

        profiler = None
        profile_raw = config.work / "profile.raw.txt"
        profile_at = t0 + config.ramp_s + 1.0

        def tick() -> None:
            nonlocal profiler
            sampler()
            if config.profile_to and profiler is None and time.monotonic() >= profile_at:
                pid, seconds = apps[0].pid, config.profile_s
                native = config.profile_native
                profiler = [
                    processes.start_py_spy(pid, seconds, config.profile_to, "flamegraph", native),
                    processes.start_py_spy(pid, seconds, profile_raw, "raw", native),
                ]

        processes.wait_all([p for p, _ in callers], tick, SAMPLE_S)
        time.sleep(1.0)  # the app finalises the last calls
        sampler()
        window_s = time.monotonic() - started
        app_cpu = [
            processes.cpu_seconds(pid) - b for pid, b in zip(pids, app_cpu_before, strict=True)
        ]
        fake_cpu = processes.cpu_seconds(fake.process.pid) - fake_cpu_before
        machine_after = processes.machine_cpu()
        app_logs = [a.log() for a in apps]
    finally:
        for app in apps:
            app.stop()
        fake_result = fake.stop()

    results = [orjson.loads(out.read_bytes()) for _, out in callers]
    calls = [c for r in results for c in r["calls"]]
    step = figures.Step(mode=mode, calls=config.calls, reply_delay_ms=config.plan.reply_delay_ms)
    stored = database.stored_calls([c["sid"] for c in calls])
    tool_requests = dict(tools.answered) if tools is not None else None
    step.completed, step.failures = figures.judge_calls(calls, stored, tool_requests)
    step.failed = config.calls - step.completed
    if fake_result["violations"]:
        step.failures += [f"fake OpenAI: {v}" for v in fake_result["violations"][:5]]
    figures.fill_latencies(step, calls, fake_result["sessions"])
    if tools is not None:
        step.tool_plan = figures.tool_plan_figures(
            calls, stored, tool_requests, len(tools.bad_requests) - bad_requests_before
        )
    step.window_s = window_s
    step.app_cpu_s = app_cpu
    step.app_rss_per_call_mb = [
        (peak - base) / config.calls / 2**20
        for peak, base in zip(sampler.peak_rss, baseline_rss, strict=True)
    ]
    if config.web_processes > 1:  # one log for all: count each process's sockets instead
        step.calls_per_app = [
            (peak - base) // 2
            for peak, base in zip(sampler.peak_sockets, sampler.baseline_sockets, strict=True)
        ]
    else:
        step.calls_per_app = [
            log.count(" answered by agent ") - WARM_UPS_PER_PROCESS for log in app_logs
        ]
    step.fake_openai_cpu_s = fake_cpu
    step.callers_cpu_s = sum(r["cpu_s"] for r in results)
    step.loadgen_cpu_s = fake_cpu + step.callers_cpu_s
    step.caller_lag_p99_ms = max(r["loop_lag"]["p99_ms"] or 0 for r in results)
    step.fake_openai_lag_p99_ms = fake_result["loop_lag"]["p99_ms"]
    step.machine_busy_cores = (machine_after[0] - machine_before[0]) / window_s
    step.probe = next((r["probe"] for r in results if r.get("probe")), None)
    if step.probe:
        row = database.stored_calls([step.probe["sid"]]).get(step.probe["sid"]) or {}
        step.probe["stored_reason"] = row.get("completion_reason")
    if profiler:
        for p in profiler:
            p.wait(60)
        if profile_raw.exists():
            (config.work / "profile.txt").write_text(
                summarize(profile_raw, native=config.profile_native)
            )
    (config.work / "step.json").write_bytes(
        orjson.dumps(step, default=lambda o: o.__dict__, option=orjson.OPT_INDENT_2)
    )
    return step
