"""The console's tool pages: parameters as rows (the JSON Schema made from them) or as
JSON for experts, write-only headers, and the "test this tool" button."""

import orjson
import pytest
from django.test import Client

from tests.factories import client_for, make_tool, user_with
from tests.test_tool_requests import ReplyServer
from voiceagents import signing
from voiceagents.models import Tool, ToolHeader

pytestmark = pytest.mark.django_db


def console_with(*perms) -> Client:
    return client_for(user_with(*perms))


@pytest.fixture
def console():
    return console_with("voiceagents.view_tool", "voiceagents.add_tool", "voiceagents.change_tool")


def tool_post(rows=(), headers=(), **fields) -> dict:
    data = {
        "name": "lookup_order",
        "kind": "http",
        "description": "Look up an order by its number.",
        "url": "http://127.0.0.1:9/orders",
        "method": "POST",
        "timeout_s": "",
        "transfer_to": "",
        "schema_json": "",
        "param-TOTAL_FORMS": str(max(3, len(rows))),
        "param-INITIAL_FORMS": "0",
        "headers-TOTAL_FORMS": str(len(headers) or 1),
        "headers-INITIAL_FORMS": "0",
    }
    for i in range(max(3, len(rows))):
        data[f"param-{i}-type"] = "string"  # what the browser posts for an untouched row
    for i, row in enumerate(rows):
        for key, value in row.items():
            if value is not False:
                data[f"param-{i}-{key}"] = "on" if value is True else value
    for i, (name, value) in enumerate(headers):
        data[f"headers-{i}-name"], data[f"headers-{i}-value"] = name, value
    return data | fields


def test_parameters_as_rows_make_the_json_schema(console):
    rows = [
        {"name": "order", "type": "string", "description": "The order number", "required": True},
        {"name": "include_items", "type": "boolean", "description": "", "required": False},
    ]

    response = console.post("/tools/new", tool_post(rows, headers=[("X-Api-Key", "k-9")]))

    tool = Tool.objects.get()
    assert response.status_code == 302, response.context and response.context["form"].errors
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "order": {"type": "string", "description": "The order number"},
            "include_items": {"type": "boolean"},
        },
        "required": ["order"],
    }
    assert tool.headers.get().value() == "k-9"
    page = console.get(f"/tools/{tool.pk}/").content.decode()
    assert 'value="order"' in page and "k-9" not in page  # rows back, the secret not


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"schema_json": "{not json"}, "Not valid JSON"),
        ({"schema_json": '{"type": "array"}'}, "The schema must be an object with"),
        (
            {"schema_json": '{"type": "object", "properties": {"a": {"type": "nope"}}}'},
            "Not a valid JSON Schema",
        ),
        ({"url": "http://user:pw@127.0.0.1:9/x"}, "Put credentials in a header"),
        ({"name": "bad name"}, "Use 1-64 letters"),
    ],
)
def test_bad_tools_are_refused_saying_why(console, fields, message):
    response = console.post("/tools/new", tool_post(**fields))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Tool.objects.exists()


def test_a_schema_rows_cannot_say_stays_json(console):
    schema = {"type": "object", "properties": {"size": {"type": "string", "enum": ["S", "M"]}}}
    tool = make_tool(url="http://127.0.0.1:9/x", parameters=schema)

    page = console.get(f"/tools/{tool.pk}/").content.decode()

    assert "&quot;enum&quot;" in page  # shown in the expert field, not lost in rows


def test_the_test_button_sends_the_request_a_call_would_send():
    server = ReplyServer("ok")
    try:
        tool = make_tool(url=server.url)
        header = ToolHeader(tool=tool, name="Authorization")
        header.set_value("Bearer t-1")
        header.save()
        console = console_with("voiceagents.view_tool", "voiceagents.change_tool")

        page = console.post(f"/tools/{tool.pk}/test", {"arguments": '{"order": "A42"}'})

        assert "&quot;status&quot;: &quot;shipped&quot;" in page.content.decode()
        ((headers, body, _, _),) = server.requests
        assert headers["Authorization"] == "Bearer t-1"
        assert orjson.loads(body)["arguments"] == {"order": "A42"}
        assert signing.verify(
            tool.signing_secret,
            body,
            headers["X-Voiceagents-Timestamp"],
            headers["X-Voiceagents-Signature"],
        )
    finally:
        server.close()


def test_arguments_that_do_not_fit_are_not_sent(console):
    tool = make_tool(url="http://127.0.0.1:9/orders")

    page = console.post(f"/tools/{tool.pk}/test", {"arguments": "{}"}).content.decode()

    assert "Not sent: the arguments do not fit" in page and "order" in page


def test_a_viewer_sees_tools_but_cannot_change_or_test_them():
    tool = make_tool()
    viewer = console_with("voiceagents.view_tool")

    assert "lookup_order" in viewer.get("/tools/").content.decode()
    assert viewer.get(f"/tools/{tool.pk}/").status_code == 403
    assert viewer.post(f"/tools/{tool.pk}/test", {"arguments": "{}"}).status_code == 403
    assert viewer.get("/tools/new").status_code == 403


def test_editing_a_tools_rows_changes_its_schema(console):
    tool = make_tool(url="http://127.0.0.1:9/orders")  # order: string, required
    rows = [{"name": "order", "type": "integer", "description": "Its number", "required": True}]

    response = console.post(f"/tools/{tool.pk}/", tool_post(rows))

    assert response.status_code == 302
    tool.refresh_from_db()
    assert tool.parameters == {
        "type": "object",
        "properties": {"order": {"type": "integer", "description": "Its number"}},
        "required": ["order"],
    }
