"""An experiment for the report, not part of the app: the media-stream consumer with a
receive loop that handles every Twilio frame already buffered without a trip through
the event loop, instead of Channels' `await_many_dispatch` (a new task and an
`asyncio.wait` per frame). Run it with `python -m bench.calls --asgi
bench.direct_receive:application` and compare with the app's own consumer."""

import asyncio
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceagents.settings")
django_asgi_app = get_asgi_application()

from channels.exceptions import StopConsumer  # noqa: E402
from channels.layers import get_channel_layer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from calls.consumers import MediaStreamConsumer  # noqa: E402
from voiceagents.rate_limit import WebSocketRateLimit  # noqa: E402


class DirectReceiveConsumer(MediaStreamConsumer):
    async def __call__(self, scope, receive, send) -> None:
        self.scope = scope
        self.base_send = send
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        # Staff hang-ups arrive through the channel layer; they wait for the frame being
        # handled, as await_many_dispatch would make them.
        turn = asyncio.Lock()
        layer_task = asyncio.create_task(self._channel_layer_loop(turn))
        try:
            while True:
                message = await receive()  # returns at once while frames are buffered
                async with turn:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            layer_task.cancel()

    async def _channel_layer_loop(self, turn: asyncio.Lock) -> None:
        while True:
            message = await self.channel_layer.receive(self.channel_name)
            async with turn:
                await self.dispatch(message)


application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": WebSocketRateLimit(
            URLRouter([path("twilio/stream/<str:token>", DirectReceiveConsumer.as_asgi())])
        ),
    }
)
