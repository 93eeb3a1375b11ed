from django.contrib import admin

from transcripts.models import CallSummary, Recording, Transcript, WebhookDelivery


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by the pipeline: staff look, the pipeline writes."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Recording)
class RecordingAdmin(ReadOnlyAdmin):
    list_display = ["sid", "call", "twilio_status", "state", "duration_s", "created_at"]
    list_filter = ["state", "twilio_status"]
    search_fields = ["sid", "call__sid"]


@admin.register(Transcript)
class TranscriptAdmin(ReadOnlyAdmin):
    list_display = ["call", "mode", "status", "method", "caller_name", "started_at"]
    list_filter = ["status", "mode", "method"]
    search_fields = ["call__sid", "caller_name"]


@admin.register(CallSummary)
class CallSummaryAdmin(ReadOnlyAdmin):
    list_display = ["call", "source", "updated_at"]
    search_fields = ["call__sid", "summary"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["call", "event", "attempt", "status_code", "ok", "sent_at"]
    list_filter = ["event", "ok"]
