"""After hangup: the call's recording, its post-call transcripts, summary and outcome, and
every delivery attempt of the agent's completion webhook."""

import uuid

from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.utils import timezone

from calls.models import Call


def recording_storage():
    """Recordings live in their own storage (never under a public media URL)."""
    from django.core.files.storage import storages

    return storages["recordings"]


def recording_path(recording: "Recording", filename: str) -> str:
    return f"{timezone.now():%Y/%m}/{recording.sid}.wav"


class Recording(models.Model):
    """One Twilio recording of a call. The unique sid makes Twilio's retried callbacks
    harmless: the second insert fails instead of running the work twice."""

    class TwilioStatus(models.TextChoices):
        COMPLETED = "completed", "Completed"
        ABSENT = "absent", "Absent (no audio)"
        FAILED = "failed", "Failed at Twilio"

    class State(models.TextChoices):
        PENDING = "pending", "Waiting to download"
        STORED = "stored", "Stored"
        FAILED = "failed", "Download failed"
        NONE = "none", "No recording at Twilio"
        PURGED = "purged", "Deleted after the retention period"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="recordings")
    sid = models.CharField(max_length=64, unique=True)
    account_sid = models.CharField(max_length=64, blank=True)
    twilio_status = models.CharField(max_length=16, choices=TwilioStatus.choices)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    source_url = models.URLField(max_length=500, blank=True, help_text="Twilio's RecordingUrl.")
    channels = models.PositiveSmallIntegerField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    file = models.FileField(
        storage=recording_storage, upload_to=recording_path, blank=True, max_length=300
    )
    size_bytes = models.PositiveBigIntegerField(null=True, blank=True)
    download_attempts = models.PositiveIntegerField(default=0)
    error_code = models.CharField(max_length=64, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    stored_at = models.DateTimeField(null=True, blank=True)
    deleted_from_twilio_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("listen_recording", "Can listen to call recordings")]

    def __str__(self) -> str:
        return f"{self.sid} ({self.get_state_display()})"


class Transcript(models.Model):
    """One run of the post-call transcription. A call may have several (re-runs, failures);
    the newest completed one is the call's transcript, so a failed run never replaces it."""

    class Mode(models.TextChoices):
        DIARIZED = "diarized", "Diarized (speakers from the audio)"
        STANDARD = "standard", "Standard (speakers from the channels)"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    class Method(models.TextChoices):
        CHANNEL = "channel", "Recording channels"
        MODEL = "model", "Language model"
        NONE = "none", "Undecided"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="transcripts")
    recording = models.ForeignKey(
        Recording, null=True, blank=True, on_delete=models.SET_NULL, related_name="transcripts"
    )
    mode = models.CharField(max_length=16, choices=Mode.choices)
    model = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    # [{"speaker": "agent"|"caller", "label": "A", "start": 1.2, "end": 3.4, "text": "…",
    #   "channel": 1|2|None}], in time order, consecutive lines of one speaker merged.
    segments = models.JSONField(default=list, blank=True)
    agent_label = models.CharField(max_length=100, blank=True)
    caller_name = models.CharField(max_length=100, blank=True)
    method = models.CharField(max_length=16, choices=Method.choices, default=Method.NONE)
    disagreement = models.TextField(blank=True, help_text="Where the model and channels differ.")
    text = models.TextField(blank=True, help_text="The labelled transcript, one line per turn.")
    warning = models.TextField(blank=True)
    error = models.TextField(blank=True)
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    timings = models.JSONField(default=dict, blank=True, help_text="Seconds spent per step.")
    audio_seconds = models.FloatField(default=0)
    requests = models.PositiveIntegerField(default=0, help_text="Transcription requests sent.")
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0)

    class Meta:
        ordering = ["-started_at", "-id"]
        permissions = [("rerun_pipeline", "Can re-run the post-call pipeline")]
        indexes = [models.Index(fields=["call", "status", "-finished_at"])]

    def __str__(self) -> str:
        return f"{self.call.sid} {self.mode} {self.status}"


class CallSummary(models.Model):
    """A short summary of the call and the agent's structured outcome."""

    call = models.OneToOneField(Call, on_delete=models.CASCADE, related_name="summary")
    transcript = models.ForeignKey(
        Transcript, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=16, help_text="'recording' or 'live' transcript.")
    model = models.CharField(max_length=64, blank=True)
    summary = models.TextField(blank=True)
    outcome = models.JSONField(null=True, blank=True)
    outcome_error = models.TextField(blank=True)
    error = models.TextField(blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"summary of {self.call.sid}"


class WebhookDelivery(models.Model):
    """One attempt to POST an event to the agent's completion webhook. Attempts of one
    event share `event_id`, which receivers use to drop duplicates."""

    class Event(models.TextChoices):
        CALL_COMPLETED = "call.completed", "Call completed"
        TRANSCRIPT_READY = "transcript.ready", "Transcript ready"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="webhook_deliveries")
    event = models.CharField(max_length=32, choices=Event.choices)
    event_id = models.UUIDField(default=uuid.uuid4)
    url = models.URLField(max_length=500)
    attempt = models.PositiveIntegerField(default=1)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    ok = models.BooleanField(default=False)
    error = models.TextField(blank=True)
    response_excerpt = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["sent_at", "id"]

    def __str__(self) -> str:
        return f"{self.event} #{self.attempt} → {self.status_code or self.error[:30]}"


class CallSearch(models.Model):
    """What a search finds a call by: the caller's name, the agent's name and everything
    said (the post-call transcript and the live turns), written when the post-call work
    ends. On PostgreSQL `document` holds its tsvector under a GIN index (migration 0003),
    so a word in every call or in a handful is found without scanning transcripts."""

    call = models.OneToOneField(
        Call, on_delete=models.CASCADE, primary_key=True, related_name="search"
    )
    text = models.TextField()
    document = SearchVectorField(null=True)  # filled on PostgreSQL only

    def __str__(self) -> str:
        return f"search text of {self.call_id}"
