"""The processes of a run and what /proc says about them: Daphne serving the app, the
fake OpenAI server, the caller processes, and py-spy."""

import contextlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.scenario import ACCOUNT_SID, AUTH_TOKEN, OPENAI_KEY, SECRET_KEY, Plan
from tests.live import ROOT, DaphneProcess

DEFAULT_ASGI = "voiceagents.asgi:application"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def raise_open_file_limit() -> None:
    """Hundreds of calls need thousands of sockets across the processes started here."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_BYTES


def children(pid: int) -> list[int]:
    """The processes `pid` started (WEB_PROCESSES' Daphne processes under their
    supervisor), from the parent field of every /proc/<pid>/stat."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def open_sockets(pid: int) -> int:
    """Sockets a process holds: two per call (Twilio's stream, the OpenAI session)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            count += os.readlink(fd).startswith("socket:")
    return count


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


def app_env(*, openai_base_url: str, database_url: str, var_dir: Path, redis_url: str = "") -> dict:
    """Production settings (DEBUG=false), rate limits off: every call comes from loopback."""
    env = {
        "DEBUG": "false",
        "SECRET_KEY": SECRET_KEY,
        "OPENAI_API_KEY": OPENAI_KEY,
        "OPENAI_BASE_URL": openai_base_url,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(var_dir),
        "RATE_LIMIT_TWILIO_PER_MIN": "0",
        "TOOL_EGRESS_ALLOW": "127.0.0.1",  # the tool-heavy plan's tool server
        "TOOL_ALLOW_HTTP": "true",
        "LOG_LEVEL": "INFO",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
        env["CELERY_BROKER_URL"] = redis_url
    return env


class AppProcess(DaphneProcess):
    """Daphne serving the app under test. Each process of a scale-out run signs and
    advertises its own address as `https://` (DaphneProcess sets PUBLIC_BASE_URL to it),
    as production settings require; the fake callers sign for that URL and connect to
    Daphne's plain http, as Twilio would through a TLS-terminating proxy."""

    def __init__(
        self, env: dict[str, str], log_path: Path, asgi: str = DEFAULT_ASGI, cwd: Path = ROOT
    ) -> None:
        super().__init__(env, log_path, asgi_app=asgi, ready_within_s=30.0, tls_proxy=True, cwd=cwd)


class UvicornAppProcess(AppProcess):
    """The same app under uvicorn (uvloop, its websockets protocol) instead of Daphne: an
    experiment measuring what the Twisted/autobahn layer costs (`--server uvicorn`).
    uvicorn is not a dependency: `.venv/bin/pip install uvicorn httptools` first."""

    def server_args(self, asgi_app: str) -> list[str]:
        return [
            *("uvicorn", "--host", "127.0.0.1", "--port", str(self.port)),
            *("--loop", "uvloop", "--http", "httptools", "--ws", "websockets"),
            *("--no-access-log", "--log-level", "warning", asgi_app),
        ]


SERVERS = {"daphne": AppProcess, "uvicorn": UvicornAppProcess}


@dataclass
class FakeOpenAI:
    process: subprocess.Popen
    port: int
    out: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def stop(self) -> dict:
        self.process.terminate()
        self.process.wait(60)
        return orjson.loads(self.out.read_bytes())


def start_fake_openai(plan: Plan, work: Path) -> FakeOpenAI:
    out = work / "realtime.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.realtime",
            "--plan",
            orjson.dumps(plan.to_json()).decode(),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline() if process.stdout else ""
    if not line.startswith("PORT "):
        process.kill()
        raise RuntimeError(f"the fake OpenAI server did not start: {line!r}")
    return FakeOpenAI(process, int(line.split()[1]), out)


def start_callers(spec: dict, work: Path, name: str) -> tuple[subprocess.Popen, Path]:
    spec_path, out = work / f"{name}-spec.json", work / f"{name}.json"
    spec_path.write_bytes(orjson.dumps(spec))
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.load", "--spec", str(spec_path), "--out", str(out)],
        cwd=ROOT,
    )
    return process, out


def wait_all(processes: list[subprocess.Popen], on_tick, tick_s: float = 0.5) -> None:
    """Wait for every process, calling on_tick() about every tick_s meanwhile."""
    while any(p.poll() is None for p in processes):
        on_tick()
        time.sleep(tick_s)
    for p in processes:
        if p.returncode != 0:
            raise RuntimeError(f"{p.args} exited with {p.returncode}")


def start_py_spy(
    pid: int, seconds: int, out: Path, fmt: str, native: bool = False
) -> subprocess.Popen:
    # --native walks the C stack too (event loop, syscalls), which needs the process
    # paused for each sample: slower, but it shows what the Python frames cannot.
    sampling = ["--native"] if native else ["--nonblocking"]
    py_spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(
        [
            str(py_spy),
            "record",
            "-p",
            str(pid),
            "-d",
            str(seconds),
            "-r",
            "100",
            *sampling,
            "-f",
            fmt,
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
