"""POST /twilio/recording and the TwiML that starts the recording."""

import xml.etree.ElementTree as ET
from unittest import mock

import pytest

from tests.factories import (
    ACCOUNT_SID,
    AGENT_NUMBER,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    make_agent,
    make_call,
    make_number,
    signed_post,
    voice_params,
)
from transcripts.models import Recording

pytestmark = pytest.mark.django_db

CALL_SID = "CA" + "c" * 32
RECORDING_SID = "RE" + "d" * 32


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    return settings


@pytest.fixture
def call():
    return make_call(CALL_SID, agent=make_agent(), recording_requested=True)


@pytest.fixture
def enqueued():
    """The Celery tasks the callback sends after commit, captured instead of sent."""
    with (
        mock.patch("transcripts.tasks.process_recording.delay") as process,
        mock.patch("transcripts.tasks.after_transcript.delay") as after,
    ):
        yield {"process": process, "after": after}


def callback(status="completed", **fields) -> dict:
    return {
        "AccountSid": ACCOUNT_SID,
        "CallSid": CALL_SID,
        "RecordingSid": RECORDING_SID,
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Recordings/"
        + RECORDING_SID,
        "RecordingStatus": status,
        "RecordingDuration": "42",
        "RecordingChannels": "2",
        "RecordingStartTime": "Tue, 24 Nov 2026 21:00:00 +0000",
        "RecordingSource": "StartCallRecordingTwiML",
        "RecordingTrack": "both",
        "ErrorCode": "0",
    } | fields


def post(client, params, **kw):
    return signed_post(client, "/twilio/recording", params, **kw)


def test_completed_callback_stores_the_recording_and_enqueues_after_commit(
    client, call, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(client, callback())
        # Nothing is sent before the row is committed: the worker could not see it.
        enqueued["process"].assert_not_called()
    assert response.status_code == 204
    recording = Recording.objects.get(sid=RECORDING_SID)
    assert (recording.call, recording.state, recording.channels, recording.duration_s) == (
        call,
        Recording.State.PENDING,
        2,
        42,
    )
    for run in callbacks:
        run()
    enqueued["process"].assert_called_once_with(recording.pk)


def test_a_repeated_callback_never_runs_the_work_twice(
    client, call, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, callback()).status_code == 204
        assert post(client, callback()).status_code == 204  # Twilio's retry
    assert Recording.objects.filter(sid=RECORDING_SID).count() == 1
    assert enqueued["process"].call_count == 1


@pytest.mark.parametrize("status", ["absent", "failed"])
def test_absent_or_failed_recording_is_stored_on_the_call(
    client, call, enqueued, status, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, callback(status, ErrorCode="13617" if status == "failed" else "0"))
    assert response.status_code == 204
    recording = call.recordings.get()
    assert recording.twilio_status == status
    assert recording.state == Recording.State.NONE
    assert status in recording.error
    enqueued["process"].assert_not_called()
    # Without a recording the summary comes from the live transcript.
    enqueued["after"].assert_called_once_with(call.pk, None)


def test_unsigned_or_forged_callback_is_refused(client, call, enqueued):
    assert client.post("/twilio/recording", callback()).status_code == 403
    forged = post(client, callback(), auth_token="not-the-token")
    assert forged.status_code == 403
    assert not Recording.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("RecordingSid", "RE123"),
        ("CallSid", "not-a-sid"),
        ("RecordingStatus", "exploded"),
        ("RecordingChannels", "7"),
        ("RecordingDuration", "long"),
    ],
)
def test_a_bad_field_gets_a_400_naming_it(client, call, enqueued, field, value):
    response = post(client, callback(**{field: value}))
    assert response.status_code == 400
    assert field in response.content.decode()
    assert not Recording.objects.exists()


def test_callback_for_an_unknown_call_is_acknowledged_and_ignored(client, enqueued):
    assert post(client, callback()).status_code == 204
    assert not Recording.objects.exists()


def test_voice_webhook_starts_a_dual_untrimmed_recording_before_the_stream(client):
    make_number(make_agent(), AGENT_NUMBER)
    response = signed_post(client, "/twilio/voice", voice_params(CALL_SID))
    root = ET.fromstring(response.content)
    assert [verb.tag for verb in root] == ["Start", "Connect"]
    recording = root.find("Start/Recording")
    assert recording.attrib == {
        "channels": "dual",
        "trim": "do-not-trim",
        "track": "both",
        "recordingStatusCallback": PUBLIC_BASE_URL + "/twilio/recording",
        "recordingStatusCallbackMethod": "POST",
        "recordingStatusCallbackEvent": "completed absent",
    }


def test_agent_with_recording_off_is_not_recorded(client):
    make_number(make_agent(record_calls=False), AGENT_NUMBER)
    response = signed_post(client, "/twilio/voice", voice_params(CALL_SID))
    assert [verb.tag for verb in ET.fromstring(response.content)] == ["Connect"]
    from calls.models import Call

    assert Call.objects.get(sid=CALL_SID).recording_requested is False
