"""Phone numbers, calls and the live transcript (turns)."""

from django.db import models
from django.urls import reverse
from django.utils import timezone

from calls.outcomes import FAULT_REASONS, USAGE_FIELDS, CompletionReason
from voiceagents.models import Agent, AgentVersion


class PhoneNumber(models.Model):
    """A Twilio number (E.164) and the agent that answers it."""

    number = models.CharField(max_length=16, unique=True, help_text="E.164, e.g. +14155550100.")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="phone_numbers")
    label = models.CharField(max_length=100, blank=True)

    def __str__(self) -> str:
        return f"{self.number} → {self.agent}"

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        from calls.phone import is_e164

        if not is_e164(self.number):
            raise ValidationError({"number": "Use E.164: a + followed by up to 15 digits."})


class Call(models.Model):
    class Status(models.TextChoices):
        RINGING = "ringing", "Ringing"
        IN_PROGRESS = "in-progress", "In progress"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"

    sid = models.CharField(max_length=64, unique=True)
    account_sid = models.CharField(max_length=64, blank=True)
    direction = models.CharField(max_length=20, default="inbound")
    # Room for SIP URIs and client identities, not only E.164 numbers.
    from_number = models.CharField(max_length=255, blank=True)
    to_number = models.CharField(max_length=255, blank=True)
    agent = models.ForeignKey(
        Agent, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    # The agent's settings this call ran with (a later change makes a new version).
    agent_version = models.ForeignKey(
        AgentVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="calls"
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RINGING)
    # Outbound calls: who placed it, what the agent is told about the person, and what
    # Twilio's answering-machine detection said.
    placed_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    context = models.JSONField(default=dict, blank=True)
    answered_by = models.CharField(max_length=32, blank=True)
    transferred_to = models.CharField(max_length=255, blank=True)
    # HTTP tools the agent ran during the call, and how many gave the model an error.
    tool_calls = models.PositiveIntegerField(default=0)
    tool_failures = models.PositiveIntegerField(default=0)
    # From the stream's start to the agent's first audio (its first turn's start, on the
    # stream clock the bridge keeps), and agent turns the caller cut off: set when the
    # call ends, for the analytics.
    first_words_ms = models.PositiveIntegerField(null=True, blank=True)
    barge_ins = models.PositiveIntegerField(default=0)
    stream_sid = models.CharField(max_length=64, blank=True)
    # Whether Twilio was asked to record it: a post-call transcript is then on its way.
    recording_requested = models.BooleanField(default=False)
    started_at = models.DateTimeField(default=timezone.now)
    stream_connected_at = models.DateTimeField(null=True, blank=True)
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    completion_reason = models.CharField(
        max_length=32, choices=CompletionReason.choices, blank=True
    )
    error_code = models.CharField(max_length=100, blank=True)
    error_message = models.TextField(blank=True)
    openai_error_count = models.PositiveIntegerField(
        default=0, help_text="OpenAI errors during the call, including those it survived."
    )
    openai_last_error = models.CharField(max_length=100, blank=True)
    input_tokens = models.PositiveIntegerField(default=0)
    output_tokens = models.PositiveIntegerField(default=0)
    total_tokens = models.PositiveIntegerField(default=0)
    input_text_tokens = models.PositiveIntegerField(default=0)
    input_audio_tokens = models.PositiveIntegerField(default=0)
    cached_tokens = models.PositiveIntegerField(default=0)
    output_text_tokens = models.PositiveIntegerField(default=0)
    output_audio_tokens = models.PositiveIntegerField(default=0)

    USAGE_FIELDS = USAGE_FIELDS

    class Meta:
        ordering = ["-started_at"]
        permissions = [
            ("hang_up_call", "Can end a live call"),
            ("place_call", "Can place outbound calls"),
        ]
        indexes = [
            models.Index(fields=["-started_at", "-id"], name="call_newest_first"),
            # The per-agent analytics and lists: one agent's calls over a period.
            models.Index(fields=["agent", "started_at"], name="call_agent_started"),
        ]

    def __str__(self) -> str:
        return f"{self.sid} {self.from_number} → {self.to_number}"

    def get_absolute_url(self) -> str:
        """The call's staff page (the admin's "View on site" leads there)."""
        return reverse("call-detail", args=[self.sid])

    @property
    def ended_with_fault(self) -> bool:
        return self.completion_reason in FAULT_REASONS


class Turn(models.Model):
    """One utterance of the live transcript, saved when it is complete."""

    class Speaker(models.TextChoices):
        AGENT = "agent", "Agent"
        CALLER = "caller", "Caller"
        TOOL = "tool", "Tool call"

    call = models.ForeignKey(Call, on_delete=models.CASCADE, related_name="turns")
    speaker = models.CharField(max_length=10, choices=Speaker.choices)
    text = models.TextField(blank=True)
    started_ms = models.PositiveIntegerField(help_text="Offset from the start of the stream.")
    interrupted = models.BooleanField(default=False)
    item_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["started_ms", "id"]

    def __str__(self) -> str:
        return f"{self.speaker} @{self.started_ms}ms: {self.text[:40]}"
