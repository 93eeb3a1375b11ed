"""Calls that use Twilio's REST API, through the real app (Daphne) and the strict fakes:
an integration places an outbound call through the API (the fake Twilio REST API checks
the `calls.create` request as Twilio would, and the test plays Twilio's part: the answer
request, the media stream, status callbacks, answering machines), and the agent
transfers a caller to a person (the call's TwiML replaced with <Dial>)."""

import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from channels.db import database_sync_to_async

from calls.models import Call
from tests.fakes.realtime_server import Reply
from tests.fakes.twilio_api import FakeTwilioApi
from tests.fakes.twilio_caller import FakeTwilioCall
from tests.integration.conftest import (
    AGENT_NUMBER,
    load_call,
    script,
    wait_for_end,
    wait_for_turns,
)
from tests.live import TEST_ACCOUNT_SID, TEST_AUTH_TOKEN, DaphneProcess, database_url_of_test_db
from voiceagents.models import ApiToken

PERSON = "+15557654321"


@pytest.fixture(scope="module")
def twilio_api():
    api = FakeTwilioApi(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN)
    api.numbers = {AGENT_NUMBER}
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="module")
def outbound_app(django_db_setup, django_db_blocker, realtime_server, twilio_api):
    from tests.live import ROOT

    app = DaphneProcess(
        {
            "DATABASE_URL": database_url_of_test_db(),
            "OPENAI_BASE_URL": realtime_server.base_url,
            "TWILIO_API_BASE_URL": twilio_api.base_url,
        },
        ROOT / "var" / "test-outbound.log",
    )
    yield app
    app.stop()


@pytest.fixture
def twilio(twilio_api):
    first_created, first_violation = len(twilio_api.created_calls), len(twilio_api.violations)
    yield twilio_api
    assert twilio_api.violations[first_violation:] == []
    twilio_api.created_calls[first_created:] = []


@database_sync_to_async
def write_token() -> str:
    token = ApiToken(name="crm", can_write=True)
    raw = token.issue()
    token.save()
    return raw


async def place_through_api(app: DaphneProcess, body: dict) -> httpx.Response:
    token = await write_token()
    async with httpx.AsyncClient(base_url=app.base_url) as http:
        return await http.post(
            "/api/calls/", json=body, headers={"Authorization": f"Bearer {token}"}
        )


def twilio_side_of(app: DaphneProcess, created: dict) -> FakeTwilioCall:
    return FakeTwilioCall.placed_by_app(
        app.base_url,
        created,
        auth_token=TEST_AUTH_TOKEN,
        account_sid=TEST_ACCOUNT_SID,
        public_base_url=app.public_url,
    )


async def test_an_integration_places_a_call_and_the_agent_greets_the_person_by_context(
    agent, realtime, twilio, outbound_app
):
    realtime.script_for_next_connection = script(
        replies=[Reply(text="Hi Maria, this is the bakery.", audio_ms=400)],
        caller_transcripts=["Oh hello."],
    )

    response = await place_through_api(
        outbound_app,
        {"to": PERSON, "agent": agent.name, "context": {"name": "Maria", "notes": "Cake ready."}},
    )

    assert response.status_code == 201, response.text
    (created,) = twilio.created_calls
    body = response.json()
    assert body["sid"] == created["sid"]
    assert (body["direction"], body["to"], body["context"]["name"]) == (
        "outbound-api",
        PERSON,
        "Maria",
    )
    assert (created["To"], created["From"]) == (PERSON, AGENT_NUMBER)
    assert created["StatusCallbackEvent"] == ["answered", "completed", "initiated", "ringing"]
    assert "MachineDetection" not in created
    call_pk = parse_qs(urlsplit(created["Url"]).query)["call"][0]
    assert created["StatusCallback"].endswith(f"/twilio/call-status?call={call_pk}")

    person = twilio_side_of(outbound_app, created)
    assert (await person.send_status(created["StatusCallback"], "ringing")).status_code == 204
    assert (await person.answer_outbound()).status_code == 200
    await person.connect_stream()
    await person.wait_for(lambda: len(person.heard_audio) >= 400 * 8, timeout=10)
    await person.speak_and_wait(400)
    await wait_for_turns(created["sid"], 2)
    await person.hangup()

    stored = await wait_for_end(created["sid"])
    _, turns = await load_call(created["sid"])
    assert (stored.direction, stored.completion_reason) == ("outbound-api", "caller_hangup")
    assert stored.context == {"name": "Maria", "notes": "Cake ready."}
    assert [t.speaker for t in turns][:2] == ["agent", "caller"]
    session = realtime.test_sessions()[0]
    instructions = session.received[0]["session"]["instructions"]
    assert (
        "outbound call" in instructions
        and "Maria" in instructions
        and "Cake ready." in instructions
    )
    assert person.violations == []


@pytest.mark.parametrize(
    ("status", "reason"),
    [("no-answer", "no_answer"), ("busy", "busy"), ("failed", "call_failed")],
)
async def test_a_call_nobody_answers_ends_with_twilios_reason_and_no_openai_session(
    agent, realtime, twilio, outbound_app, status, reason
):
    response = await place_through_api(outbound_app, {"to": PERSON, "agent": agent.pk})
    (created,) = twilio.created_calls
    person = twilio_side_of(outbound_app, created)

    await person.send_status(created["StatusCallback"], "initiated")
    answer = await person.send_status(created["StatusCallback"], status)

    assert (response.status_code, answer.status_code) == (201, 204)
    stored = await wait_for_end(created["sid"])
    assert (stored.completion_reason, stored.status) == (reason, "completed")
    assert realtime.test_sessions() == []


