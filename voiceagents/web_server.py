"""Daphne, with every HTTP request body bounded before it is buffered.

Daphne (through Twisted) reads a whole request body, to memory or a temporary file,
before the application runs, and then queues all of it to the application at once: a
300 MB POST to any URL took the web process from 87 MB to 1 GB. No Daphne option bounds
it and an ASGI middleware runs too late, so this module swaps Daphne's request class for
a subclass that refuses a body over MAX_REQUEST_BODY_BYTES as it arrives: by its
Content-Length before a byte is stored, or, for a chunked body, at the chunk that
crosses the limit. The client gets 413 and the connection closes; the bytes it is still
sending are read and dropped (so it can read the 413 rather than a reset) for at most
REFUSED_BODY_LINGER_S.

With WEB_PROCESSES above one (the default when Redis is configured: one per core), it
binds the port itself and runs that many Daphne processes on it (`supervise`).

Run it exactly like Daphne: `python -m voiceagents.web_server -b HOST -p PORT
voiceagents.asgi:application` (scripts/run, the Dockerfile and the tests do). The swap
is one module attribute, `daphne.server.HTTPFactory`, which Daphne 4 reads when its
server starts; tests/integration/test_request_limits.py fails if a Daphne upgrade stops using it.
Its WebSocket factory is swapped the same way, for one without autobahn's per-frame debug
formatting that reads whole frames itself (voiceagents/websocket_protocol.py), and its
server class for one that offers that protocol's shortcut to the application
(voiceagents/daphne_server.py). main()
also has Twisted's reactor call socket handlers without a log context per read
(voiceagents/reactor_calls.py), and freezes start-up's objects out of the garbage
collector once the reactor runs.
"""

import argparse
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time

# Neither imports Twisted's reactor or daphne.server: importing this module chooses no
# event loop and installs no reactor (main() does, in that order).
from daphne.http_protocol import HTTPFactory, WebRequest

from voiceagents import event_loop, reactor_calls
from voiceagents.websocket_protocol import LeanWebSocketFactory

logger = logging.getLogger(__name__)

REFUSED_BODY_LINGER_S = 5.0


def body_limit() -> int:
    from django.conf import settings  # configured by the time a request arrives

    return settings.MAX_REQUEST_BODY_BYTES


class _Discard:
    """Where the rest of a refused body goes."""

    closed = False

    def write(self, data: bytes) -> None:
        pass

    def seek(self, *args) -> int:
        return 0

    def read(self, *args) -> bytes:
        return b""

    def close(self) -> None:
        self.closed = True


