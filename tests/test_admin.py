"""The staff dashboard (Django admin) and the model validation it relies on."""

import hashlib
import re

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from calls.models import Call, PhoneNumber
from tests.factories import make_agent, make_call, make_number, make_tool, make_turn
from voiceagents.models import Agent, ApiToken, Tool, Voice

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("admin", "admin@example.com", "pw"))
    return client


@pytest.fixture
def rows():
    """One row of each model, so changelists render real lines."""
    tool = make_tool()
    agent = make_agent(name="Reception", tools=[tool])
    make_number(agent, "+15550001111", label="Main line")
    call = make_call(agent=agent)
    make_turn(call, 0, "Hello!")
    token = ApiToken(name="crm")
    token.issue()
    token.save()
    return {"agent": agent, "tool": tool, "call": call, "token": token}


MODEL_PAGES = [
    "voiceagents/agent",
    "voiceagents/tool",
    "calls/phonenumber",
    "calls/call",
    "voiceagents/apitoken",
]


@pytest.mark.parametrize("model", MODEL_PAGES)
def test_changelist_renders(staff_client, rows, model):
    response = staff_client.get(f"/admin/{model}/")

    assert response.status_code == 200
    assert response.context["cl"].result_count == 1


@pytest.mark.parametrize("model", [m for m in MODEL_PAGES if m != "calls/call"])
def test_add_page_renders(staff_client, rows, model):
    response = staff_client.get(f"/admin/{model}/add/")

    assert response.status_code == 200
    assert response.context["adminform"].form is not None


def test_calls_cannot_be_added_by_hand(staff_client, rows):
    assert staff_client.get("/admin/calls/call/add/").status_code == 403
    changelist = staff_client.get("/admin/calls/call/")
    assert changelist.context["has_add_permission"] is False


def test_admin_index_lists_the_models(staff_client):
    response = staff_client.get("/admin/")

    assert response.status_code == 200
    content = response.content.decode()
    for model in MODEL_PAGES:
        assert f"/admin/{model}/" in content


def test_view_site_leads_to_the_console(staff_client):
    content = staff_client.get("/admin/").content.decode()

    assert '<a href="/">View site</a>' in content
    assert staff_client.get("/").status_code == 200


def form_defaults(response) -> dict:
    """The POST data a browser sends when nothing on an admin add form is changed."""
    form = response.context["adminform"].form
    data = {}
    for name in form.fields:
        value = form[name].value()
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                data[name] = "on"
            continue
        data[name] = value if isinstance(value, list) else str(value)
    return data


def test_add_agent_with_defaults(staff_client):
    page = staff_client.get("/admin/voiceagents/agent/add/")
    data = form_defaults(page) | {"name": "Helpdesk"}

    response = staff_client.post("/admin/voiceagents/agent/add/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    agent = Agent.objects.get(name="Helpdesk")
    assert agent.model == "gpt-realtime-1.5"
    assert agent.voice == "marin"
    assert agent.turn_detection == "server_vad"
    assert agent.interrupt_response is True
    assert agent.noise_reduction == "near_field"
    assert agent.input_transcription_model == "gpt-4o-transcribe"
    assert list(agent.tools.all()) == []


def test_add_agent_refuses_out_of_range_values(staff_client):
    page = staff_client.get("/admin/voiceagents/agent/add/")
    data = form_defaults(page) | {"name": "Bad", "speed": "3", "vad_threshold": "1.5"}

    response = staff_client.post("/admin/voiceagents/agent/add/", data)

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"speed", "vad_threshold"}
    assert not Agent.objects.exists()


def test_voice_choices_recommend_marin_and_cedar_first(staff_client):
    page = staff_client.get("/admin/voiceagents/agent/add/")
    choices = [value for value, _ in page.context["adminform"].form.fields["voice"].choices]

    assert choices[:2] == ["marin", "cedar"]
    assert set(choices) == {
        "marin",
        "cedar",
        "alloy",
        "ash",
        "ballad",
        "coral",
        "echo",
        "sage",
        "shimmer",
        "verse",
    }
    assert len(choices) == 10
    assert choices == list(Voice.values)


