"""Running the real app for integration tests: a Daphne subprocess on the test database,
and a background event loop for in-process fake servers."""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
TEST_AUTH_TOKEN = "test-twilio-auth-token"
TEST_OPENAI_KEY = "sk-test"
TEST_ACCOUNT_SID = "AC" + "0" * 32
# A webhook SharedKey (sid, secret) the test app knows (TWILIO_WEBHOOK_SHARED_KEY_SECRET).
TEST_WEBHOOK_SHARED_KEY = ("SK" + "5" * 32, "test-webhook-shared-key-secret")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def services_required() -> bool:
    """Under scripts/test (and in CI) a test that needs a real service fails without it;
    elsewhere it may skip, but only while that service's TEST_* variable is unset."""
    return bool(os.environ.get("REQUIRE_TEST_SERVICES") or os.environ.get("CI"))


def chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium"
    return path if os.access(path, os.X_OK) else None


def require_services(item: pytest.Item) -> None:
    """Fail (or locally skip) a test marked redis, postgres or browser whose service is
    not there, before its fixtures start processes that would fail less clearly."""
    markers = {mark.name for mark in item.iter_markers()}
    missing: list[tuple[str, str]] = []
    if "postgres" in markers and connection.vendor != "postgresql":
        missing.append(("TEST_DATABASE_URL", "PostgreSQL as the test database"))
    if "redis" in markers and not os.environ.get("TEST_REDIS_URL"):
        missing.append(("TEST_REDIS_URL", "a Redis server"))
    if "browser" in markers and not chromium_path():
        missing.append(("CHROMIUM_PATH", "Debian's chromium"))
    if not missing:
        return
    needs = ", ".join(what for _, what in missing)
    hint = (
        "run scripts/test, which starts the services and runs these tests with "
        "DATABASE_URL=$TEST_DATABASE_URL REDIS_URL=$TEST_REDIS_URL"
    )
    if services_required() or any(os.environ.get(var) for var, _ in missing):
        pytest.fail(f"this test needs {needs}: {hint}", pytrace=False)
    pytest.skip(f"needs {needs} ({hint})")


def database_url_of_test_db() -> str:
    """The URL of the database pytest-django created, for another process to use."""
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or "postgres"
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    return f"postgres://{user}{password}@{s['HOST']}:{s.get('PORT') or 5432}/{s['NAME']}"


class BackgroundLoop:
    """An event loop in a daemon thread, for servers that outlive one test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 15.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def app_env(env: dict[str, str]) -> dict[str, str]:
    """The environment an app process under test runs with: test secrets, then `env`."""
    return {
        **os.environ,
        "DEBUG": "true",
        "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
        "TWILIO_ACCOUNT_SID": TEST_ACCOUNT_SID,
        "OPENAI_API_KEY": TEST_OPENAI_KEY,
        "LOG_LEVEL": "INFO",
        "WEB_PROCESSES": "1",  # tests that want several say so
        **env,
    }


class AppProcess:
    """A process of the app (`python -m …`) with its output in a log file."""

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path = ROOT
    ) -> None:
        self.log_path = log_path
        self.log_file = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", *args],
            cwd=cwd,  # another checkout of the app: the benchmark's before/after runs
            env=app_env(env),
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text()

    def stop(self, wait_s: float = 10) -> None:
        self.process.terminate()
        try:
            self.process.wait(wait_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log_file.close()


class DaphneProcess(AppProcess):
    """Daphne (through voiceagents.web_server, as in production) serving
    `voiceagents.asgi:application` (or another ASGI app) on a free loopback
    port, announcing that address as its public base URL unless `env` says otherwise.
    `tls_proxy=True` announces it as `https://` (production settings require that), as if
    a TLS-terminating proxy on the same address forwarded to Daphne's plain http."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        require_healthy: bool = True,
        asgi_app: str = "voiceagents.asgi:application",
        ready_within_s: float = 20.0,
        tls_proxy: bool = False,
        cwd: Path = ROOT,
    ) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.public_url = f"{'https' if tls_proxy else 'http'}://127.0.0.1:{self.port}"
        super().__init__(
            self.server_args(asgi_app),
            {"PUBLIC_BASE_URL": self.public_url, **env},
            log_path,
            cwd,
        )
        self._wait_ready(ready_within_s, require_healthy=require_healthy)

    def server_args(self, asgi_app: str) -> list[str]:
        return ["voiceagents.web_server", "-b", "127.0.0.1", "-p", str(self.port), asgi_app]

    def _wait_ready(self, timeout: float, *, require_healthy: bool = True) -> None:
        """Until /healthz answers 200 (or answers at all, for an app started on purpose
        with a service it cannot reach)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"daphne exited early:\n{self.log()}")
            try:
                status = httpx.get(self.base_url + "/healthz", timeout=1).status_code
                if status == 200 or not require_healthy:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"daphne did not become ready:\n{self.log()}")


class CeleryWorker(AppProcess):
    """`celery -A voiceagents worker` as `scripts/run` and docker-compose start it, on the
    test database, with `env` naming the broker and the fakes' URLs."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        ready_within_s: float = 30.0,
    ):
        super().__init__(
            [
                *("celery", "-A", "voiceagents", "worker", "--loglevel", "INFO"),
                *("--pool", pool, "--concurrency", str(concurrency)),
                *("--without-gossip", "--without-mingle"),
                *("--hostname", f"test-{os.getpid()}-{free_port()}@%h"),
            ],
            env,
            log_path,
        )
        deadline = time.monotonic() + ready_within_s
        while "ready." not in self.log():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Celery worker did not start:\n{self.log()}")
            time.sleep(0.1)

    def stop(self, wait_s: float = 20) -> None:  # warm shutdown finishes the task at hand
        super().stop(wait_s)
