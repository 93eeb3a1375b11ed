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

Run it exactly like Daphne: `python -m voiceagents.web_server -b HOST -p PORT
voiceagents.asgi:application` (scripts/run, the Dockerfile and the tests do). The swap
is one module attribute, `daphne.server.HTTPFactory`, which Daphne 4 reads when its
server starts; tests/test_request_limits.py fails if a Daphne upgrade stops using it.
"""

import logging

import daphne.server
from daphne.cli import CommandLineInterface
from daphne.http_protocol import HTTPFactory, WebRequest
from twisted.internet import reactor

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


def main() -> None:
    daphne.server.HTTPFactory = BoundedHTTPFactory
    CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
