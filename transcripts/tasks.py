"""Celery tasks after hangup:

call ends ─────────────────────────▶ call_completed ─▶ completion webhook (call.completed)
/twilio/recording ─▶ process_recording (download, retried) ─▶ transcribe_recording
                      (diarize → identify → channels → format, retried on OpenAI faults)
                      ─▶ after_transcript ─▶ summary + outcome ─▶ webhook (transcript.ready)
beat ─▶ purge_old_recordings
"""

import logging
import time
import uuid
from datetime import timedelta

import httpx
import orjson
from celery import shared_task
from django.conf import settings
from django.utils import timezone

from calls.models import Call
from transcripts import (
    completion_webhook,
    openai_api,
    pipeline,
    recording_fetch,
    search,
    summary,
)
from transcripts.models import Recording, Transcript, WebhookDelivery
from transcripts.selectors import current_transcript
from voiceagents.log_context import current_call_sid

log = logging.getLogger(__name__)


def existing_call(call_id: int) -> Call | None:
    """The call a task is about; a call deleted since the task was queued ends it quietly
    (one call's leftovers must not make noise in another's work)."""
    call = Call.objects.select_related("agent").filter(pk=call_id).first()
    if call is None:
        log.warning("call %s is gone: task skipped", call_id)
    else:
        current_call_sid.set(call.sid)
    return call


# --- the recording --------------------------------------------------------------------


@shared_task(bind=True, acks_late=True, max_retries=None)
def process_recording(self, recording_id: int) -> None:
    """Download a completed recording; then transcribe it. No transaction is held over
    the download: on SQLite that would lock out the web process's writes meanwhile."""
    recording = Recording.objects.select_related("call").filter(pk=recording_id).first()
    if recording is None:
        log.warning("recording %s is gone (call deleted?): nothing to do", recording_id)
        return
    current_call_sid.set(recording.call.sid)
    if recording.state != Recording.State.PENDING:
        return  # a redelivered message: the work is done or given up
    outcome = recording_fetch.fetch(recording)
    if outcome.retry_in_s is not None:
        raise self.retry(countdown=outcome.retry_in_s)
    if not outcome.stored:
        after_transcript.delay(recording.call_id, None)
        return
    transcript = start_transcript(recording)
    transcribe_recording.delay(transcript.pk)


def start_transcript(recording: Recording) -> Transcript:
    call = recording.call
    mode = call.agent.transcript_mode if call.agent else Transcript.Mode.DIARIZED
    return Transcript.objects.create(call=call, recording=recording, mode=mode)


# --- the transcript -------------------------------------------------------------------


@shared_task(bind=True, acks_late=True, max_retries=None)
def transcribe_recording(self, transcript_id: int, first_try_at: float | None = None) -> None:
    transcript = (
        Transcript.objects.select_related("call__agent", "recording")
        .filter(pk=transcript_id)
        .first()
    )
    if transcript is None:
        log.warning("transcript %s is gone (call deleted?): nothing to do", transcript_id)
        return
    current_call_sid.set(transcript.call.sid)
    if transcript.status != Transcript.Status.RUNNING:
        return
    first_try_at = first_try_at or time.time()
    try:
        with transcript.recording.file.open("rb") as stored:
            wav = stored.read()
        pipeline.run(transcript, wav)
    except openai_api.TransientOpenAIError as exc:
        attempt = self.request.retries + 1
        wait = max(recording_fetch.backoff_s(attempt, 5.0), exc.retry_after_s or 0)
        if time.time() + wait - first_try_at <= settings.OPENAI_RETRY_MAX_S:
            log.warning("transcription attempt %d failed (%s); again in %.0fs", attempt, exc, wait)
            raise self.retry(
                countdown=wait,
                kwargs={"transcript_id": transcript_id, "first_try_at": first_try_at},
            ) from exc
        fail_transcript(transcript, f"gave up after {attempt} attempts: {exc}")
    except Exception as exc:  # any fault is stored and shown on the call page
        log.exception("transcription failed")
        fail_transcript(transcript, f"{type(exc).__name__}: {exc}")
    else:
        log.info(
            "transcript %s done: %d lines, method %s, caller %s",
            transcript.pk,
            len(transcript.segments),
            transcript.method,
            transcript.caller_name or "-",
        )
    after_transcript.delay(transcript.call_id, transcript.pk)


def fail_transcript(transcript: Transcript, error: str) -> None:
    """The run is kept as failed; an earlier good transcript stays the call's transcript,
    and without one the live transcript is what staff see."""
    transcript.status = Transcript.Status.FAILED
    transcript.error = error
    transcript.finished_at = timezone.now()
    transcript.save(update_fields=["status", "error", "finished_at"])


# --- after the transcript -------------------------------------------------------------


@shared_task(acks_late=True)
def after_transcript(call_id: int, transcript_id: int | None) -> None:
    """Summary and outcome (from the post-call transcript, else the live one), then the
    transcript.ready webhook, then the optional deletion at Twilio."""
    call = existing_call(call_id)
    if call is None:
        return
    transcript = current_transcript(call)
    try:
        summary.summarise(call, transcript)
    except openai_api.OpenAIError as exc:
        from transcripts.models import CallSummary

        CallSummary.objects.update_or_create(
            call=call, defaults={"error": f"Summary failed: {exc}", "source": "none"}
        )
        log.warning("summary failed: %s", exc)
    search.index_call(call)
    notify(call, WebhookDelivery.Event.TRANSCRIPT_READY)
    if settings.TWILIO_DELETE_RECORDINGS:
        for recording in call.recordings.filter(
            state=Recording.State.STORED, deleted_from_twilio_at__isnull=True
        ):
            recording_fetch.delete_from_twilio(recording)


