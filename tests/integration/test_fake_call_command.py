"""`manage.py fake_call`, the README's way to try the app: with the app started as
`scripts/run --fakes` starts it (Daphne and a Celery worker on the embedded broker,
pointed at the ports where the command starts its fakes), it places a call, plays the
recording callback, waits for the worker and prints the named transcript and the call."""

import time

import orjson
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from calls.models import Call
from tests.integration.conftest import start_app
from tests.live import (
    TEST_AUTH_TOKEN,
    TEST_OPENAI_KEY,
    CeleryWorker,
    database_url_of_test_db,
    free_port,
)
from transcripts.selectors import current_transcript

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def demo_app(django_db_setup, django_db_blocker, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fake-call")
    ports = {"openai_port": free_port(), "twilio_port": free_port()}
    env = {
        "OPENAI_BASE_URL": f"http://127.0.0.1:{ports['openai_port']}/v1",
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{ports['twilio_port']}",
        "RECORDINGS_DIR": str(tmp / "recordings"),
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_DIR": str(tmp / "broker"),
        "RECORDING_FETCH_FIRST_RETRY_S": "0.5",
    }
    app = start_app(env, "fake-call")
    worker = CeleryWorker(
        {"DATABASE_URL": database_url_of_test_db(), **env}, tmp / "fake-call-worker.log"
    )
    yield app, worker, ports
    worker.stop()
    app.stop()


def test_fake_call_prints_the_named_transcript_and_the_call(demo_app, settings, capsys):
    app, _, ports = demo_app
    # The command signs and checks keys as the app expects: the app runs with test secrets.
    settings.TWILIO_AUTH_TOKEN = TEST_AUTH_TOKEN
    settings.OPENAI_API_KEY = TEST_OPENAI_KEY
    settings.PUBLIC_BASE_URL = app.base_url

    call_command("fake_call", app_url=app.base_url, transcript_timeout=60, **ports)

    printed = capsys.readouterr().out
    assert "Worker: downloading" in printed or "Worker: transcribing" in printed
    assert "] Maria: Hi, this is Maria. When are you open?" in printed, printed
    assert "] Demo bakery: Hello, you have reached the bakery." in printed
    assert "Summary: " in printed and "Outcome: question_answered" in printed
    body = orjson.loads(printed[printed.index("{") :])
    assert body["completion_reason"] == "caller_hangup"
    assert [t["speaker"] for t in body["turns"]][:3] == ["agent", "caller", "agent"]
    assert any(t["interrupted"] for t in body["turns"])  # the demo caller barges in
    assert body["transcript"]["caller_name"] == "Maria"
    assert body["recording"]["channels"] == 2
    stored = Call.objects.get(sid=body["sid"])
    assert current_transcript(stored).caller_name == "Maria"


def test_fake_call_says_what_is_wrong_when_the_app_uses_other_servers(demo_app, settings):
    app, _, ports = demo_app
    settings.TWILIO_AUTH_TOKEN = TEST_AUTH_TOKEN
    settings.OPENAI_API_KEY = TEST_OPENAI_KEY
    settings.PUBLIC_BASE_URL = app.base_url
    wrong = {"openai_port": free_port(), "twilio_port": ports["twilio_port"]}
    with pytest.raises(CommandError, match="OPENAI_BASE_URL"):
        call_command("fake_call", app_url=app.base_url, no_recording=True, **wrong)


def test_fake_call_answers_a_call_the_app_places(demo_app, settings, capsys):
    """The README's way to try outbound calls: fake_call --answer-outbound waits, staff
    (here: the API) place a call, and the fake Twilio plays the person called."""
    import threading

    import httpx

    from calls.models import PhoneNumber
    from voiceagents.models import Agent, ApiToken

    app, _, ports = demo_app
    settings.TWILIO_AUTH_TOKEN = TEST_AUTH_TOKEN
    settings.OPENAI_API_KEY = TEST_OPENAI_KEY
    settings.PUBLIC_BASE_URL = app.base_url
    agent = Agent.objects.create(name="Bakery out", instructions="You call customers.")
    PhoneNumber.objects.create(number="+15550100999", agent=agent)
    token = ApiToken(name="t", can_write=True)
    raw = token.issue()
    token.save()

    def place() -> None:
        time.sleep(1.5)  # fake_call is waiting by then
        httpx.post(
            app.base_url + "/api/calls/",
            json={"to": "+15557654321", "agent": agent.pk, "context": {"name": "Maria"}},
            headers={"Authorization": f"Bearer {raw}"},
        )

    placer = threading.Thread(target=place)
    placer.start()
    call_command("fake_call", app_url=app.base_url, answer_outbound=20, **ports)
    placer.join()

    printed = capsys.readouterr().out
    assert "The app asked Twilio to call +15557654321 from +15550100999" in printed
    body = orjson.loads(printed[printed.index("{") :])
    assert (body["direction"], body["to"]) == ("outbound-api", "+15557654321")
    assert [t["speaker"] for t in body["turns"]][:2] == ["agent", "caller"]
