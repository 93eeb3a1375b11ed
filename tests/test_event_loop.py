"""voiceagents/event_loop.py: uvloop under Daphne when installed, asyncio's own loop when
asked for or when uvloop is missing; and the web process really runs on the loop chosen."""

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest
import uvloop

from tests.live import ROOT, DaphneProcess, database_url_of_test_db
from voiceagents import event_loop


@pytest.fixture(autouse=True)
def restore_policy():
    policy = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(policy)


def loop_made_by_policy() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.close()
    return loop


def test_uvloop_is_the_default(monkeypatch):
    monkeypatch.delenv("EVENT_LOOP", raising=False)
    assert event_loop.install() == "uvloop"
    assert isinstance(loop_made_by_policy(), uvloop.Loop)


def test_event_loop_asyncio_keeps_the_standard_loop(monkeypatch):
    monkeypatch.setenv("EVENT_LOOP", "asyncio")
    assert event_loop.install() == "asyncio"
    assert not isinstance(loop_made_by_policy(), uvloop.Loop)


def test_without_uvloop_installed_the_standard_loop_runs(monkeypatch, caplog):
    monkeypatch.delenv("EVENT_LOOP", raising=False)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop → ImportError
    assert event_loop.install() == "asyncio"
    assert not isinstance(loop_made_by_policy(), uvloop.Loop)
    assert "uvloop is not installed" in caplog.text


def test_an_unknown_loop_name_is_refused_with_the_choices(monkeypatch):
    monkeypatch.setenv("EVENT_LOOP", "trio")
    with pytest.raises(SystemExit, match="choose uvloop or asyncio"):
        event_loop.install()


def loaded_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("setting", "uses_uvloop"), [("uvloop", True), ("asyncio", False)])
def test_the_web_process_runs_on_the_loop_chosen(setting, uses_uvloop):
    """uvloop's extension is in the serving process's memory only when chosen; the
    process answers either way."""
    env = {"DATABASE_URL": database_url_of_test_db(), "EVENT_LOOP": setting}
    server = DaphneProcess(env, ROOT / "var" / f"test-event-loop-{setting}.log")
    try:
        time.sleep(0.2)
        assert ("uvloop/loop." in loaded_libraries(server.pid)) is uses_uvloop
    finally:
        server.stop()


def test_importing_the_web_server_chooses_no_loop_and_installs_no_reactor():
    """Only its main() does, in that order: an import (a test collecting it, a tool)
    must not put the whole process on uvloop or on Twisted's default reactor."""
    probe = (
        "import asyncio, sys, voiceagents.web_server;"
        "print(type(asyncio.get_event_loop_policy()).__module__,"
        " 'twisted.internet.reactor' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["asyncio.unix_events", "False"]
