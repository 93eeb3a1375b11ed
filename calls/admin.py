from django.contrib import admin

from calls.models import Call, PhoneNumber, Turn


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    list_display = ["number", "agent", "label"]
    search_fields = ["number", "label"]
    list_select_related = ["agent"]


class TurnInline(admin.TabularInline):
    model = Turn
    fields = ["started_ms", "speaker", "text", "interrupted"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
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

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Call._meta.fields]
