"""The Agent/Tool domain: what staff configure in the dashboard."""

import hashlib
import re
import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from voiceagents import egress, secret_box, signing
from voiceagents.model_catalog import (
    DEFAULT_REALTIME_MODEL,
    LIVE_TRANSCRIPTION_CHOICES,
    REALTIME_MODEL_CHOICES,
    REASONING_EFFORT_CHOICES,
    live_transcription_model,
    realtime_model,
)
from voiceagents.tool_schema import schema_problem, url_secret_problem
from voiceagents.tools import APP_SET_HEADERS


class Voice(models.TextChoices):
    # marin and cedar first: OpenAI recommends them for quality.
    MARIN = "marin", "Marin (recommended)"
    CEDAR = "cedar", "Cedar (recommended)"
    ALLOY = "alloy", "Alloy"
    ASH = "ash", "Ash"
    BALLAD = "ballad", "Ballad"
    CORAL = "coral", "Coral"
    ECHO = "echo", "Echo"
    SAGE = "sage", "Sage"
    SHIMMER = "shimmer", "Shimmer"
    VERSE = "verse", "Verse"


class TurnDetection(models.TextChoices):
    SERVER_VAD = "server_vad", "Server VAD (silence based)"
    SEMANTIC_VAD = "semantic_vad", "Semantic VAD (model decides when you are done)"


class Eagerness(models.TextChoices):
    AUTO = "auto", "Auto"
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"


class NoiseReduction(models.TextChoices):
    OFF = "", "Off"
    NEAR_FIELD = "near_field", "Near field (handsets, headsets)"
    FAR_FIELD = "far_field", "Far field (speakerphones)"


class MachineDetection(models.TextChoices):
    OFF = "", "Off: the agent talks to whoever answers"
    HANG_UP = "hang_up", "Hang up on answering machines"
    LEAVE_MESSAGE = "leave_message", "Leave the voicemail message after the beep"


class PostCallTranscript(models.TextChoices):
    DIARIZED = "diarized", "Diarized: speakers told apart in the audio, with timestamps"
    STANDARD = "standard", "Standard: plain transcription per channel, with a vocabulary prompt"


TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
SIP_ADDRESS = re.compile(r"^sips?:[^@\s]+@[A-Za-z0-9.-]+(:\d+)?$")


def transfer_destination_problem(destination: str) -> str | None:
    from calls.phone import is_e164

    if not destination:
        return "Give the number or SIP address to transfer to."
    if not (is_e164(destination) or SIP_ADDRESS.match(destination)):
        return "Use an E.164 number (+14155550123) or a SIP address (sip:desk@pbx.example.com)."
    return None


class Tool(models.Model):
    """A function the agent may call during a conversation."""

    class Kind(models.TextChoices):
        END_CALL = "end_call", "Built-in: end the call after saying goodbye"
        TRANSFER_CALL = "transfer_call", "Built-in: hand the caller to a person"
        HTTP = "http", "HTTP: POST the arguments as JSON to a URL, reply with its body"

    name = models.CharField(max_length=64, unique=True, help_text="Function name the model sees.")
    description = models.TextField(help_text="Tells the model when and how to use the tool.")
    parameters = models.JSONField(
        default=dict,
        blank=True,
        help_text='JSON Schema of the arguments, e.g. {"type": "object", "properties": {}}.',
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.HTTP)
    url = models.URLField(blank=True, help_text="For HTTP tools: where the arguments are sent.")
    method = models.CharField(
        max_length=6,
        choices=[("POST", "POST"), ("PUT", "PUT"), ("PATCH", "PATCH"), ("GET", "GET")],
        default="POST",
        help_text="POST, PUT and PATCH send the arguments as a JSON body; GET as query "
        "parameters (the signature then covers the query string).",
    )
    timeout_s = models.FloatField(
        "timeout (s)",
        null=True,
        blank=True,
        validators=[MinValueValidator(0.5), MaxValueValidator(60)],
        help_text="The whole reply must arrive within this; the caller waits meanwhile. "
        "Empty: HTTP_TOOL_TIMEOUT_S (10 s by default).",
    )
    transfer_to = models.CharField(
        max_length=255,
        blank=True,
        help_text="For transfer tools: the number (E.164) or SIP address "
        "(sip:desk@pbx.example.com) the caller is put through to.",
    )
    signing_secret = models.CharField(
        max_length=80,
        blank=True,
        editable=False,
        help_text="Every request of this tool is signed with it (X-Voiceagents-Signature: "
        'v1=HMAC-SHA256 of "<X-Voiceagents-Timestamp>.<body>"); give it to the receiver.',
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if not self.signing_secret:
            self.signing_secret = signing.new_secret()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        errors = {}
        if not TOOL_NAME_PATTERN.match(self.name or ""):
            errors["name"] = "Use 1-64 letters, digits, underscores or dashes."
        if not self.parameters:
            self.parameters = {"type": "object", "properties": {}}
        if not isinstance(self.parameters, dict) or self.parameters.get("type") != "object":
            errors["parameters"] = 'The schema must be an object with "type": "object".'
        elif problem := schema_problem(self.parameters):
            errors["parameters"] = problem
        if self.kind == self.Kind.TRANSFER_CALL and (
            problem := transfer_destination_problem(self.transfer_to)
        ):
            errors["transfer_to"] = problem
        if self.kind == self.Kind.HTTP and not self.url:
            errors["url"] = "An HTTP tool needs a URL."
        elif problem := url_secret_problem(self.url):
            errors["url"] = problem
        elif self.kind == self.Kind.HTTP and (problem := egress.url_problem(self.url)):
            errors["url"] = problem[0].upper() + problem[1:] + "."
        if errors:
            raise ValidationError(errors)

    def realtime_definition(self) -> dict:
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters or {"type": "object", "properties": {}},
        }


