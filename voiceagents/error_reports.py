"""What Django's debug error page may show: no settings at all, and no local variable that
holds a credential from them. Django's own filter hides settings by name (KEY, TOKEN,
PASS…) and so showed REDIS_URL and DATABASE_URL with their passwords."""

from django.conf import settings
from django.views.debug import SafeExceptionReporterFilter

CREDENTIAL_SETTINGS = (
    "SECRET_KEY",
    "OPENAI_API_KEY",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_WEBHOOK_SHARED_KEY_SECRET",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DATABASE_URL",
)


def credentials() -> list[str]:
    values = [getattr(settings, name, "") for name in CREDENTIAL_SETTINGS]
    values += [db.get("PASSWORD", "") for db in settings.DATABASES.values()]
    return [v for v in values if isinstance(v, str) and len(v) >= 4]


class NoSettingsReporterFilter(SafeExceptionReporterFilter):
    def get_safe_settings(self) -> dict:
        return {}

    def get_traceback_frame_variables(self, request, tb_frame):
        secrets = credentials()
        return [
            (name, self.cleansed_substitute if any(s in repr(value) for s in secrets) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]
