from urllib.parse import urlsplit

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class VoiceAgentsConfig(AppConfig):
    name = "voiceagents"
    verbose_name = "Voice agents"

    def ready(self) -> None:
        checks.register(public_base_url_check, checks.Tags.compatibility)


def public_base_url_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Production refuses a non-https PUBLIC_BASE_URL in settings; debug mode only warns
    (the warning shows in `migrate`, which scripts/run runs)."""
    url = urlsplit(settings.PUBLIC_BASE_URL)
    if url.scheme == "https" or url.hostname in ("127.0.0.1", "localhost", "::1"):
        return []  # loopback is the fakes' world: Twilio could not reach it anyway
    return [
        checks.Warning(
            f"PUBLIC_BASE_URL={settings.PUBLIC_BASE_URL!r} is not https://: Twilio refuses "
            "ws:// media streams, so real calls would fail after the webhook answered.",
            hint="Fine with the fakes (scripts/run --fakes); set an https:// URL for Twilio.",
            id="voiceagents.W001",
        )
    ]