def rerun_pipeline(call: Call, requested_by: str) -> str:
    """Staff's re-run: a new transcript run from the stored recording (the current
    transcript stays until the new one completes), or a new download if it failed."""
    recording = call.recordings.exclude(state=Recording.State.NONE).order_by("-created_at").first()
    log.info("call %s: pipeline re-run requested by %s", call.sid, requested_by)
    if recording is None:
        after_transcript.delay_on_commit(call.pk, None)
        return "No recording: the summary is made again from the live transcript."
    if recording.state == Recording.State.STORED:
        transcript = start_transcript(recording)
        transcribe_recording.delay_on_commit(transcript.pk)
        return "Transcription started again from the stored recording."
    if recording.state == Recording.State.PURGED:
        after_transcript.delay_on_commit(call.pk, None)
        return "The recording was deleted after the retention period: summary only."
    Recording.objects.filter(pk=recording.pk).update(
        state=Recording.State.PENDING, download_attempts=0, error="", created_at=timezone.now()
    )
    process_recording.delay_on_commit(recording.pk)
    return "Downloading the recording again."


# --- the call ends --------------------------------------------------------------------


@shared_task(acks_late=True)
def call_completed(call_id: int) -> None:
    """When a call ends: the call.completed webhook; and when no recording is coming, the
    summary from the live transcript right away."""
    call = existing_call(call_id)
    if call is None:
        return
    notify(call, WebhookDelivery.Event.CALL_COMPLETED)
    if not call.recording_requested or call.answered_at is None:
        after_transcript.delay(call.pk, None)


def notify(call: Call, event: str) -> None:
    agent = call.agent
    if agent is None or not agent.completion_webhook_url:
        return
    body = completion_webhook.payload(call, event, str(uuid.uuid4()))
    deliver_webhook.delay(call.pk, event, body.decode(), 1)


@shared_task(acks_late=True)
def deliver_webhook(call_id: int, event: str, body: str, attempt: int) -> None:
    """One attempt; a retryable failure schedules the next with exponential backoff."""
    call = existing_call(call_id)
    if call is None:
        return
    agent = call.agent
    if agent is None or not agent.completion_webhook_url:
        return

    event_id = orjson.loads(body)["event_id"]
    row = WebhookDelivery(
        call=call, event=event, event_id=event_id, url=agent.completion_webhook_url, attempt=attempt
    )
    started = time.perf_counter()
    try:
        response = completion_webhook.post(
            agent.completion_webhook_url,
            agent.completion_webhook_secret,
            event,
            event_id,
            body.encode(),
        )
    except httpx.HTTPError as exc:  # the receiver is down or slow: stored, retried
        row.error = f"{type(exc).__name__}: {exc}"[:1000]
    else:
        row.status_code = response.status_code
        row.ok = response.is_success
        row.response_excerpt = response.text[:500]
        if not row.ok:
            row.error = f"HTTP {response.status_code}"
    row.duration_ms = round((time.perf_counter() - started) * 1000)
    row.save()
    if row.ok:
        return
    if completion_webhook.is_retryable(row.status_code) and attempt < settings.WEBHOOK_MAX_ATTEMPTS:
        wait = settings.WEBHOOK_FIRST_RETRY_S * 2 ** (attempt - 1)
        deliver_webhook.apply_async((call_id, event, body, attempt + 1), countdown=wait)
    else:
        log.warning("webhook %s for call %s failed for good: %s", event, call.sid, row.error)


# --- housekeeping ---------------------------------------------------------------------


@shared_task
def purge_old_recordings() -> int:
    """Delete recording files older than RECORDING_RETENTION_DAYS (0 keeps them); the row
    stays, marked purged, so the call page says what happened."""
    days = settings.RECORDING_RETENTION_DAYS
    if days <= 0:
        return 0
    cutoff = timezone.now() - timedelta(days=days)
    purged = 0
    for recording in Recording.objects.filter(state=Recording.State.STORED, stored_at__lt=cutoff):
        recording.file.delete(save=False)
        recording.state = Recording.State.PURGED
        recording.save(update_fields=["file", "state"])
        purged += 1
    if purged:
        log.info("purged %d recordings older than %d days", purged, days)
    return purged


@shared_task
def summarise_calls_without_recording() -> int:
    """A call that asked for a recording but whose callback never came (Twilio could not
    reach us, or recording failed silently) still gets its summary from the live
    transcript, an hour after it ended."""
    cutoff = timezone.now() - timedelta(seconds=settings.RECORDING_CALLBACK_WAIT_S)
    calls = Call.objects.filter(
        recording_requested=True,
        answered_at__isnull=False,
        ended_at__lt=cutoff,
        recordings__isnull=True,
        summary__isnull=True,
    ).values_list("pk", flat=True)[:500]
    for call_id in calls:
        after_transcript.delay(call_id, None)
    return len(calls)