class BoundedRequest(WebRequest):
    refused = False
    body_bytes = 0

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > body_limit():
            self.refuse(f"a body of {length} bytes")
        else:
            super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self.body_bytes += len(data)
        if self.body_bytes > body_limit():
            self.content.close()
            self.refuse(f"a chunked body past {body_limit()} bytes")
            return
        super().handleContentChunk(data)

    def refuse(self, what: str) -> None:
        """Answer 413 at once, straight on the transport (the request is not complete,
        so Twisted's response machinery is not ready), then stop the connection."""
        self.refused = True
        self.content = _Discard()
        limit = body_limit()
        from twisted.internet import reactor  # Daphne's, installed by then

        logger.warning("Refused %s (MAX_REQUEST_BODY_BYTES=%d)", what, limit)
        body = f"Request body too large: the limit is {limit} bytes.\n".encode()
        self.channel.transport.write(
            b"HTTP/1.1 413 Content Too Large\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.channel.persistent = False
        self.linger = reactor.callLater(
            REFUSED_BODY_LINGER_S, self.channel.transport.abortConnection
        )

    def process(self):
        if not self.refused:
            return super().process()
        self.channel.transport.loseConnection()  # the whole body was read and dropped

    def connectionLost(self, reason) -> None:
        linger = getattr(self, "linger", None)
        if linger is not None and linger.active():
            linger.cancel()
        super().connectionLost(reason)


class BoundedHTTPFactory(HTTPFactory):
    def buildProtocol(self, addr):
        protocol = super().buildProtocol(addr)
        protocol.requestFactory = BoundedRequest
        return protocol


# --- Several processes on one port ----------------------------------------------------
SYSTEMD_FIRST_FD = 3  # where Twisted's "systemd:" endpoint finds an inherited socket
CHILD_MARK = "VOICEAGENTS_WEB_CHILD"


def web_processes() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceagents.settings")
    from django.conf import settings

    return settings.WEB_PROCESSES  # the settings refuse several without Redis


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` sockets on one port (SO_REUSEPORT): the kernel spreads new connections
    over them by hashing each connection, where one shared socket would let whichever
    process wakes first take a whole burst."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets = []
    for _ in range(count):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        port = sock.getsockname()[1]  # port 0: the others join the one the first got
        sock.listen(1024)
        sockets.append(sock)
    return sockets


def supervise(processes: int, argv: list[str]) -> int:
    """Bind the port (one SO_REUSEPORT socket per process) and start `processes` Daphne
    processes, each accepting on its socket: the kernel hands each new connection to
    one of them, so a machine's calls spread over its cores. Each child gets its socket
    on fd 3, as systemd would pass it. When one child exits, the others are stopped and
    its status returned: restarting is the job of whatever runs this (Docker, systemd)."""
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("-b", "--bind", dest="host", default="127.0.0.1")
    where.add_argument("-p", "--port", type=int, default=8000)
    known, rest = where.parse_known_args(argv)
    sockets = listening_sockets(known.host, known.port, processes)
    domain = "INET6" if sockets[0].family == socket.AF_INET6 else "INET"
    command = [
        sys.executable,
        "-m",
        "voiceagents.web_server",
        "-e",
        f"systemd:domain={domain}:index=0",
        *rest,
    ]

    def give(sock: socket.socket):
        def inherit_socket() -> None:  # in the child, before exec
            os.dup2(sock.fileno(), SYSTEMD_FIRST_FD)

        return inherit_socket

    children = [
        subprocess.Popen(
            command,
            preexec_fn=give(sock),
            pass_fds=(sock.fileno(), SYSTEMD_FIRST_FD),
            env={**os.environ, CHILD_MARK: "1"},
        )
        for sock in sockets
    ]
    logger.warning(
        "Web server: %d processes on %s:%d (pids %s)",
        processes,
        known.host,
        known.port,
        " ".join(str(c.pid) for c in children),
    )

    def stop(signum, frame) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        for child in children:
            if (status := child.poll()) is not None:
                stop(signal.SIGTERM, None)
                for other in children:
                    other.wait()
                return status
        time.sleep(0.2)


def install_protocols() -> None:
    """Daphne builds its HTTP and WebSocket factories from these module attributes when
    its server runs, and its command line its server from `server_class`."""
    import daphne.cli
    import daphne.server

    from voiceagents.daphne_server import ShortcutServer

    daphne.server.HTTPFactory = BoundedHTTPFactory
    daphne.server.WebSocketFactory = LeanWebSocketFactory
    daphne.cli.CommandLineInterface.server_class = ShortcutServer


def freeze_start_up_objects() -> None:
    """Move what start-up made (Django, Twisted, the app's modules: about 150,000 objects
    that live as long as the process) out of the garbage collector's sight. Each full
    collection walked all of them: 65 ms, twice in a 50-call bench step. Frozen, the
    collector sees only what calls made."""
    gc.freeze()


def main() -> None:
    # The event loop first: importing daphne.server makes Daphne's loop (and installs
    # Twisted's asyncio reactor on it).
    event_loop.install()
    install_protocols()
    from daphne.cli import CommandLineInterface

    if os.environ.pop(CHILD_MARK, None):
        # Started by supervise() with the socket on fd 3. Twisted's "systemd:" endpoint
        # reads LISTEN_FDS once, when imported, and another reader may take it first;
        # so it is told directly which descriptor it inherited.
        from twisted.internet.endpoints import _SystemdParser
        from twisted.python.systemd import ListenFDs

        _SystemdParser._sddaemon = ListenFDs([SYSTEMD_FIRST_FD])
    elif (processes := web_processes()) > 1:
        sys.exit(supervise(processes, sys.argv[1:]))
    # Only in a process that serves (the supervisor above runs no reactor).
    reactor_calls.install()
    from twisted.internet import reactor

    # Once running: Daphne's command line has imported the application by then.
    reactor.callWhenRunning(freeze_start_up_objects)
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