@database_sync_to_async
def set_machine_detection(agent, mode: str, message: str = "") -> None:
    agent.machine_detection, agent.voicemail_message = mode, message
    agent.save()


async def test_an_answering_machine_gets_the_voicemail_message_after_the_beep(
    agent, realtime, twilio, outbound_app
):
    await set_machine_detection(agent, "leave_message", "Your cake is ready, call us back.")

    await place_through_api(outbound_app, {"to": PERSON, "agent": agent.pk})
    (created,) = twilio.created_calls
    person = twilio_side_of(outbound_app, created)
    answer = await person.answer_outbound(answered_by="machine_end_beep")

    assert created["MachineDetection"] == "DetectMessageEnd"
    assert person.say_texts == ["Your cake is ready, call us back."]
    assert person.hung_up_by_twiml and person.stream_url is None
    assert answer.status_code == 200
    stored = await wait_for_end(created["sid"])
    assert (stored.completion_reason, stored.answered_by) == ("voicemail_left", "machine_end_beep")
    assert realtime.test_sessions() == []


async def test_a_machine_is_hung_up_on_when_the_agent_says_so(
    agent, realtime, twilio, outbound_app
):
    await set_machine_detection(agent, "hang_up")

    await place_through_api(outbound_app, {"to": PERSON, "agent": agent.pk})
    (created,) = twilio.created_calls
    person = twilio_side_of(outbound_app, created)
    await person.answer_outbound(answered_by="machine_start")

    assert created["MachineDetection"] == "Enable"
    assert person.say_texts == [] and person.hung_up_by_twiml
    stored = await wait_for_end(created["sid"])
    assert stored.completion_reason == "machine_hangup"


async def test_a_call_twilio_refuses_is_reported_and_kept_as_failed(agent, twilio, outbound_app):
    twilio.refuse_calls_to["+15550000000"] = (400, 21215, "Geo permission not enabled")

    response = await place_through_api(outbound_app, {"to": "+15550000000", "agent": agent.pk})

    assert response.status_code == 502
    assert "Geo permission not enabled" in response.json()["error"]
    stored = await database_sync_to_async(Call.objects.get)(to_number="+15550000000")
    assert (stored.completion_reason, stored.error_code) == ("call_failed", "twilio_refused")


# --- transfer_call: the agent hands an inbound caller to a person -----------------------


@database_sync_to_async
def set_transfer_to(agent, destination: str) -> None:
    agent.transfer_to = destination
    agent.save()


async def caller_asking_for_a_person(app, realtime, twilio) -> FakeTwilioCall:
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text="Hello, bakery.", audio_ms=300),
            Reply(function_call=("transfer_call", {"reason": "wants the manager"})),
            Reply(text="Putting you through to the manager now.", audio_ms=500),
            Reply(text="Sorry, I could not put you through. How else can I help?", audio_ms=400),
        ],
        caller_transcripts=["Can I talk to the manager?"],
    )
    caller = FakeTwilioCall(
        app.base_url,
        auth_token=TEST_AUTH_TOKEN,
        account_sid=TEST_ACCOUNT_SID,
        to_number=AGENT_NUMBER,
        public_base_url=app.public_url,
    )
    twilio.live_calls.add(caller.call_sid)
    await caller.dial()
    await caller.connect_stream()
    await caller.wait_for(lambda: len(caller.heard_audio) >= 300 * 8, timeout=10)
    await caller.speak_and_wait(400)
    return caller


async def test_the_agent_says_the_handover_line_then_twilio_dials_the_person(
    agent, realtime, twilio, outbound_app
):
    await set_transfer_to(agent, "+15550009000")

    caller = await caller_asking_for_a_person(outbound_app, realtime, twilio)
    await caller.wait_for(lambda: twilio.updated_calls, timeout=10)
    heard_before_transfer_ms = len(caller.heard_audio) // 8
    await caller.hangup()  # Twilio stops the stream once the call runs the new TwiML

    (update,) = twilio.updated_calls
    assert update["sid"] == caller.call_sid
    dial = ET.fromstring(update["Twiml"]).find("Dial")
    assert dial.find("Number").text == "+15550009000"
    assert heard_before_transfer_ms >= 300 + 500  # the handover line played first
    stored = await wait_for_end(caller.call_sid)
    assert (stored.completion_reason, stored.transferred_to) == ("transferred", "+15550009000")
    _, turns = await load_call(caller.call_sid)
    assert [t.text for t in turns if t.speaker == "agent"][-1] == (
        "Putting you through to the manager now."
    )
    assert caller.violations == []


async def test_a_refused_transfer_is_told_to_the_model_and_the_call_goes_on(
    agent, realtime, twilio, outbound_app
):
    await set_transfer_to(agent, "sip:manager@pbx.example.com")
    first_session = len(realtime.sessions)

    caller = await caller_asking_for_a_person(outbound_app, realtime, twilio)
    twilio.refuse_updates[caller.call_sid] = (400, 13223, "Dial: Invalid phone number format")
    await wait_for_turns(caller.call_sid, 5, within_s=15)  # greeting, ask, tool, line, sorry
    await caller.hangup()

    session = realtime.sessions[first_session]
    told = [
        e["item"]["content"][0]["text"]
        for e in session.received
        if e["type"] == "conversation.item.create" and e["item"].get("role") == "system"
    ]
    assert len(told) == 1 and "Invalid phone number format" in told[0]
    stored = await wait_for_end(caller.call_sid)
    assert (stored.completion_reason, stored.transferred_to) == ("caller_hangup", "")
    _, turns = await load_call(caller.call_sid)
    assert turns[-1].text == "Sorry, I could not put you through. How else can I help?"
