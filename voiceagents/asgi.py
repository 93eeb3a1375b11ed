"""ASGI entry point: Django for HTTP, Channels for the Twilio media-stream WebSocket."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceagents.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from calls.routing import websocket_urlpatterns  # noqa: E402
from voiceagents.rate_limit import WebSocketRateLimit  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # No origin or session middleware: Twilio is not a browser; the signed path
        # token authenticates the stream.
        "websocket": WebSocketRateLimit(URLRouter(websocket_urlpatterns)),
    }
)
