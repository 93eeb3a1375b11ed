"""Voice previews for the agent form: made once per voice through the (fake) Realtime
API, then served from the stored file."""

import io
import wave

import pytest
from django.contrib.auth import get_user_model

from tests.fakes.realtime_server import Reply
from tests.integration.conftest import background_loop, realtime_server, script  # noqa: F401
from tests.live import TEST_OPENAI_KEY, free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, settings, tmp_path, realtime_server):  # noqa: F811
    settings.VAR_DIR = tmp_path
    settings.OPENAI_BASE_URL = realtime_server.base_url
    settings.OPENAI_API_KEY = TEST_OPENAI_KEY
    client.force_login(get_user_model().objects.create_superuser("root"))
    return client


def test_a_voice_is_spoken_once_then_served_from_its_file(staff, realtime_server):  # noqa: F811
    realtime_server.script_for_next_connection = script(
        replies=[Reply(text="Hello! Thanks for calling.", audio_ms=700)]
    )
    sessions_before = len(realtime_server.sessions)

    first = staff.get("/agents/voices/cedar.wav")
    again = staff.get("/agents/voices/cedar.wav")

    assert first.status_code == again.status_code == 200
    assert first["Content-Type"] == "audio/wav"
    with wave.open(io.BytesIO(b"".join(first.streaming_content))) as wav:
        assert (wav.getframerate(), wav.getnchannels()) == (24000, 1)
        assert abs(wav.getnframes() / 24000 - 0.7) < 0.05
    assert len(realtime_server.sessions) == sessions_before + 1
    session = realtime_server.sessions[-1]
    assert session.received[0]["session"]["audio"]["output"]["voice"] == "cedar"
    assert realtime_server.violations == []


def test_an_unknown_voice_is_404_and_openai_down_is_502(staff, settings):
    assert staff.get("/agents/voices/nobody.wav").status_code == 404
    settings.OPENAI_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"

    down = staff.get("/agents/voices/ash.wav")

    assert down.status_code == 502
    assert "could not be reached" in down.content.decode()
