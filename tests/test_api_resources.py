"""The API beyond calls: agents, tools and numbers (read with the read-calls scope, change
with the write scope), ending a call, and the OpenAPI schema with its docs."""

import orjson
import pytest
from django.utils import timezone

from calls.models import PhoneNumber
from tests.factories import make_agent, make_call, make_number, make_tool
from voiceagents.models import Agent, ApiToken, Tool
from voiceagents.versions import record_version

pytestmark = pytest.mark.django_db


def token(**scopes) -> str:
    api_token = ApiToken(name="crm", **scopes)
    raw = api_token.issue()
    api_token.save()
    return raw


@pytest.fixture
def writer(client):
    raw = token(can_write=True)

    def send(method: str, path: str, body=None):
        return getattr(client, method)(
            path,
            data=orjson.dumps(body) if body is not None else None,
            content_type="application/json",
            headers={"Authorization": f"Bearer {raw}"},
        )

    return send


def test_an_agent_is_created_with_its_tools_and_kept_as_version_1(writer):
    make_tool()

    response = writer(
        "post",
        "/api/agents/",
        {
            "name": "Bakery",
            "instructions": "Sell bread.",
            "voice": "cedar",
            "tools": ["lookup_order"],
        },
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["voice"], body["tools"], body["version"]) == (
        "Bakery",
        "cedar",
        ["lookup_order"],
        1,
    )
    agent = Agent.objects.get()
    assert agent.versions.get().note == "through the API (crm)"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bakery", "speed": 3}, "speed"),
        ({"name": "Bakery", "reasoning_effort": "high"}, "reasoning_effort"),
        ({"name": "Bakery", "tools": ["nope"]}, "tools"),
        ({"name": "Bakery", "voice": 5}, "voice"),
    ],
)
def test_a_bad_agent_is_refused_naming_the_field_and_nothing_is_saved(writer, body, field):
    response = writer("post", "/api/agents/", body)

    assert response.status_code == 400
    assert field in response.json()["fields"], response.json()
    assert not Agent.objects.exists()


def test_changing_an_agent_makes_a_version_with_what_changed(writer):
    agent = make_agent(name="Bakery", voice="marin")
    record_version(agent)

    response = writer("patch", f"/api/agents/{agent.pk}", {"voice": "cedar"})

    assert response.status_code == 200 and response.json()["voice"] == "cedar"
    assert agent.versions.first().changes == {"voice": ["marin", "cedar"]}


def test_deleting_an_agent_archives_it_unless_a_number_uses_it(writer):
    busy, idle = make_agent(name="Busy"), make_agent(name="Idle")
    make_number(busy)

    assert writer("delete", f"/api/agents/{busy.pk}").status_code == 409
    assert writer("delete", f"/api/agents/{idle.pk}").status_code == 204
    idle.refresh_from_db()
    assert idle.archived_at is not None and Agent.objects.filter(pk=idle.pk).exists()


def test_tools_and_numbers_are_checked_as_in_the_console(writer):
    agent = make_agent()
    bad_tool = writer(
        "post",
        "/api/tools/",
        {"name": "x", "description": "d", "kind": "http", "url": "https://a.example/x?api_key=1"},
    )
    bad_number = writer("post", "/api/numbers/", {"number": "555-0100", "agent": agent.pk})
    good_number = writer("post", "/api/numbers/", {"number": "+15550100000", "agent": agent.pk})

    assert bad_tool.status_code == 400 and "url" in bad_tool.json()["fields"]
    assert bad_number.status_code == 400 and "number" in bad_number.json()["fields"]
    assert good_number.status_code == 201
    assert PhoneNumber.objects.get().agent == agent


def test_a_tools_header_values_never_come_back(writer):
    from voiceagents.models import ToolHeader

    tool = make_tool()
    header = ToolHeader(tool=tool, name="Authorization")
    header.set_value("Bearer s3cret")
    header.save()

    body = writer("get", f"/api/tools/{tool.pk}").json()

    assert body["headers"] == ["Authorization"]
    assert "s3cret" not in orjson.dumps(body).decode()


def test_reading_needs_the_read_scope_and_writing_the_write_scope(client):
    make_tool()
    read_only = {"Authorization": f"Bearer {token()}"}

    assert client.get("/api/tools/", headers=read_only).status_code == 200
    refused = client.post(
        "/api/tools/", data="{}", content_type="application/json", headers=read_only
    )
    assert refused.status_code == 403 and "write scope" in refused.json()["error"]
    assert Tool.objects.count() == 1


def test_a_live_call_can_be_ended_through_the_api(writer):
    live = make_call("CA" + "1" * 32)
    over = make_call("CA" + "2" * 32, ended_at=timezone.now())

    assert writer("post", f"/api/calls/{live.sid}/hang-up").status_code == 202
    assert writer("post", f"/api/calls/{over.sid}/hang-up").status_code == 409


def test_the_openapi_schema_describes_every_operation_and_the_docs_load(client):
    schema = client.get("/api/schema").json()
    docs = client.get("/api/docs")

    paths = schema["paths"]
    assert {
        "/api/calls/",
        "/api/calls/{sid}/",
        "/api/agents/",
        "/api/tools/",
        "/api/numbers/",
    } <= set(paths)
    assert {"get", "post"} <= set(paths["/api/calls/"])
    assert schema["components"]["securitySchemes"]
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.content.decode()
    assert "cdn" not in docs.content.decode().lower()


def test_the_call_list_takes_the_consoles_filters(writer):
    bakery, florist = make_agent(name="Bakery"), make_agent(name="Florist")
    make_call(
        "CA" + "3" * 32, agent=bakery, direction="outbound-api", completion_reason="no_answer"
    )
    make_call("CA" + "4" * 32, agent=florist)

    by_agent = writer("get", f"/api/calls/?agent={florist.pk}").json()
    unanswered = writer("get", "/api/calls/?direction=outbound&completion_reason=no_answer").json()
    bad = writer("get", "/api/calls/?date_from=yesterday")

    assert [c["sid"] for c in by_agent["results"]] == ["CA" + "4" * 32]
    assert (unanswered["count"], unanswered["results"][0]["agent"]) == (1, "Bakery")
    assert bad.status_code == 400 and "date_from" in bad.json()["error"]
