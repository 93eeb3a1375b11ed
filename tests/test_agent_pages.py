"""The console's agent pages: list, create, edit, duplicate, archive; every change kept as
a version with who made it and what changed; restoring a version; calls recording the
version they ran with; and the home page."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from calls.models import Call
from tests.factories import (
    AGENT_NUMBER,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    client_for,
    make_agent,
    make_call,
    make_number,
    make_tool,
    signed_post,
    user_with,
    voice_params,
)
from voiceagents.models import Agent, AgentVersion
from voiceagents.versions import record_version

pytestmark = pytest.mark.django_db


@pytest.fixture
def manager():
    return user_with("voiceagents.view_agent", "voiceagents.add_agent", "voiceagents.change_agent")


@pytest.fixture
def console(manager):
    return client_for(manager)


def agent_form(**fields) -> dict:
    base = {
        "name": "Bakery",
        "model": "gpt-realtime-1.5",
        "voice": "marin",
        "speed": "1.0",
        "instructions": "You answer the phone for a bakery.",
        "greeting": "Hello, bakery!",
        "turn_detection": "server_vad",
        "interrupt_response": "on",
        "vad_threshold": "0.5",
        "vad_prefix_padding_ms": "300",
        "vad_silence_duration_ms": "500",
        "semantic_eagerness": "auto",
        "end_call_enabled": "on",
        "noise_reduction": "near_field",
        "input_transcription_model": "gpt-4o-transcribe",
        "record_calls": "on",
        "transcript_mode": "diarized",
        "outcome_schema": "{}",
    }
    return {k: v for k, v in (base | fields).items() if v is not None}


def test_creating_an_agent_from_the_form_keeps_version_1(console, manager):
    lookup = make_tool()

    response = console.post("/agents/new", agent_form(tools=[str(lookup.pk)]))

    agent = Agent.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/agents/{agent.pk}/"
    assert list(agent.tools.all()) == [lookup]
    assert agent.end_call_enabled
    (version,) = agent.versions.all()
    assert (version.number, version.created_by, version.note) == (1, manager, "created")
    assert version.settings["tools"] == ["lookup_order"]
    assert version.settings["instructions"] == "You answer the phone for a bakery."


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"instructions": ""}, "instructions", "This field is required."),
        ({"reasoning_effort": "high"}, "reasoning_effort", "is not a reasoning model"),
        (
            {"turn_detection": "semantic_vad", "idle_timeout_ms": "5000"},
            "idle_timeout_ms",
            "works with server VAD only",
        ),
        ({"vad_threshold": "1.5"}, "vad_threshold", "less than or equal to 1.0"),
        ({"outcome_schema": '{"type": "array"}'}, "outcome_schema", ""),
        ({"machine_detection": "leave_message"}, "voicemail_message", "Write the message"),
        ({"transfer_to": "the manager"}, "transfer_to", "Use an E.164 number"),
    ],
)
def test_bad_settings_are_refused_next_to_their_field(console, fields, field, message):
    response = console.post("/agents/new", agent_form(**fields))

    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field]), errors
    page = response.content.decode()
    assert f'id="field-{field}"' in page and 'class="error"' in page
    assert not Agent.objects.exists()


def test_editing_records_who_changed_what_and_an_unchanged_save_records_nothing(console):
    console.post("/agents/new", agent_form())
    agent = Agent.objects.get()

    console.post(f"/agents/{agent.pk}/edit", agent_form(voice="cedar", speed="1.2"))
    console.post(f"/agents/{agent.pk}/edit", agent_form(voice="cedar", speed="1.2"))

    latest = agent.versions.first()
    assert agent.versions.count() == 2
    assert latest.number == 2
    assert latest.changes == {"voice": ["marin", "cedar"], "speed": [1.0, 1.2]}
    page = console.get(f"/agents/{agent.pk}/").content.decode()
    assert "Version 2" in page and "marin → cedar" in page


def test_a_version_can_be_restored_as_a_new_version(console):
    console.post("/agents/new", agent_form())
    agent = Agent.objects.get()
    console.post(f"/agents/{agent.pk}/edit", agent_form(voice="cedar", greeting="Hi there"))

    response = console.post(f"/agents/{agent.pk}/versions/1/restore")

    agent.refresh_from_db()
    assert response.status_code == 302
    assert (agent.voice, agent.greeting) == ("marin", "Hello, bakery!")
    latest = agent.versions.first()
    assert (latest.number, latest.note) == (3, "restored version 1")
    assert latest.changes["voice"] == ["cedar", "marin"]


def test_duplicating_copies_settings_and_tools_under_a_new_name(console):
    lookup = make_tool()
    original = make_agent(name="Bakery", voice="cedar", tools=[lookup])

    response = console.post(f"/agents/{original.pk}/duplicate")

    copy = Agent.objects.exclude(pk=original.pk).get()
    assert response["Location"] == f"/agents/{copy.pk}/edit"
    assert (copy.name, copy.voice) == ("Bakery (copy)", "cedar")
    assert list(copy.tools.all()) == [lookup]
    assert copy.versions.get().note == "duplicated from Bakery"


def test_an_agent_that_answers_a_number_cannot_be_archived(console):
    agent = make_agent(name="Bakery")
    make_number(agent, AGENT_NUMBER)

    console.post(f"/agents/{agent.pk}/archive")

    agent.refresh_from_db()
    assert agent.archived_at is None
    page = console.get(f"/agents/{agent.pk}/").content.decode()
    assert "still answers +15550001111" in page


def test_an_archived_agent_leaves_the_list_and_can_come_back(console):
    agent = make_agent(name="Old promo")

    console.post(f"/agents/{agent.pk}/archive")
    active = console.get("/agents/").content.decode()
    archived = console.get("/agents/?archived=1").content.decode()
    console.post(f"/agents/{agent.pk}/archive")  # unarchive

    assert "Old promo</a>" not in active and "Old promo</a>" in archived
    agent.refresh_from_db()
    assert agent.archived_at is None


def test_the_list_shows_numbers_and_this_weeks_calls(console):
    agent = make_agent(name="Bakery")
    make_number(agent, AGENT_NUMBER)
    now = timezone.now()
    make_call("CA" + "1" * 32, agent=agent, duration_s=60.0, started_at=now)
    make_call("CA" + "2" * 32, agent=agent, duration_s=120.0, started_at=now)
    old = make_call("CA" + "3" * 32, agent=agent, duration_s=999.0)
    Call.objects.filter(pk=old.pk).update(started_at=now - timedelta(days=30))

    response = console.get("/agents/")

    (row,) = response.context["agents"]
    assert (row.calls_this_week, row.average_duration_s) == (2, 90.0)
    assert row.last_call_at is not None
    page = response.content.decode()
    assert AGENT_NUMBER in page and "90 s" in page


def test_admin_changes_are_versions_too(client):
    admin = user_with(superuser=True)
    client.force_login(admin)
    agent = make_agent(name="Bakery", instructions="Be brief.")
    record_version(agent)
    form = client.get(f"/admin/voiceagents/agent/{agent.pk}/change/").context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None and k != "tools"}
    data |= {"instructions": "Be brief and warm.", "outcome_schema": "{}"}
    data = {k: ("on" if v is True else v) for k, v in data.items() if v is not False}

    response = client.post(f"/admin/voiceagents/agent/{agent.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    latest = agent.versions.first()
    assert (latest.number, latest.created_by) == (2, admin)
    assert latest.changes == {"instructions": ["Be brief.", "Be brief and warm."]}


def test_a_call_records_the_agent_version_it_ran_with(client, settings, console):
    settings.PUBLIC_BASE_URL, settings.TWILIO_AUTH_TOKEN = PUBLIC_BASE_URL, AUTH_TOKEN
    console.post("/agents/new", agent_form())
    agent = Agent.objects.get()
    make_number(agent, AGENT_NUMBER)
    console.post(f"/agents/{agent.pk}/edit", agent_form(voice="cedar"))

    signed_post(client, "/twilio/voice", voice_params("CA" + "5" * 32))

    call = Call.objects.get()
    assert call.agent_version == AgentVersion.objects.get(agent=agent, number=2)


def test_an_archived_agents_number_declines_calls(client, settings):
    settings.PUBLIC_BASE_URL, settings.TWILIO_AUTH_TOKEN = PUBLIC_BASE_URL, AUTH_TOKEN
    agent = make_agent(name="Gone", archived_at=timezone.now())
    make_number(agent, AGENT_NUMBER)

    response = signed_post(client, "/twilio/voice", voice_params("CA" + "6" * 32))

    assert "<Hangup" in response.content.decode()
    assert not Call.objects.exists()


def test_a_viewer_sees_agents_but_no_edit_actions_and_cannot_post_them():
    agent = make_agent(name="Bakery")
    viewer = client_for(user_with("voiceagents.view_agent"))

    page = viewer.get(f"/agents/{agent.pk}/").content.decode()

    assert "Bakery" in page and "Edit" not in page and "Duplicate" not in page
    assert viewer.get(f"/agents/{agent.pk}/edit").status_code == 403
    assert viewer.post(f"/agents/{agent.pk}/archive").status_code == 403
    assert viewer.post(f"/agents/{agent.pk}/duplicate").status_code == 403
    assert viewer.get("/agents/new").status_code == 403


def test_home_shows_each_part_to_those_allowed():
    agent = make_agent(name="Bakery")
    make_call("CA" + "7" * 32, agent=agent, status=Call.Status.IN_PROGRESS)

    both = client_for(user_with("calls.view_call", "voiceagents.view_agent")).get("/")
    calls_only = client_for(user_with("calls.view_call")).get("/").content.decode()
    nothing = client_for(user_with()).get("/").content.decode()

    assert both.status_code == 200
    assert 'id="live-calls"' in both.content.decode() and "Bakery" in both.content.decode()
    assert 'id="live-calls"' in calls_only and "New agent" not in calls_only
    assert "no permission on calls or agents" in nothing
    assert Client().get("/")["Location"].startswith("/admin/login/")


AGENT_PAGES = {  # (method, path under /agents/<pk>, the permissions it needs)
    "list": ("get", "/agents/", {"voiceagents.view_agent"}),
    "detail": ("get", "/agents/{pk}/", {"voiceagents.view_agent"}),
    "create": ("get", "/agents/new", {"voiceagents.view_agent", "voiceagents.add_agent"}),
    "edit": ("get", "/agents/{pk}/edit", {"voiceagents.view_agent", "voiceagents.change_agent"}),
    "duplicate": (
        "post",
        "/agents/{pk}/duplicate",
        {"voiceagents.view_agent", "voiceagents.add_agent"},
    ),
    "archive": (
        "post",
        "/agents/{pk}/archive",
        {"voiceagents.view_agent", "voiceagents.change_agent"},
    ),
    "restore": (
        "post",
        "/agents/{pk}/versions/1/restore",
        {"voiceagents.view_agent", "voiceagents.change_agent"},
    ),
}


@pytest.mark.parametrize("page", sorted(AGENT_PAGES))
def test_each_agent_page_needs_every_one_of_its_permissions(page):
    agent = make_agent(name="Bakery")
    record_version(agent)
    method, path, needed = AGENT_PAGES[page]
    path = path.format(pk=agent.pk)
    send = lambda user: getattr(client_for(user), method)(path)  # noqa: E731

    for missing in needed:
        assert send(user_with(*(needed - {missing}))).status_code == 403, missing
    assert send(user_with(*needed)).status_code in (200, 302)
