"""voiceagents/reactor_calls.py: Twilio's sockets are read by Twisted's asyncio reactor
without a log context built around each read, and an error escaping a handler is still
logged; and the web server installs it and freezes its start-up objects once running."""

import asyncio
import socket
import subprocess
import sys

from twisted.internet import asyncioreactor
from twisted.logger import globalLogPublisher
from twisted.python import context, log

from tests.live import ROOT, app_env, database_url_of_test_db
from voiceagents import reactor_calls


class ReadableSocket:
    """What the reactor needs of a socket's selectable; records each read and the log
    context it ran in."""

    def __init__(self, sock: socket.socket, done: asyncio.Event) -> None:
        self.sock = sock
        self.done = done
        self.reads: list[tuple[bytes, object]] = []
        self.prefixes_asked = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def logPrefix(self) -> str:
        self.prefixes_asked += 1
        return "ReadableSocket"

    def doRead(self) -> None:
        self.reads.append((self.sock.recv(100), context.get(log.ILogContext)["system"]))
        self.done.set()


def read_once_through_the_reactor(monkeypatch) -> ReadableSocket:
    monkeypatch.setattr(asyncioreactor, "callWithLogger", asyncioreactor.callWithLogger)
    reactor_calls.install()
    ours, theirs = socket.socketpair()
    loop = asyncio.new_event_loop()
    try:
        reactor = asyncioreactor.AsyncioSelectorReactor(loop)
        readable = ReadableSocket(ours, asyncio.Event())
        reactor.addReader(readable)
        theirs.send(b"frame")
        loop.run_until_complete(asyncio.wait_for(readable.done.wait(), 5))
        reactor.removeReader(readable)
        return readable
    finally:
        loop.close()
        ours.close()
        theirs.close()


def test_a_readable_socket_is_read_without_a_log_context(monkeypatch):
    readable = read_once_through_the_reactor(monkeypatch)

    assert readable.reads == [(b"frame", "-")]  # Twisted's default: no prefix
    assert readable.prefixes_asked == 0


def test_twisted_alone_would_have_built_one(monkeypatch):
    """The same read on Twisted's own wrapper: the context the swap removes is real."""
    monkeypatch.setattr(reactor_calls, "install", lambda: None)
    readable = read_once_through_the_reactor(monkeypatch)

    assert readable.reads == [(b"frame", "ReadableSocket")]
    assert readable.prefixes_asked == 1


def test_an_error_escaping_a_handler_is_logged_not_raised():
    logged = []
    globalLogPublisher.addObserver(logged.append)
    try:

        def broken(frame):
            raise ValueError(f"cannot handle {frame}")

        result = reactor_calls.call_handler("the socket", broken, "a frame")
    finally:
        globalLogPublisher.removeObserver(logged.append)

    assert result is None
    failures = [e for e in logged if e.get("isError")]
    assert len(failures) == 1
    assert "cannot handle a frame" in str(failures[0]["failure"].value)
    assert "the socket" in failures[0]["why"]


def test_the_web_server_swaps_the_wrapper_and_freezes_what_start_up_made():
    """main() with Daphne's command line replaced by a reactor that stops at once: the
    swap is in place and, once the reactor ran, start-up's objects are frozen."""
    probe = """
import gc, sys
from voiceagents import event_loop, reactor_calls, web_server
event_loop.install()  # as main() does before Daphne is imported
import daphne.cli

def run_briefly():
    from twisted.internet import reactor
    reactor.callWhenRunning(reactor.stop)
    frozen_before = gc.get_freeze_count()
    reactor.run(installSignalHandlers=False)
    from twisted.internet import asyncioreactor
    print(asyncioreactor.callWithLogger is reactor_calls.call_handler,
          frozen_before, gc.get_freeze_count())

daphne.cli.CommandLineInterface.entrypoint = staticmethod(run_briefly)
sys.argv = ["web_server"]
web_server.main()
"""
    env = app_env({"DATABASE_URL": database_url_of_test_db()})
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    swapped, frozen_before, frozen_after = result.stdout.split()

    assert swapped == "True"
    assert int(frozen_before) == 0
    assert int(frozen_after) > 10_000
