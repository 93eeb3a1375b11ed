"""Placing outbound calls from the console and the API (against the fake Twilio REST API,
in a thread), what the agent is told about the person, and the answer webhook's checks.
The whole call through Daphne is in tests/integration/test_outbound_calls.py."""

from datetime import timedelta

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from calls.context import context_instructions
from calls.models import Call
from tests.factories import (
    ACCOUNT_SID,
    AGENT_NUMBER,
    AUTH_TOKEN,
    CALLER_NUMBER,
    PUBLIC_BASE_URL,
    client_for,
    make_agent,
    make_call,
    make_number,
    make_turn,
    signed_post,
    user_with,
)
from tests.fakes.twilio_api import FakeTwilioApi
from transcripts.models import CallSummary
from voiceagents.models import ApiToken

pytestmark = pytest.mark.django_db
PERSON = "+15557654321"


@pytest.fixture
def twilio(settings):
    api = FakeTwilioApi(ACCOUNT_SID, AUTH_TOKEN)
    api.numbers = {AGENT_NUMBER}
    api.start()
    settings.TWILIO_API_BASE_URL = api.base_url
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = ACCOUNT_SID, AUTH_TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    yield api
    api.stop()
    assert api.violations == []


@pytest.fixture
def agent():
    agent = make_agent(name="Bakery", instructions="You are the bakery.")
    make_number(agent, AGENT_NUMBER)
    return agent


def token(**scopes) -> str:
    api_token = ApiToken(name="crm", **scopes)
    raw = api_token.issue()
    api_token.save()
    return raw


def api_post(client, body, raw_token: str):
    return client.post(
        "/api/calls/",
        data=orjson.dumps(body) if not isinstance(body, bytes) else body,
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw_token}"},
    )


def test_placing_a_call_needs_the_write_scope(client, agent, twilio):
    response = api_post(client, {"to": PERSON, "agent": agent.pk}, token())

    assert response.status_code == 403
    assert "write scope" in response.json()["error"]
    assert twilio.created_calls == [] and not Call.objects.exists()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"not json", "JSON object"),
        ([], "JSON object"),
        ({"agent": 1}, "to: an E.164 number"),
        ({"to": "555-0100", "agent": 1}, "to: an E.164 number"),
        ({"to": PERSON}, "agent: the agent's id or name"),
        ({"to": PERSON, "agent": "Nobody"}, "no active agent 'Nobody'"),
        ({"to": PERSON, "agent": "Bakery", "from": "+15550009998"}, "not one of Bakery's"),
        ({"to": PERSON, "agent": "Bakery", "context": "Maria"}, "context: must be an object"),
    ],
)
def test_a_bad_request_is_refused_naming_the_field_and_places_nothing(
    client, agent, twilio, body, problem
):
    response = api_post(client, body, token(can_write=True))

    assert response.status_code == 400
    assert problem in response.json()["error"]
    assert twilio.created_calls == [] and not Call.objects.exists()


def test_the_api_places_the_call_from_the_agents_number(client, agent, twilio):
    response = api_post(
        client,
        {"to": PERSON, "agent": "Bakery", "context": {"name": "Maria"}},
        token(can_write=True),
    )

    assert response.status_code == 201
    (created,) = twilio.created_calls
    call = Call.objects.get()
    assert response.json()["sid"] == call.sid == created["sid"]
    assert (call.from_number, call.to_number, call.context) == (
        AGENT_NUMBER,
        PERSON,
        {"name": "Maria"},
    )
    assert created["Url"] == f"{PUBLIC_BASE_URL}/twilio/outbound-answer?call={call.pk}"


def test_staff_place_a_call_from_the_agent_page(agent, twilio):
    console = Client()
    staff = user_with("voiceagents.view_agent", "calls.place_call", "calls.view_call")
    console.force_login(staff)
    page = console.get(f"/agents/{agent.pk}/").content.decode()
    number = agent.phone_numbers.get()

    response = console.post(
        f"/agents/{agent.pk}/call",
        {"to": "+1 555 765 4321", "from_number": number.pk, "name": "Maria", "notes": ""},
    )

    assert "Call someone" in page
    call = Call.objects.get()
    assert response["Location"] == f"/calls/{call.sid}/"
    assert (call.to_number, call.placed_by, call.context) == (PERSON, staff, {"name": "Maria"})


def test_a_bad_number_in_the_console_form_says_so_and_places_nothing(agent, twilio):
    console = Client()
    console.force_login(user_with("voiceagents.view_agent", "calls.place_call"))

    console.post(
        f"/agents/{agent.pk}/call", {"to": "555", "from_number": agent.phone_numbers.get().pk}
    )

    page = console.get(f"/agents/{agent.pk}/").content.decode()
    assert "Number to call: Use E.164" in page
    assert twilio.created_calls == [] and not Call.objects.exists()


