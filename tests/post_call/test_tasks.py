"""Celery tasks run eagerly: completion webhooks (signed, retried, every attempt kept),
the retention purge and the sweep for recordings that never came."""

from datetime import timedelta
from unittest import mock

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from tests.factories import make_agent, make_call, make_turn
from tests.post_call.receiver import WebhookReceiver
from transcripts import tasks
from transcripts.models import CallSummary, Recording, WebhookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver():
    server = WebhookReceiver("whsec_test")
    yield server
    server.close()


@pytest.fixture
def hooked_call(receiver):
    agent = make_agent(completion_webhook_url=receiver.url, completion_webhook_secret="whsec_test")
    call = make_call(agent=agent, ended_at=timezone.now(), answered_at=timezone.now())
    make_turn(call, 0, "Hello, bakery.")
    return call


def test_call_completed_webhook_is_signed_and_carries_the_call(
    eager_celery, receiver, hooked_call, settings
):
    with mock.patch.object(tasks.after_transcript, "delay"):
        tasks.call_completed(hooked_call.pk)
    [request] = receiver.received
    assert request["verified"]
    assert request["headers"]["X-Voiceagents-Event"] == "call.completed"
    assert request["json"]["event"] == "call.completed"
    assert request["json"]["call"]["sid"] == hooked_call.sid
    assert request["json"]["call"]["turns"][0]["text"] == "Hello, bakery."
    [attempt] = WebhookDelivery.objects.all()
    assert (attempt.ok, attempt.status_code, attempt.attempt) == (True, 200, 1)


def test_failed_deliveries_are_retried_with_the_same_event_id(
    eager_celery, receiver, hooked_call, settings
):
    settings.WEBHOOK_FIRST_RETRY_S = 0
    receiver.fail_first = 2
    tasks.notify(hooked_call, WebhookDelivery.Event.TRANSCRIPT_READY)
    assert [r["status"] for r in receiver.received] == [503, 503, 200]
    assert len({r["headers"]["X-Voiceagents-Event-Id"] for r in receiver.received}) == 1
    attempts = list(WebhookDelivery.objects.order_by("attempt"))
    assert [(a.attempt, a.status_code, a.ok) for a in attempts] == [
        (1, 503, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert attempts[0].error == "HTTP 503"


def test_a_final_answer_is_not_retried_and_attempts_are_bounded(
    eager_celery, receiver, hooked_call, settings
):
    settings.WEBHOOK_FIRST_RETRY_S = 0
    receiver.fail_first, receiver.fail_status = 10, 410
    tasks.notify(hooked_call, WebhookDelivery.Event.CALL_COMPLETED)
    assert len(receiver.received) == 1  # 410 Gone: the receiver's final word
    receiver.fail_status = 500
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    tasks.notify(hooked_call, WebhookDelivery.Event.CALL_COMPLETED)
    assert len(receiver.received) == 4


def test_an_unreachable_receiver_is_recorded(eager_celery, hooked_call, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    hooked_call.agent.completion_webhook_url = "http://127.0.0.1:9/unreachable"
    hooked_call.agent.save()
    tasks.notify(hooked_call, WebhookDelivery.Event.CALL_COMPLETED)
    [attempt] = WebhookDelivery.objects.all()
    assert attempt.status_code is None and not attempt.ok
    assert "ConnectError" in attempt.error


def test_no_webhook_without_a_url(eager_celery, receiver):
    call = make_call(agent=make_agent())
    tasks.notify(call, WebhookDelivery.Event.CALL_COMPLETED)
    assert not receiver.received and not WebhookDelivery.objects.exists()


def test_a_call_without_recording_is_summarised_when_it_ends(eager_celery):
    call = make_call(
        agent=make_agent(record_calls=False),
        recording_requested=False,
        answered_at=timezone.now(),
        ended_at=timezone.now(),
    )
    with mock.patch.object(tasks.after_transcript, "delay") as after:
        tasks.call_completed(call.pk)
    after.assert_called_once_with(call.pk, None)
    recorded = make_call(
        "CA" + "e" * 32,
        agent=make_agent(),
        recording_requested=True,
        answered_at=timezone.now(),
        ended_at=timezone.now(),
    )
    with mock.patch.object(tasks.after_transcript, "delay") as after:
        tasks.call_completed(recorded.pk)
    after.assert_not_called()  # its recording callback will start the pipeline


def test_tasks_for_a_deleted_call_do_nothing(eager_celery):
    tasks.call_completed(123456)
    tasks.after_transcript(123456, None)
    tasks.process_recording(123456)
    tasks.transcribe_recording(123456)


def test_recordings_past_retention_are_deleted_with_their_files(settings, tmp_path):
    settings.RECORDING_RETENTION_DAYS = 30
    call = make_call()
    old = Recording.objects.create(
        call=call, sid="RE" + "1" * 32, twilio_status="completed", state=Recording.State.STORED
    )
    old.file.save("old.wav", ContentFile(b"RIFF"), save=False)
    old.stored_at = timezone.now() - timedelta(days=31)
    old.save()
    new = Recording.objects.create(
        call=call,
        sid="RE" + "2" * 32,
        twilio_status="completed",
        state=Recording.State.STORED,
        stored_at=timezone.now(),
    )
    new.file.save("new.wav", ContentFile(b"RIFF"))
    storage, old_name = old.file.storage, old.file.name
    assert storage.exists(old_name)

    assert tasks.purge_old_recordings() == 1
    old.refresh_from_db()
    assert old.state == Recording.State.PURGED and not old.file
    assert not storage.exists(old_name)
    assert storage.exists(new.file.name)
    settings.RECORDING_RETENTION_DAYS = 0
    new.stored_at = timezone.now() - timedelta(days=3650)
    new.save()
    assert tasks.purge_old_recordings() == 0  # 0 keeps recordings forever


def test_calls_whose_recording_never_came_are_summarised_later(settings):
    long_ago = timezone.now() - timedelta(hours=2)
    waiting = make_call(
        "CA" + "1" * 32, recording_requested=True, answered_at=long_ago, ended_at=long_ago
    )
    make_call(
        "CA" + "2" * 32, recording_requested=True, answered_at=long_ago, ended_at=timezone.now()
    )  # ended a moment ago: its callback may still come
    done = make_call(
        "CA" + "3" * 32, recording_requested=True, answered_at=long_ago, ended_at=long_ago
    )
    CallSummary.objects.create(call=done, source="live")
    with mock.patch.object(tasks.after_transcript, "delay") as after:
        assert tasks.summarise_calls_without_recording() == 1
    after.assert_called_once_with(waiting.pk, None)


def test_recording_fetch_backoff_doubles_up_to_a_minute():
    from transcripts.recording_fetch import backoff_s

    assert [backoff_s(n, 2.0) for n in range(1, 8)] == [2, 4, 8, 16, 32, 60, 60]