def test_add_api_token_shows_the_secret_once_and_stores_its_hash(staff_client):
    response = staff_client.post(
        "/admin/voiceagents/apitoken/add/", {"name": "crm", "is_active": "on"}, follow=True
    )

    assert response.status_code == 200
    token = ApiToken.objects.get(name="crm")
    shown = [str(m) for m in response.context["messages"]]
    raws = [m for text in shown for m in re.findall(r"va_[\w-]{20,}", text)]
    assert len(raws) == 1
    raw = raws[0]
    assert raw in response.content.decode()
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert token.prefix == raw[:10]
    assert ApiToken.find_active(raw) == token
    for value in ApiToken.objects.filter(pk=token.pk).values().get().values():
        assert raw not in str(value)

    # Not shown again: neither on the next page nor on the token's own page.
    again = staff_client.get(f"/admin/voiceagents/apitoken/{token.pk}/change/")
    assert raw not in again.content.decode()
    assert token.prefix in again.content.decode()


def test_the_new_tokens_secret_never_travels_in_a_cookie(staff_client):
    """Django's cookie message storage is signed but readable: the "copy it now" message
    lives in the server-side session instead."""
    response = staff_client.post(
        "/admin/voiceagents/apitoken/add/", {"name": "crm", "can_read_calls": "on"}
    )

    assert response.status_code == 302
    assert "messages" not in response.cookies
    shown = staff_client.get(response["Location"]).content.decode()
    (raw,) = re.findall(r"va_[\w-]{20,}", shown)
    assert all(raw not in morsel.value for morsel in staff_client.cookies.values())


def test_editing_an_api_token_keeps_its_secret(staff_client, rows):
    token = rows["token"]
    old_hash = token.token_hash

    response = staff_client.post(
        f"/admin/voiceagents/apitoken/{token.pk}/change/", {"name": "renamed"}, follow=True
    )

    assert response.status_code == 200
    token.refresh_from_db()
    assert token.name == "renamed"
    assert token.is_active is False
    assert token.token_hash == old_hash
    shown = " ".join(str(m) for m in response.context["messages"])
    assert "renamed" in shown
    assert not re.search(r"va_[\w-]{20,}", shown)  # the prefix alone, no new secret


def test_call_change_page_shows_turns_inline(staff_client, rows):
    call = rows["call"]
    make_turn(call, 1500, "I would like to book a table", speaker="caller")

    response = staff_client.get(f"/admin/calls/call/{call.pk}/change/")

    assert response.status_code == 200
    content = response.content.decode()
    assert "Hello!" in content
    assert "I would like to book a table" in content
    (formset,) = response.context["inline_admin_formsets"]
    assert formset.formset.model.__name__ == "Turn"
    assert [t.started_ms for t in formset.formset.queryset] == [0, 1500]


def test_call_change_page_is_read_only(staff_client, rows):
    make_turn(rows["call"], 900, "We open at seven and", interrupted=True)
    response = staff_client.get(f"/admin/calls/call/{rows['call'].pk}/change/")

    # Calls are Twilio's record: every field is shown, none can be edited, nothing to save.
    page = response.content.decode()
    assert response.context["adminform"].form.fields == {}
    assert rows["call"].sid in page
    assert 'name="_save"' not in page and 'name="_continue"' not in page
    # An interrupted turn is said in words, not with the admin's green "yes" icon.
    assert "icon-yes.svg" not in page and "cut off by the caller" in page


# --- Model validation shown in the admin forms ------------------------------------------


def test_valid_tool_passes_clean():
    tool = Tool(name="lookup_order-2", description="d", kind=Tool.Kind.HTTP, url="https://x.test/")
    tool.clean()

    assert tool.parameters == {"type": "object", "properties": {}}


