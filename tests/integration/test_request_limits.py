"""Request bodies are bounded in the web process itself (voiceagents/web_server.py): a
body over MAX_REQUEST_BODY_BYTES is refused with 413 as it arrives, by Content-Length or
by the chunk that crosses the limit, and the process's peak memory (VmHWM) does not grow
with the body. Plain Daphne buffers all of it: 300 MB took it from 87 MB to 1 GB."""

import socket
import threading
from pathlib import Path

import httpx
import pytest

from tests.live import ROOT, DaphneProcess, database_url_of_test_db

LIMIT = 1024 * 1024
MB = 1024 * 1024


@pytest.fixture(scope="module")
def app(django_db_setup, django_db_blocker):
    env = {"DATABASE_URL": database_url_of_test_db(), "MAX_REQUEST_BODY_BYTES": str(LIMIT)}
    server = DaphneProcess(env, ROOT / "var" / "test-request-limits.log")
    yield server
    server.stop()


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc status")


def post_raw(port: int, head: bytes, body_chunks) -> bytes:
    """Sends `head` then the body from another thread, and returns what the server
    answered; the sender stops quietly when the server closes the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send() -> None:
        try:
            sock.sendall(head)
            for chunk in body_chunks:
                sock.sendall(chunk)
        except OSError:
            pass

    sender = threading.Thread(target=send)
    sender.start()
    answer = b""
    try:
        while data := sock.recv(65536):
            answer += data
    except OSError:
        pass
    sender.join(30)
    sock.close()
    return answer


def test_a_body_over_the_limit_by_content_length_is_refused_before_it_is_stored(app):
    before = peak_rss_mb(app.pid)
    size = 300 * MB
    chunk = b"x" * MB
    head = (
        b"POST /twilio/voice HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: %d\r\n\r\n" % size
    )

    answer = post_raw(app.port, head, (chunk for _ in range(size // MB)))

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"the limit is 1048576 bytes" in answer
    growth = peak_rss_mb(app.pid) - before
    print(f"peak RSS {before:.0f} MB before, +{growth:.1f} MB after a 300 MB POST")
    assert growth < 20, f"peak RSS grew {growth:.0f} MB"
    assert httpx.get(app.base_url + "/healthz").status_code == 200


def test_a_chunked_body_is_refused_at_the_chunk_that_crosses_the_limit(app):
    before = peak_rss_mb(app.pid)
    chunk = b"x" * (256 * 1024)
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    head = (
        b"POST /api/calls HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )

    answer = post_raw(app.port, head, (framed for _ in range(200)))  # 50 MB

    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    growth = peak_rss_mb(app.pid) - before
    print(f"peak RSS +{growth:.1f} MB after a 50 MB chunked POST")
    assert growth < 20, f"peak RSS grew {growth:.0f} MB"


def test_a_body_under_the_limit_reaches_the_app(app):
    body = {"CallSid": "CA" + "0" * 32, "padding": "y" * (LIMIT - 1000)}

    response = httpx.post(app.base_url + "/twilio/voice", data=body)

    assert response.status_code == 403  # the app ran: the (missing) signature is refused


def test_a_body_one_byte_over_the_limit_is_refused(app):
    response = httpx.post(
        app.base_url + "/twilio/voice",
        content=b"a" * (LIMIT + 1),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )

    assert response.status_code == 413
