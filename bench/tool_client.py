"""How long a tool call holds the event loop that every call on the process shares:
a fresh `httpx.AsyncClient` per tool call (what the app did before) against the one
client per process it keeps now (`voiceagents.tools.shared_http_client`).

    .venv/bin/python -m bench.tool_client [--calls 50]

Building a client builds its SSL context (loading the CA bundle), synchronously, so that
time is a stall of the loop. Each mode runs the same tool calls, one after another,
against a loopback tool server, with a 1 ms ticker measuring how late the loop wakes.
"""

import argparse
import asyncio
import time

import httpx
from django.conf import settings

from bench.stats import fmt, percentile
from bench.tool_server import BenchToolServer
from voiceagents.tools import run_http_tool, shared_http_client

TICK_S = 0.001


async def ticker(lags_ms: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        due = time.perf_counter() + TICK_S
        await asyncio.sleep(TICK_S)
        lags_ms.append((time.perf_counter() - due) * 1000)


async def one_mode(url: str, calls: int, per_call_client: bool) -> dict:
    lags_ms: list[float] = []
    setup_ms: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(lags_ms, stop))
    await asyncio.sleep(0.05)
    for i in range(calls):
        began = time.perf_counter()
        client = httpx.AsyncClient(timeout=10) if per_call_client else shared_http_client()
        setup_ms.append((time.perf_counter() - began) * 1000)
        await run_http_tool(client, url, "lookup_order", '{"order": "1"}', f"CA{i}")
        if per_call_client:
            await client.aclose()
        await asyncio.sleep(0.02)
    stop.set()
    await tick
    return {
        "first_ms": setup_ms[0],
        "setup_p50_ms": percentile(setup_ms[1:], 50),
        "setup_max_ms": max(setup_ms[1:]),
        "lag_p99_ms": percentile(lags_ms, 99),
        "lag_max_ms": max(lags_ms),
    }


async def measure(calls: int) -> None:
    server = BenchToolServer(slow_ms=0)
    try:
        rows = [
            ("a client per tool call (before)", await one_mode(server.url, calls, True)),
            ("one client per process (now)", await one_mode(server.url, calls, False)),
        ]
    finally:
        server.close()
    print(f"{calls} tool calls, one after another, loopback tool server:")
    print("| client | set-up, first call | set-up p50 | set-up max | loop lag p99 | loop lag max |")
    print("|---|---|---|---|---|---|")
    for name, r in rows:
        print(
            f"| {name} | {fmt(r['first_ms'])} ms | {fmt(r['setup_p50_ms'])} ms "
            f"| {fmt(r['setup_max_ms'])} ms | {fmt(r['lag_p99_ms'])} ms "
            f"| {fmt(r['lag_max_ms'])} ms |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    settings.configure(HTTP_TOOL_TIMEOUT_S=10.0)
    asyncio.run(measure(args.calls))


if __name__ == "__main__":
    main()