def test_staff_without_the_place_call_permission_see_no_form_and_are_refused(agent, twilio):
    console = Client()
    console.force_login(user_with("voiceagents.view_agent"))

    page = console.get(f"/agents/{agent.pk}/").content.decode()
    response = console.post(f"/agents/{agent.pk}/call", {"to": PERSON})

    assert "Call someone" not in page and response.status_code == 403


def test_an_inbound_caller_is_remembered_from_earlier_calls(agent):
    earlier = make_call(
        "CA" + "1" * 32, agent=agent, from_number=CALLER_NUMBER, ended_at=timezone.now()
    )
    CallSummary.objects.create(
        call=earlier, source="recording", summary="Maria ordered a rye loaf."
    )
    untold = make_call(
        "CA" + "2" * 32, agent=agent, from_number=CALLER_NUMBER, ended_at=timezone.now()
    )
    make_turn(untold, 0, "Do you deliver?", speaker="caller")
    someone_else = make_call(
        "CA" + "3" * 32, agent=agent, from_number="+15550001234", ended_at=timezone.now()
    )
    make_turn(someone_else, 0, "Secret of another caller", speaker="caller")
    now = make_call("CA" + "4" * 32, agent=agent, from_number=CALLER_NUMBER)

    told = context_instructions(now)

    assert "Maria ordered a rye loaf." in told and "caller: Do you deliver?" in told
    assert "Secret of another caller" not in told
    assert "outbound" not in told


def test_the_caller_is_remembered_by_the_last_turns_of_their_three_latest_calls(
    agent, django_assert_num_queries
):
    """Only the three most recent earlier calls are named, each by its last four turns in
    the order they were said; all of it read in two queries, as every stream opens."""
    started = timezone.now() - timedelta(days=10)
    for day in range(4):
        earlier = make_call(
            f"CA{day:032d}",
            agent=agent,
            started_at=started + timedelta(days=day),
            ended_at=started + timedelta(days=day, minutes=3),
        )
        for n in range(6):
            make_turn(earlier, n * 1000, f"day {day} turn {n}", speaker="caller")
    now = make_call("CA" + "9" * 32, agent=agent)

    with django_assert_num_queries(2):
        told = context_instructions(now)

    assert "day 0" not in told
    lines = [line for line in told.splitlines() if line.startswith("- ")]
    assert [line.split(": ", 1)[1] for line in lines] == [
        " / ".join(f"caller: day {day} turn {n}" for n in range(2, 6)) for day in (3, 2, 1)
    ]


def test_the_answer_request_must_name_the_call_it_is_about(client, agent, twilio):
    call = make_call("CA" + "5" * 32, agent=agent, direction="outbound-api")

    response = signed_post(
        client,
        f"/twilio/outbound-answer?call={call.pk}",
        {"CallSid": "CA" + "6" * 32, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress"},
    )

    assert response.status_code == 400
    assert Call.objects.get(pk=call.pk).sid == call.sid


@pytest.mark.parametrize(
    ("owned", "voice_url", "says"),
    [
        (False, "", "is not a number of Twilio account"),
        (True, "https://old.example.com/voice", "but its voice webhook is https://old.example.com"),
        (True, f"{PUBLIC_BASE_URL}/twilio/voice", "Yes, and its voice webhook points at this app."),
    ],
)
def test_the_number_page_says_whether_twilio_has_the_number_and_where_it_points(
    client, agent, twilio, owned, voice_url, says
):
    twilio.numbers = {AGENT_NUMBER} if owned else set()
    twilio.voice_urls = {AGENT_NUMBER: voice_url}
    client.force_login(get_user_model().objects.create_superuser("root"))

    page = client.get(f"/admin/calls/phonenumber/{agent.phone_numbers.get().pk}/change/")

    text = page.content.decode()
    assert says in text
    assert f"{PUBLIC_BASE_URL}/twilio/voice (HTTP POST" in text


def test_without_twilio_credentials_the_number_page_says_what_to_set(client, agent, settings):
    settings.TWILIO_ACCOUNT_SID = ""
    client.force_login(get_user_model().objects.create_superuser("root"))

    page = client.get(f"/admin/calls/phonenumber/{agent.phone_numbers.get().pk}/change/")

    assert "set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in page.content.decode()


def test_staff_place_a_call_from_the_call_list_choosing_the_agent(agent, twilio):
    console = client_for(user_with("voiceagents.view_agent", "calls.place_call", "calls.view_call"))
    page = console.get("/calls/").content.decode()

    response = console.post("/calls/place", {"agent": agent.pk, "to": PERSON, "name": "Maria"})

    assert "Call someone" in page
    call = Call.objects.get()
    assert response["Location"] == f"/calls/{call.sid}/"
    assert (call.agent, call.from_number, call.context) == (agent, AGENT_NUMBER, {"name": "Maria"})
    assert twilio.created_calls[0]["From"] == AGENT_NUMBER
