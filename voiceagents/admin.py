from django import forms
from django.contrib import admin, messages
from django.db import models

from voiceagents.models import TOOL_SETTINGS, Agent, ApiToken, Tool, ToolHeader
from voiceagents.versions import record_version


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "model", "voice", "turn_detection", "interrupt_response", "updated_at"]
    search_fields = ["name", "instructions"]
    filter_horizontal = ["tools"]
    fieldsets = [
        (None, {"fields": ["name", "model", "reasoning_effort", "voice", "speed"]}),
        ("What it says", {"fields": ["instructions", "greeting"]}),
        (
            "Turn taking",
            {
                "fields": [
                    "turn_detection",
                    "interrupt_response",
                    "vad_threshold",
                    "vad_prefix_padding_ms",
                    "vad_silence_duration_ms",
                    "semantic_eagerness",
                    "idle_timeout_ms",
                    "max_call_duration_s",
                ],
                "description": "Threshold, padding and silence apply to server VAD; "
                "eagerness applies to semantic VAD.",
            },
        ),
        (
            "Audio",
            {
                "fields": [
                    "noise_reduction",
                    "input_transcription_model",
                    "input_transcription_keywords",
                    "input_transcription_languages",
                ]
            },
        ),
        ("Tools", {"fields": ["end_call_enabled", "transfer_to", "dtmf_to_model", "tools"]}),
        ("Outbound calls", {"fields": ["machine_detection", "voicemail_message"]}),
        (
            "After the call",
            {
                "fields": [
                    "record_calls",
                    "transcript_mode",
                    "transcript_vocabulary",
                    "outcome_schema",
                    "completion_webhook_url",
                    "completion_webhook_secret",
                ],
                "description": "Recorded calls get a post-call transcript with named "
                "speakers, a summary and the outcome below; the webhook receives each call "
                "when it ends and again when its transcript is ready.",
            },
        ),
    ]

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)  # the tools are set here
        record_version(form.instance, request.user)


class ToolHeaderForm(forms.ModelForm):
    """A header's value is write-only: stored encrypted, never put back in a page."""

    value = forms.CharField(
        required=False,
        strip=False,
        max_length=4000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted and never shown again; leave blank to keep the stored value.",
    )

    class Meta:
        model = ToolHeader
        fields = ["name"]

    def clean_value(self) -> str:
        value = self.cleaned_data["value"]
        if any(ord(c) < 32 or ord(c) == 127 for c in value.replace("\t", "")):
            raise forms.ValidationError(
                "A header value cannot hold line breaks or control characters."
            )
        if not value and not self.instance.sealed_value:
            raise forms.ValidationError("Enter the header's value.")
        return value

    def save(self, commit=True):
        if self.cleaned_data["value"]:
            self.instance.set_value(self.cleaned_data["value"])
        return super().save(commit)


class ToolHeaderInline(admin.TabularInline):
    model = ToolHeader
    form = ToolHeaderForm
    extra = 1
    verbose_name_plural = "Headers sent with every request (credentials go here, not in the URL)"


@admin.register(Tool)
class ToolAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "url"]
    search_fields = ["name", "description"]
    fields = [*TOOL_SETTINGS, "signing_secret"]
    readonly_fields = ["signing_secret"]
    inlines = [ToolHeaderInline]
    # Tool endpoints are web services: a bare host means https, as Django 6 will assume.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "prefix",
        "is_active",
        "can_read_calls",
        "can_read_transcripts",
        "can_write",
        "expires_at",
        "last_used_at",
    ]
    readonly_fields = ["prefix", "created_at", "last_used_at"]
    fields = [
        "name",
        "is_active",
        "can_read_calls",
        "can_read_transcripts",
        "can_write",
        "expires_at",
        "prefix",
        "created_at",
        "last_used_at",
    ]

    def save_model(self, request, obj, form, change):
        raw = None if change else obj.issue()
        super().save_model(request, obj, form, change)
        if raw:
            # The only time the secret is shown: only its hash is stored.
            messages.warning(
                request, f"API token for {obj.name}: {raw} — copy it now, it is not shown again."
            )
