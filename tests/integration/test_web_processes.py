"""WEB_PROCESSES: one port, several Daphne processes (voiceagents/web_server.py binds it
and hands it to each), refused without Redis; connections spread over the processes."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.live import ROOT, DaphneProcess, app_env, database_url_of_test_db, require_services


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def open_sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            count += os.readlink(fd).startswith("socket:")
    return count


@pytest.mark.redis
def test_several_processes_share_the_port_and_the_connections(
    request, django_db_setup, django_db_blocker
):
    require_services(request.node)
    app = DaphneProcess(
        {
            "DATABASE_URL": database_url_of_test_db(),
            "REDIS_URL": os.environ.get("TEST_REDIS_URL", ""),
            "WEB_PROCESSES": "2",
        },
        ROOT / "var" / "test-web-processes.log",
    )
    try:
        children = children_of(app.pid)
        assert len(children) == 2, app.log()
        before = {pid: open_sockets(pid) for pid in children}
        held = [socket.create_connection(("127.0.0.1", app.port)) for _ in range(40)]
        for conn in held:  # a request each, so every connection is accepted and kept
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(1)
        taken = {pid: open_sockets(pid) - before[pid] for pid in children}
        for conn in held:
            conn.close()
        assert sum(taken.values()) >= 40, taken
        assert all(n > 0 for n in taken.values()), f"one process took every connection: {taken}"
        assert httpx.get(app.base_url + "/healthz").status_code == 200
    finally:
        app.stop()
    time.sleep(0.5)
    assert all(not Path(f"/proc/{pid}").exists() for pid in children)  # stopped with it


def test_several_processes_without_redis_are_refused():
    env = app_env({"WEB_PROCESSES": "3"})
    env.pop("REDIS_URL", None)

    result = subprocess.run(
        [sys.executable, "-m", "voiceagents.web_server", "-p", "0", "voiceagents.asgi:application"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode != 0
    assert "WEB_PROCESSES=3 needs REDIS_URL" in result.stderr
