from channels.auth import AuthMiddlewareStack
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import AllowedHostsOriginValidator
from django.urls import path, re_path

from calls.browser_calls import BrowserCallConsumer
from calls.consumers import MediaStreamConsumer


class UnknownSocketPath(AsyncWebsocketConsumer):
    """Any other WebSocket path: refused at the handshake (403), without the traceback
    Channels' router logs for a path it has no route for."""

    async def connect(self) -> None:
        await self.close()


websocket_urlpatterns = [
    path("twilio/stream/<str:token>", MediaStreamConsumer.as_asgi()),
    # A staff member's browser: their session, from a page of this site.
    path(
        "browser/call/<int:agent_id>",
        AllowedHostsOriginValidator(AuthMiddlewareStack(BrowserCallConsumer.as_asgi())),
    ),
    re_path(r"", UnknownSocketPath.as_asgi()),
]
