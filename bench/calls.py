"""The call-capacity benchmark: N simultaneous simulated Twilio calls through a real
Daphne process, against the fake OpenAI Realtime server, for each N asked for.

    .venv/bin/python -m bench.calls                     # N = 1, 50, 200 on one process
    .venv/bin/python -m bench.calls --calls 1,20        # other N
    .venv/bin/python -m bench.calls --max               # step N up until failure or p99 > bound
    .venv/bin/python -m bench.calls --scale-out         # two processes, Redis + PostgreSQL
    .venv/bin/python -m bench.calls --calls 200 --profile   # py-spy during the steady state
    .venv/bin/python -m bench.calls --plan tools --calls 50  # tools, errors, a reconnect

See bench/README.md for what each figure means and how it is measured.
"""

import argparse
import logging
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median

from bench import database, processes
from bench.figures import Step
from bench.scenario import TOOL_CALLS_PER_CALL, CallPlan, Plan, ToolCallPlan
from bench.stats import fmt
from bench.step import StepConfig, run_step
from bench.tool_server import BenchToolServer
from bench.variants import Variant, parse_variant
from tests.live import ROOT

VAR_DIR = ROOT / "var" / "bench"
MAX_STEPS = [50, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000]
SERVICES_ENV = ROOT / "var" / "test-services.env"