# What staff set on a tool, in the order the admin, the console and the API show it.
TOOL_SETTINGS = [
    "name",
    "kind",
    "description",
    "parameters",
    "url",
    "method",
    "timeout_s",
    "transfer_to",
]
HEADER_NAME_PATTERN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")  # an HTTP token


class ToolHeader(models.Model):
    """A header sent with every request of an HTTP tool, typically a credential
    (Authorization: Bearer …). The value is stored encrypted (voiceagents/secret_box.py)
    and never shown again once saved."""

    tool = models.ForeignKey(Tool, on_delete=models.CASCADE, related_name="headers")
    name = models.CharField(max_length=100, help_text="e.g. Authorization or X-Api-Key")
    sealed_value = models.TextField(editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["tool", "name"], name="one_header_of_a_name_per_tool")
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not HEADER_NAME_PATTERN.match(self.name or ""):
            raise ValidationError({"name": "Use a header name: letters, digits and - only."})
        if self.name.lower() in APP_SET_HEADERS:
            raise ValidationError({"name": f"{self.name} is set by the app itself."})

    def set_value(self, value: str) -> None:
        self.sealed_value = secret_box.seal(value)

    def value(self) -> str:
        return secret_box.unseal(self.sealed_value)


class Agent(models.Model):
    """A configured phone agent: model, voice, prompt, turn taking and tools."""

    name = models.CharField(max_length=100)
    model = models.CharField(
        max_length=40, choices=REALTIME_MODEL_CHOICES, default=DEFAULT_REALTIME_MODEL
    )
    reasoning_effort = models.CharField(
        max_length=10,
        choices=REASONING_EFFORT_CHOICES,
        blank=True,
        help_text="Reasoning models only: more effort answers harder questions, more slowly.",
    )
    voice = models.CharField(max_length=20, choices=Voice.choices, default=Voice.MARIN)
    instructions = models.TextField(
        blank=True, help_text="The system prompt: who the agent is and how it behaves."
    )
    greeting = models.TextField(
        blank=True,
        help_text="What the agent says first when it picks up. Empty: it greets in its own words.",
    )
    turn_detection = models.CharField(
        max_length=20, choices=TurnDetection.choices, default=TurnDetection.SERVER_VAD
    )
    vad_threshold = models.FloatField(
        default=0.5,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Server VAD: higher needs louder speech.",
    )
    vad_prefix_padding_ms = models.PositiveIntegerField(
        default=300, validators=[MaxValueValidator(5000)]
    )
    vad_silence_duration_ms = models.PositiveIntegerField(
        default=500, validators=[MinValueValidator(100), MaxValueValidator(10000)]
    )
    semantic_eagerness = models.CharField(
        max_length=10, choices=Eagerness.choices, default=Eagerness.AUTO
    )
    interrupt_response = models.BooleanField(
        default=True, help_text="Let callers interrupt the agent by speaking (barge-in)."
    )
    noise_reduction = models.CharField(
        max_length=12, choices=NoiseReduction.choices, default=NoiseReduction.NEAR_FIELD, blank=True
    )
    input_transcription_model = models.CharField(
        max_length=40,
        choices=LIVE_TRANSCRIPTION_CHOICES,
        default="gpt-4o-transcribe",
        blank=True,
        help_text="Transcribes the caller live; needed for caller turns in the live transcript.",
    )
    input_transcription_keywords = models.TextField(
        blank=True,
        help_text="gpt-transcribe and gpt-live-transcribe: words and names to expect, "
        "one per line (e.g. product names).",
    )
    input_transcription_languages = models.CharField(
        max_length=100,
        blank=True,
        help_text="gpt-transcribe and gpt-live-transcribe: the callers' possible languages "
        "as ISO-639-1 codes, comma separated (e.g. 'en, es').",
    )
    idle_timeout_ms = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1000), MaxValueValidator(60000)],
        help_text="Server VAD only: after this much silence from the caller (once the agent "
        "has finished speaking) the agent prompts them. Empty: wait for the caller.",
    )
    max_call_duration_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(30), MaxValueValidator(4 * 3600)],
        help_text="After this many seconds the agent says goodbye and hangs up. Empty: no limit.",
    )
    speed = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.25), MaxValueValidator(1.5)]
    )
    tools = models.ManyToManyField(Tool, blank=True, related_name="agents")
    machine_detection = models.CharField(
        "answering machines",
        max_length=16,
        choices=MachineDetection.choices,
        blank=True,
        help_text="Outbound calls: Twilio's answering-machine detection (a few seconds "
        "before the agent speaks to a person).",
    )
    voicemail_message = models.TextField(
        blank=True,
        help_text="Outbound calls that reach a machine: said after the beep, then the call ends.",
    )
    transfer_to = models.CharField(
        "transfer to",
        max_length=255,
        blank=True,
        help_text="A number (E.164) or SIP address: the agent may put callers through to it "
        "(the built-in transfer_call tool) after telling them. Empty: no transfers.",
    )
    dtmf_to_model = models.BooleanField(
        "keypresses to the agent",
        default=True,
        help_text="A key the caller presses reaches the agent as '[caller pressed 5]' and it "
        "answers. Off: keypresses only show in the transcript.",
    )
    end_call_enabled = models.BooleanField(
        "can hang up",
        default=True,
        help_text="The agent may end the call itself (the built-in end_call tool) once the "
        "caller is done, after saying goodbye.",
    )

    # --- After hangup.
    record_calls = models.BooleanField(
        default=True,
        help_text="Record calls in two channels (caller, agent) for the post-call transcript. "
        "Off: the live transcript is the only transcript.",
    )
    transcript_mode = models.CharField(
        max_length=16, choices=PostCallTranscript.choices, default=PostCallTranscript.DIARIZED
    )
    transcript_vocabulary = models.TextField(
        blank=True,
        help_text="Standard mode: languages and words to expect (e.g. 'English and Spanish; "
        "sourdough, focaccia'), sent as the transcription prompt.",
    )
    outcome_schema = models.JSONField(
        default=dict,
        blank=True,
        help_text='JSON Schema of what to extract from each call, e.g. {"type": "object", '
        '"properties": {"appointment_booked": {"type": "boolean"}, "reason": {"type": '
        '"string"}}}. Empty: no outcome.',
    )
    completion_webhook_url = models.URLField(
        blank=True,
        max_length=500,
        help_text="POSTed when a call ends and again when its transcript is ready, "
        "signed with the secret below.",
    )
    completion_webhook_secret = models.CharField(
        max_length=64,
        blank=True,
        help_text="HMAC-SHA256 key for the X-Voiceagents-Signature header; made when empty.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    archived_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Archived agents take no calls."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs):
        if self.completion_webhook_url and not self.completion_webhook_secret:
            self.completion_webhook_secret = signing.new_secret()
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        from django.urls import reverse

        return reverse("agent-detail", args=[self.pk])

    def clean(self) -> None:
        from transcripts.outcome_schema import outcome_schema_errors

        errors: dict[str, str | list[str]] = {}
        problems = outcome_schema_errors(self.outcome_schema) if self.outcome_schema else []
        if problems:
            errors["outcome_schema"] = problems
        info = realtime_model(self.model)
        if self.reasoning_effort and not (info and info.reasoning):
            errors["reasoning_effort"] = (
                f"{self.model} is not a reasoning model; leave reasoning effort at its default."
            )
        transcriber = live_transcription_model(self.input_transcription_model)
        takes_hints = bool(transcriber and transcriber.keywords_and_languages)
        for field in ("input_transcription_keywords", "input_transcription_languages"):
            if getattr(self, field).strip() and not takes_hints:
                errors[field] = (
                    "Only gpt-transcribe and gpt-live-transcribe take keywords and languages."
                )
        bad_codes = [c for c in self.transcription_languages() if not re.fullmatch(r"[a-z]{2}", c)]
        if bad_codes:
            errors["input_transcription_languages"] = (
                f"Use two-letter ISO-639-1 codes such as 'en, es' (not {', '.join(bad_codes)})."
            )
        if self.machine_detection == MachineDetection.LEAVE_MESSAGE and not (
            self.voicemail_message.strip()
        ):
            errors["voicemail_message"] = "Write the message to leave on answering machines."
        if self.transfer_to and (problem := transfer_destination_problem(self.transfer_to)):
            errors["transfer_to"] = problem
        if self.idle_timeout_ms and self.turn_detection != TurnDetection.SERVER_VAD:
            errors["idle_timeout_ms"] = "The idle timeout works with server VAD only."
        if errors:
            raise ValidationError(errors)

    @property
    def current_version(self) -> "AgentVersion | None":
        return self.versions.order_by("-number").first()

    def transcription_keywords(self) -> list[str]:
        return [k.strip() for k in self.input_transcription_keywords.splitlines() if k.strip()]

    def transcription_languages(self) -> list[str]:
        return [c.strip() for c in self.input_transcription_languages.split(",") if c.strip()]


