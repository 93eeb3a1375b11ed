"""An agent's HTTP tool through the real app: the model's function call is POSTed to a
small HTTP server run by the test, and its reply goes back to OpenAI as the
function_call_output; a failing tool gives the model an error to talk about, and the
call goes on."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from channels.db import database_sync_to_async

from tests.fakes.realtime_server import Reply
from tests.integration.conftest import load_call, script, spoken, wait_for_end, wait_for_turns
from tests.live import free_port
from voiceagents import signing
from voiceagents.models import Tool, ToolHeader

pytestmark = pytest.mark.django_db(transaction=True)

GREETING = "Hello, you have reached the bakery."
QUESTION = "Where is my order A42?"
ANSWER = "Your order ships tomorrow."
TOOL_REPLY = b'{"order": "A42", "status": "packed", "ships": "tomorrow"}'


class ToolServer:
    """A loopback HTTP endpoint answering every POST with a fixed status and body; with a
    `gate`, only once the test sets it (a slow tool)."""

    def __init__(
        self, status: int = 200, body: bytes = TOOL_REPLY, gate: threading.Event | None = None
    ) -> None:
        self.requests: list[tuple[str, dict, dict]] = []
        self.raw_bodies: list[bytes] = []
        self.requested = threading.Event()
        self.gate = gate
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                owner.raw_bodies.append(raw)
                owner.requests.append((self.path, dict(self.headers), orjson.loads(raw)))
                owner.requested.set()
                if owner.gate is not None:
                    owner.gate.wait(10)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders/lookup"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tool_server():
    server = ToolServer()
    yield server
    server.close()


@database_sync_to_async
def add_lookup_tool(agent, url: str, headers: dict[str, str] | None = None) -> Tool:
    tool = Tool.objects.create(
        name="lookup_order",
        description="Look up an order by its number.",
        kind=Tool.Kind.HTTP,
        url=url,
        parameters={"type": "object", "properties": {"order": {"type": "string"}}},
    )
    for name, value in (headers or {}).items():
        header = ToolHeader(tool=tool, name=name)
        header.set_value(value)
        header.save()
    agent.tools.add(tool)
    return tool


def tool_script():
    return script(
        replies=[
            Reply(text=GREETING, audio_ms=300),
            Reply(function_call=("lookup_order", {"order": "A42"})),
            Reply(text=ANSWER, audio_ms=300),
        ],
        caller_transcripts=[QUESTION],
    )


async def call_using_the_tool(realtime, caller_for):
    """Greeting, the caller's question, the tool call and the answer after it."""
    first = len(realtime.sessions)
    realtime.script_for_next_connection = tool_script()
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await call.wait_for(lambda: len(call.heard_audio) >= 300 * 8, timeout=10)
    await call.speak_and_wait(400)
    turns = await wait_for_turns(call.call_sid, 4)
    session = realtime.sessions[first]
    (function_call,) = session.sent_events("response.function_call_arguments.done")
    output_at = [
        index
        for index, event in enumerate(session.received)
        if event["type"] == "conversation.item.create"
        and event["item"]["type"] == "function_call_output"
    ]
    assert len(output_at) == 1
    output = session.received[output_at[0]]["item"]
    assert output["call_id"] == function_call["call_id"]
    # The model was asked to go on once it had the output.
    assert "response.create" in session.received_types()[output_at[0] + 1 :]
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")
    _, turns = await load_call(call.call_sid)
    return call, turns, output["output"]


async def test_http_tool_round_trip(agent, realtime, caller_for, tool_server):
    tool = await add_lookup_tool(agent, tool_server.url, {"Authorization": "Bearer t-42"})

    call, turns, output = await call_using_the_tool(realtime, caller_for)

    ((path, headers, body),) = tool_server.requests
    assert path == "/orders/lookup"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer t-42"  # stored encrypted, sent decrypted
    (raw,) = tool_server.raw_bodies
    assert signing.verify(
        tool.signing_secret,
        raw,
        headers["X-Voiceagents-Timestamp"],
        headers["X-Voiceagents-Signature"],
    )
    assert body == {
        "tool": "lookup_order",
        "call_sid": call.call_sid,
        "arguments": {"order": "A42"},
    }
    assert output == TOOL_REPLY.decode()
    stored, _ = await load_call(call.call_sid)
    assert (stored.tool_calls, stored.tool_failures) == (1, 0)
    assert spoken(turns) == [
        ("agent", GREETING),
        ("caller", QUESTION),
        ("tool", 'lookup_order({"order":"A42"})'),
        ("agent", ANSWER),
    ]


@pytest.mark.parametrize("failure", ["http-500", "connection-refused"])
async def test_failing_tool_gives_the_model_an_error_and_the_call_goes_on(
    agent, realtime, caller_for, failure
):
    if failure == "http-500":
        server = ToolServer(status=500, body=b"<h1>Internal Server Error</h1>")
        url, expected = server.url, "tool answered HTTP 500"
    else:
        server = None
        url, expected = f"http://127.0.0.1:{free_port()}/orders", "tool unavailable: ConnectError"
    await add_lookup_tool(agent, url)
    try:
        call, turns, output = await call_using_the_tool(realtime, caller_for)
    finally:
        if server is not None:
            server.close()

    assert orjson.loads(output) == {"error": expected}
    stored, _ = await load_call(call.call_sid)
    assert (stored.tool_calls, stored.tool_failures) == (1, 1)  # for the analytics
    if server is not None:
        assert len(server.requests) == 1
    assert [t.speaker for t in turns] == ["agent", "caller", "tool", "agent"]
    assert turns[-1].text == ANSWER
