"""`manage.py fake_call`, the README's way to try the app: it places a call into a running
app and prints the stored call, with both sides' turns."""

import orjson
import pytest
from django.core.management import call_command

from calls.models import Call
from tests.fakes.realtime_server import Reply
from tests.integration.conftest import script
from tests.live import TEST_AUTH_TOKEN

pytestmark = pytest.mark.django_db(transaction=True)


def test_fake_call_stores_a_call_with_both_sides(app_server, realtime, settings, capsys):
    # The command signs as the app expects; the app under test runs with the test token.
    settings.TWILIO_AUTH_TOKEN = TEST_AUTH_TOKEN
    settings.PUBLIC_BASE_URL = app_server.base_url
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text="Hello, you have reached the bakery.", audio_ms=1500),
            Reply(text="We open at eight in the morning and close at six.", audio_ms=5000),
            Reply(text="Yes, we deliver.", audio_ms=1000),
        ],
        caller_transcripts=["When are you open?", "Do you deliver?"],
    )

    # The app already talks to the session's fake OpenAI server, so the command uses it.
    call_command("fake_call", app_url=app_server.base_url, no_fake_openai=True)

    printed = capsys.readouterr().out
    body = orjson.loads(printed[printed.index("{") :])
    assert body["completion_reason"] == "caller_hangup"
    assert [t["speaker"] for t in body["turns"]][:3] == ["agent", "caller", "agent"]
    assert "When are you open?" in [t["text"] for t in body["turns"]]
    assert any(t["interrupted"] for t in body["turns"])  # the demo caller barges in
    stored = Call.objects.get(sid=body["sid"])
    assert stored.turns.count() == len(body["turns"])
