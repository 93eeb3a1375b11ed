"""An agent's HTTP tool request: the tool's stored headers and an HMAC signature the
receiver can check; one deadline for the whole reply and a cap on its size, past either
of which the model gets an error output (the call goes on)."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

import httpx
import orjson
import pytest

from voiceagents import signing
from voiceagents.tools import run_http_tool


class ReplyServer:
    """Answers every POST the way `mode` says: "ok", "trickle" (a byte every 0.3 s, for
    ever) or "huge" (10 MB)."""

    def __init__(self, mode: str) -> None:
        stop = self.stop = threading.Event()
        hosts = self.hosts = []  # the Host header of every request
        requests = self.requests = []  # (headers, body) of every request

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.do_POST()

            def do_PUT(self) -> None:
                self.do_POST()

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hosts.append(self.headers["Host"])
                requests.append((self.headers, body, self.command, self.path))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if mode == "ok":
                    body = b'{"status": "shipped"}'
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_header("Content-Length", str(10 * 2**20))
                self.end_headers()
                try:
                    if mode == "huge":
                        for _ in range(160):
                            self.wfile.write(b"x" * 65536)
                    while mode == "trickle" and not stop.wait(0.3):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    pass  # the client gave up, as it should

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/tool"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def reply_server(request):
    server = ReplyServer(request.param)
    yield server
    server.close()


async def call_tool(url: str, **options) -> tuple[dict | str, float]:
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=5) as client:
        output = await run_http_tool(client, url, "lookup", '{"order": 7}', "CA1", **options)
    elapsed = time.monotonic() - began
    try:
        return orjson.loads(output), elapsed
    except orjson.JSONDecodeError:
        return output, elapsed


@pytest.mark.parametrize("reply_server", ["trickle"], indirect=True)
async def test_a_trickling_reply_is_cut_off_at_the_deadline(reply_server, settings):
    settings.HTTP_TOOL_TIMEOUT_S = 1.0
    output, elapsed = await call_tool(reply_server.url)
    assert output == {"error": "tool did not answer within 1 s"}
    assert elapsed < 2.5  # httpx's per-read timeout (5 s here) would never have fired


@pytest.mark.parametrize("reply_server", ["huge"], indirect=True)
async def test_a_reply_over_the_size_cap_is_refused(reply_server, settings):
    settings.HTTP_TOOL_MAX_REPLY_BYTES = 100_000
    output, _ = await call_tool(reply_server.url)
    assert output == {"error": "tool reply larger than 100000 bytes"}


@pytest.mark.parametrize("reply_server", ["ok"], indirect=True)
async def test_a_normal_reply_is_handed_back(reply_server):
    output, _ = await call_tool(reply_server.url)
    assert output == {"status": "shipped"}


@pytest.mark.parametrize("reply_server", ["ok"], indirect=True)
async def test_the_request_carries_the_stored_headers_and_a_signature_the_receiver_verifies(
    reply_server,
):
    secret = signing.new_secret()
    output, _ = await call_tool(
        reply_server.url,
        headers=(("Authorization", "Bearer s3cret"), ("X-Api-Key", "k-1")),
        signing_secret=secret,
    )

    assert output == {"status": "shipped"}
    ((headers, body, _, _),) = reply_server.requests
    assert headers["Authorization"] == "Bearer s3cret"
    assert headers["X-Api-Key"] == "k-1"
    assert headers["Content-Type"] == "application/json"
    assert orjson.loads(body) == {"tool": "lookup", "call_sid": "CA1", "arguments": {"order": 7}}
    timestamp, signature = headers["X-Voiceagents-Timestamp"], headers["X-Voiceagents-Signature"]
    assert signing.verify(secret, body, timestamp, signature)
    assert not signing.verify("whsec_other", body, timestamp, signature)
    assert not signing.verify(secret, body + b" ", timestamp, signature)


@pytest.mark.parametrize("reply_server", ["ok"], indirect=True)
async def test_a_stored_header_cannot_replace_the_apps_own(reply_server):
    await call_tool(
        reply_server.url,
        headers=(("Content-Type", "text/plain"), ("X-Voiceagents-Signature", "v1=forged")),
        signing_secret="whsec_real",
    )

    ((headers, body, _, _),) = reply_server.requests
    assert headers.get_all("Content-Type") == ["application/json"]
    assert headers.get_all("X-Voiceagents-Signature") == [
        signing.sign("whsec_real", int(headers["X-Voiceagents-Timestamp"]), body)
    ]


@pytest.mark.parametrize("reply_server", ["ok"], indirect=True)
async def test_a_get_tool_sends_the_arguments_as_a_signed_query(reply_server):
    secret = signing.new_secret()

    output, _ = await call_tool(reply_server.url, signing_secret=secret, method="GET")

    assert output == {"status": "shipped"}
    ((headers, body, method, path),) = reply_server.requests
    query = path.split("?", 1)[1].encode()
    assert (method, body) == ("GET", b"")
    assert parse_qs(query.decode()) == {"tool": ["lookup"], "call_sid": ["CA1"], "order": ["7"]}
    assert signing.verify(
        secret, query, headers["X-Voiceagents-Timestamp"], headers["X-Voiceagents-Signature"]
    )


@pytest.mark.parametrize("reply_server", ["ok"], indirect=True)
async def test_put_sends_the_json_body(reply_server):
    await call_tool(reply_server.url, method="PUT")

    ((_, body, method, _),) = reply_server.requests
    assert method == "PUT" and orjson.loads(body)["arguments"] == {"order": 7}


@pytest.mark.parametrize("reply_server", ["trickle"], indirect=True)
async def test_a_tools_own_timeout_replaces_the_default(reply_server, settings):
    settings.HTTP_TOOL_TIMEOUT_S = 30.0

    output, elapsed = await call_tool(reply_server.url, timeout_s=1.0)

    assert output == {"error": "tool did not answer within 1 s"}
    assert elapsed < 2.5
