from django.conf import settings
from django.contrib import admin

from calls.models import Call, PhoneNumber, Turn
from calls.twilio_numbers import twilio_number_status


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ["number", "agent", "label"]
    search_fields = ["number", "label"]
    list_select_related = ["agent"]
    readonly_fields = ["voice_webhook", "in_twilio"]

    @admin.display(description="Voice webhook to set in Twilio")
    def voice_webhook(self, number: PhoneNumber) -> str:
        return f"{settings.PUBLIC_BASE_URL}/twilio/voice (HTTP POST, under A call comes in)"

    @admin.display(description="In your Twilio account")
    def in_twilio(self, number: PhoneNumber) -> str:
        return twilio_number_status(number.number) if number.pk else "(checked once saved)"


class TurnInline(admin.TabularInline):
    model = Turn
    fields = ["started_ms", "speaker", "text", "cut_off"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="cut off")
    def cut_off(self, turn: Turn) -> str:
        # Words, not the admin's green tick: being interrupted is not a success.
        return "cut off by the caller" if turn.interrupted else ""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    list_display = [
        "sid",
        "from_number",
        "to_number",
        "agent",
        "status",
        "started_at",
        "duration_s",
        "completion_reason",
    ]
    list_filter = ["status", "completion_reason", "agent"]
    search_fields = ["sid", "from_number", "to_number"]
    list_select_related = ["agent"]
    inlines = [TurnInline]
    fieldsets = [
        (
            None,
            {"fields": ["sid", "account_sid", "direction", "from_number", "to_number", "agent"]},
        ),
        (
            "Outcome",
            {
                "fields": [
                    "status",
                    "started_at",
                    "answered_at",
                    "ended_at",
                    "duration_s",
                    "completion_reason",
                    "error_code",
                    "error_message",
                ]
            },
        ),
        (
            "Usage (tokens)",
            {"fields": [*Call.USAGE_FIELDS]},
        ),
    ]

    def has_add_permission(self, request):
        return False  # calls are created by Twilio's webhook, never by hand

    def has_change_permission(self, request, obj=None):
        return False  # a record of what happened: viewed (no Save buttons), never edited

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Call._meta.fields]