@pytest.mark.parametrize("name", ["", "has space", "dots.not.allowed", "ünïcode", "x" * 65])
def test_tool_clean_rejects_bad_name(name):
    tool = Tool(name=name, description="d", kind=Tool.Kind.END_CALL)

    with pytest.raises(ValidationError) as error:
        tool.clean()
    assert set(error.value.message_dict) == {"name"}


@pytest.mark.parametrize(
    "schema", [{"type": "string"}, {"properties": {}}, ["type", "object"], "object"]
)
def test_tool_clean_rejects_non_object_schema(schema):
    tool = Tool(name="t", description="d", kind=Tool.Kind.END_CALL, parameters=schema)

    with pytest.raises(ValidationError) as error:
        tool.clean()
    assert set(error.value.message_dict) == {"parameters"}


def test_tool_clean_rejects_http_tool_without_url():
    tool = Tool(name="t", description="d", kind=Tool.Kind.HTTP, url="")

    with pytest.raises(ValidationError) as error:
        tool.clean()
    assert set(error.value.message_dict) == {"url"}


def test_end_call_tool_needs_no_url():
    Tool(name="end_call", description="d", kind=Tool.Kind.END_CALL, url="").clean()


def test_admin_add_tool_refuses_bad_values(staff_client):
    response = staff_client.post(
        "/admin/voiceagents/tool/add/",
        {
            "name": "bad name",
            "description": "d",
            "parameters": '{"type": "array"}',
            "kind": "http",
            "method": "POST",
        },
    )

    assert response.status_code == 200
    assert set(response.context["adminform"].form.errors) == {"name", "parameters", "url"}
    assert not Tool.objects.exists()


@pytest.mark.parametrize("number", ["+14155550100", "+442071838750", "+12"])
def test_phone_number_clean_accepts_e164(number):
    PhoneNumber(number=number, agent=Agent(name="a")).clean()


@pytest.mark.parametrize(
    "number", ["14155550100", "+0155550100", "+1 415 555 0100", "+1-415-555-0100", "", "+1"]
)
def test_phone_number_clean_rejects_non_e164(number):
    with pytest.raises(ValidationError) as error:
        PhoneNumber(number=number, agent=Agent(name="a")).clean()
    assert set(error.value.message_dict) == {"number"}


def test_admin_add_phone_number_refuses_non_e164(staff_client, rows):
    response = staff_client.post(
        "/admin/calls/phonenumber/add/", {"number": "415 555 0100", "agent": rows["agent"].pk}
    )

    assert response.status_code == 200
    assert "number" in response.context["adminform"].form.errors
    assert PhoneNumber.objects.count() == 1


def test_call_admin_lists_calls_newest_first(staff_client, rows):
    make_call("CA" + "z" * 32, agent=rows["agent"])

    response = staff_client.get("/admin/calls/call/")

    sids = [c.sid for c in response.context["cl"].result_list]
    assert sids == ["CA" + "z" * 32, rows["call"].sid]
    assert Call.objects.count() == 2


@pytest.mark.parametrize("weak", ["1", "password", "12345678901", "short7"])
def test_the_admin_refuses_a_weak_password_for_a_new_user(admin_client, weak):
    response = admin_client.post(
        "/admin/auth/user/add/",
        {"username": "newstaff", "password1": weak, "password2": weak, "usable_password": "true"},
    )
    assert response.status_code == 200  # the form again, with the reason
    assert response.context["adminform"].form.errors["password2"]
    assert not User.objects.filter(username="newstaff").exists()


def test_the_admin_accepts_a_strong_password(admin_client):
    strong = "plum-harbour-violin-42"
    response = admin_client.post(
        "/admin/auth/user/add/",
        {
            "username": "newstaff",
            "password1": strong,
            "password2": strong,
            "usable_password": "true",
        },
    )
    assert response.status_code == 302
    assert User.objects.get(username="newstaff").check_password(strong)