class AgentVersion(models.Model):
    """An agent as it was after one change: every setting and its tools, who changed it,
    when, and what changed from the version before. Each call records the version it ran
    with; a version can be restored (which makes a new version)."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    note = models.CharField(max_length=200, blank=True)  # e.g. "restored version 3"
    settings = models.JSONField()  # voiceagents.versions.snapshot()
    changes = models.JSONField(default=dict)  # field: [before, after]

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "number"], name="one_version_number_per_agent")
        ]

    def __str__(self) -> str:
        return f"{self.agent} v{self.number}"


def hash_token(raw_token: str) -> str:
    return hashlib.sha256(raw_token.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the read API. Only its hash is stored; staff see it once."""

    name = models.CharField(max_length=100, help_text="Who or what uses this token.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    is_active = models.BooleanField(default=True)
    # Scopes: what a request with this token may do.
    can_read_calls = models.BooleanField(
        "read calls", default=True, help_text="List calls and read who, when, how long, cost."
    )
    can_read_transcripts = models.BooleanField(
        "read transcripts",
        default=True,
        help_text="Also read what was said: live turns, post-call transcript, summary, outcome.",
    )
    can_write = models.BooleanField(
        "write", default=False, help_text="Change things through the API (start calls, …)."
    )
    expires_at = models.DateTimeField(
        null=True, blank=True, help_text="Refused from this moment on; empty: never expires."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def allows(self, scope: str) -> bool:
        return {
            "read_calls": self.can_read_calls,
            "read_transcripts": self.can_read_calls and self.can_read_transcripts,
            "write": self.can_write,
        }[scope]

    def issue(self) -> str:
        """Give this token a new secret value and return it (the only time it is readable)."""
        raw = "va_" + secrets.token_urlsafe(32)
        self.token_hash = hash_token(raw)
        self.prefix = raw[:10]
        return raw

    @classmethod
    def find_active(cls, raw_token: str) -> "ApiToken | None":
        return (
            cls.objects.filter(token_hash=hash_token(raw_token), is_active=True)
            .exclude(expires_at__lte=timezone.now())
            .first()
        )