def service_url(name: str, default: str) -> str:
    """TEST_REDIS_URL / TEST_DATABASE_URL as scripts/test-services wrote them."""
    if SERVICES_ENV.exists():
        for line in SERVICES_ENV.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            if key == name:
                return value
    return default


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Call-capacity benchmark (see bench/README.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--calls", default="1,50,200", help="comma-separated N to run")
    parser.add_argument(
        "--plan",
        choices=["standard", "tools"],
        default="standard",
        help="what each call does (bench/scenario.py)",
    )
    parser.add_argument("--max", action="store_true", help=f"step N through {MAX_STEPS}")
    parser.add_argument("--bound-ms", type=float, default=20.0, help="--max: p99 bound")
    parser.add_argument("--scale-out", action="store_true", help="two Daphne processes")
    parser.add_argument(
        "--web-processes",
        type=int,
        default=0,
        metavar="K",
        help="one port, WEB_PROCESSES=K (Redis + PostgreSQL, as in production); 0: neither",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy the largest N")
    parser.add_argument("--profile-s", type=int, default=10)
    parser.add_argument(
        "--profile-native",
        action="store_true",
        help="with --profile: py-spy --native (event loop C code and system calls too)",
    )
    parser.add_argument(
        "--caller-processes", type=int, default=0, help="0: 1, or 2 above 100 calls"
    )
    parser.add_argument("--ramp-s", type=float, default=0.0, help="0: 50 ms per call, at most 10 s")
    parser.add_argument("--reply-delay-ms", type=int, default=CallPlan.reply_delay_ms)
    parser.add_argument("--chunk-ms", type=int, default=CallPlan.chunk_ms)
    parser.add_argument(
        "--asgi", default=processes.DEFAULT_ASGI, help="the ASGI app Daphne serves (experiments)"
    )
    parser.add_argument("--short", action="store_true", help="a ~8 s call, for trying it out")
    parser.add_argument(
        "--server",
        choices=sorted(processes.SERVERS),
        default="daphne",
        help="uvicorn: an experiment (pip install uvicorn httptools first), not the app as shipped",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="run each step this many times (ABAB with variants)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        type=parse_variant,
        default=[],
        metavar="LABEL[@REV][:KEY=VALUE,…]",
        help="measure this commit and/or these settings too, step by step (bench/variants.py)",
    )
    parser.add_argument(
        "--redis-url", default=service_url("TEST_REDIS_URL", "redis://127.0.0.1:6390/0")
    )
    parser.add_argument(
        "--postgres-url",
        default=service_url("TEST_DATABASE_URL", "postgres://postgres@127.0.0.1:5439/voiceagents"),
    )
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    if args.plan == "tools":
        return ToolCallPlan(reply_delay_ms=args.reply_delay_ms, chunk_ms=args.chunk_ms)
    if args.short:
        return CallPlan(
            reply_delay_ms=args.reply_delay_ms,
            chunk_ms=args.chunk_ms,
            greeting_ms=1500,
            question_ms=800,
            answer_ms=6000,
            barge_after_ms=1000,
            barge_ms=600,
            final_ms=1000,
            silence_before_hangup_ms=300,
        )
    return CallPlan(reply_delay_ms=args.reply_delay_ms, chunk_ms=args.chunk_ms)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} cores ({model}), {mem_kb / 2**20:.1f} GiB RAM, "
        f"Python {platform.python_version()}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )


HEADER = (
    "| mode | N | done | failed | peak | fwd p50 | fwd p99 | greet p50 | greet p99 "
    "| greet added p50 | greet added p99 | barge p50 | barge p99 | caller barge p50 "
    "| caller barge p99 | CPU s/call-min | RSS MB/call "
    "| app CPU | loadgen CPU | caller lag p99 | machine busy |"
)


def row(step: Step) -> str:
    window = step.window_s or 1
    cells = [
        step.mode,
        str(step.calls),
        str(step.completed),
        str(step.failed),
        str(step.peak_concurrent),
        fmt(step.forward_ms[0]),
        fmt(step.forward_ms[1]),
        fmt(step.greeting_ms[0]),
        fmt(step.greeting_ms[1]),
        fmt(step.greeting_added_ms[0]),
        fmt(step.greeting_added_ms[1]),
        fmt(step.barge_in_ms[0]),
        fmt(step.barge_in_ms[1]),
        fmt(step.caller_barge_in_ms[0]),
        fmt(step.caller_barge_in_ms[1]),
        fmt(step.app_cpu_per_call_minute, 3),
        fmt(step.rss_per_call_mb, 2),
        f"{100 * sum(step.app_cpu_s) / window:.0f}%",
        f"{100 * step.loadgen_cpu_s / window:.0f}%",
        fmt(step.caller_lag_p99_ms),
        f"{step.machine_busy_cores:.2f}/{os.cpu_count()}",
    ]
    return "| " + " | ".join(cells) + " |"


def details(step: Step) -> list[str]:
    lines = [
        f"  N={step.calls}: {step.forward_samples} forwarded chunks, {step.barge_in_samples} "
        f"barge-ins, {step.call_minutes:.1f} call-minutes in {step.window_s:.0f} s; app CPU "
        f"{' + '.join(f'{c:.1f}' for c in step.app_cpu_s)} s; fake OpenAI "
        f"{step.fake_openai_cpu_s:.1f} s (loop lag p99 {fmt(step.fake_openai_lag_p99_ms)} ms), "
        f"callers {step.callers_cpu_s:.1f} s"
    ]
    if len(step.calls_per_app) > 1:
        spread = ", ".join(
            f"process {i}: {n} calls, {cpu:.1f} CPU s, {rss:.2f} MB/call"
            for i, (n, cpu, rss) in enumerate(
                zip(step.calls_per_app, step.app_cpu_s, step.app_rss_per_call_mb, strict=True)
            )
        )
        lines.append(f"  calls per Daphne process: {spread}")
    if step.probe:
        p = step.probe
        lines.append(
            f"  cross-process check (call held by {p.get('held_by')}, asked {p.get('asked')}): "
            f"turns page {p.get('turns_status')}, "
            f"showing the greeting={p.get('turns_show_greeting')}; "
            f"hang-up POST {p.get('hang_up_status')} → stream closed by the app="
            f"{p.get('closed_by_app')} after {fmt(p.get('hang_up_to_close_ms'))} ms; stored as "
            f"{p.get('stored_reason')}" + (f"; error {p['error']}" if p.get("error") else "")
        )
    if step.tool_plan:
        t = step.tool_plan
        lines.append(
            f"  tool plan: {t.tool_requests} tool requests answered "
            f"({TOOL_CALLS_PER_CALL * step.calls} planned, "
            f"{t.tool_bad_requests} malformed), {t.sessions} OpenAI sessions heard "
            f"({2 * step.calls} planned: one reconnect per call), {t.openai_errors_on_calls} "
            f"recoverable OpenAI errors recorded on the calls ({step.calls} planned), "
            f"{t.ended_by_openai} calls ended by OpenAI"
        )
    lines += [f"  failed: {f}" for f in step.failures[:5]]
    return lines


def fmt_all(values: list[float]) -> str:
    return ", ".join(fmt(v, 3) for v in values)


def passes(step: Step, bound_ms: float) -> bool:
    return (
        step.failed == 0
        and (step.forward_ms[1] or 0) <= bound_ms
        and (step.barge_in_ms[1] or 0) <= bound_ms
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    processes.raise_open_file_limit()
    plan = make_plan(args)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    run_dir = VAR_DIR / datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")
    redis_url = ""
    if args.scale_out or args.web_processes:
        database_url = database.fresh_postgres_url(args.postgres_url)
        redis_url = args.redis_url
        mode = f"{args.web_processes} web proc" if args.web_processes else "2 proc"
    else:
        database_url = database.sqlite_url(VAR_DIR)
        mode = "1 proc"
    database.setup_django(database_url, VAR_DIR)
    tools = BenchToolServer(plan.slow_tool_ms) if plan.kind == "tools" else None
    database.seed_agent(tools.url if tools else "")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # the readiness probes
    staff = database.staff_session() if args.scale_out else None

    counts = MAX_STEPS if args.max else [int(n) for n in args.calls.split(",")]
    print(f"Machine: {machine()}", flush=True)
    print(
        f"Call plan: {plan}; database {database_url.split('://')[0]}"
        + (", Redis channel layer" if redis_url else ", in-memory channel layer"),
        flush=True,
    )
    print(f"Files: {run_dir}", flush=True)
    if args.server != "daphne":
        print(f"Served by {args.server} (an experiment, not the app as shipped)", flush=True)
    if args.asgi != processes.DEFAULT_ASGI:
        print(f"Daphne serves {args.asgi} (an experiment, not the app as shipped)", flush=True)
    variants = args.variant or [Variant("")]
    for variant in variants:
        if variant.label:
            where = "this checkout" if variant.app_dir == ROOT else variant.app_dir.name
            print(f"Variant {variant.label}: {where} {variant.env or ''}", flush=True)
    steps: list[Step] = []
    runs = [(n, r, v) for n in counts for r in range(args.repeat) for v in variants]
    for n, repeat, variant in runs:
        name = "-".join(filter(None, [f"n{n}", variant.label, f"r{repeat}" if repeat else ""]))
        config = StepConfig(
            calls=n,
            plan=plan,
            work=run_dir / name,
            database_url=database_url,
            var_dir=VAR_DIR,
            apps=2 if args.scale_out else 1,
            web_processes=max(1, args.web_processes),
            redis_url=redis_url,
            caller_processes=args.caller_processes or (2 if n > 100 else 1),
            ramp_s=args.ramp_s or min(10.0, 0.05 * n),
            profile_to=run_dir / name / "profile.svg"
            if args.profile and n == max(counts)
            else None,
            profile_s=args.profile_s,
            profile_native=args.profile_native,
            asgi=args.asgi,
            server=args.server,
            tool_server=tools,
            variant=variant,
        )
        print(f"… {n} calls {variant.label}", file=sys.stderr, flush=True)
        began = time.monotonic()
        step = run_step(config, f"{mode} {variant.label}".strip(), staff)
        steps.append(step)
        print(f"… {n} calls done in {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        print("\n".join([HEADER, row(step), *details(step)]), file=sys.stderr, flush=True)
        if args.max and not passes(step, args.bound_ms) and variant is variants[-1]:
            break

    print()
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for step in steps:
        print(row(step))
    print()
    for step in steps:
        print("\n".join(details(step)))
    if args.repeat > 1:
        print("\nMedian CPU s per call-minute over the repeats:")
        for mode_name, n in dict.fromkeys((s.mode, s.calls) for s in steps):
            cpu = [
                s.app_cpu_per_call_minute
                for s in steps
                if (s.mode, s.calls) == (mode_name, n) and s.app_cpu_per_call_minute
            ]
            print(f"  {mode_name}, {n} calls: {fmt(median(cpu), 3)} (of {fmt_all(cpu)})")
    if args.max:
        for mode_name in dict.fromkeys(s.mode for s in steps):
            held = [s.calls for s in steps if s.mode == mode_name and passes(s, args.bound_ms)]
            print(
                f"\nMost calls {mode_name} held (no failure, p99 forwarding and barge-in ≤ "
                f"{args.bound_ms:g} ms): {max(held) if held else 'none of the steps'}"
            )
    profiles = sorted(run_dir.glob("n*/profile.svg"), key=lambda p: p.stat().st_mtime)
    if profiles:  # the last step profiled; every step keeps its own in its directory
        step_dir = profiles[-1].parent
        for name in ("profile.svg", "profile.txt"):
            if (step_dir / name).exists():
                shutil.copy(step_dir / name, ROOT / "bench" / name)
        print(f"\nProfile of step {step_dir.name} (bench/profile.svg):")
        print((ROOT / "bench" / "profile.txt").read_text())
    return 0 if all(s.failed == 0 for s in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
