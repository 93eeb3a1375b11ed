"""Talking to an agent in the browser (the agent page's "Test call"): the page's
microphone streams over a WebSocket to this consumer, which drives the same bridge as a
phone call. The page speaks Twilio's Media Streams protocol (connected, start, media,
mark, stop; the server sends media, mark, clear), so the bridge cannot tell the
difference, except for the audio: 16-bit PCM at 24 kHz instead of µ-law, passed to the
Realtime API as `audio/pcm`. The call is stored with direction `browser`.

Authenticated by the staff session (AuthMiddlewareStack) with the origin checked
against ALLOWED_HOSTS, so another site cannot open one with a staff member's cookies.
Needs the same permissions as placing a call."""

import logging
import uuid

import orjson
from channels.db import database_sync_to_async

from calls.consumers import MediaStreamConsumer
from calls.models import Call
from voiceagents.models import Agent
from voiceagents.realtime import BROWSER_AUDIO

log = logging.getLogger(__name__)
PERMISSIONS = ("voiceagents.view_agent", "calls.place_call")


def start_browser_call(agent_id: int, user) -> str | None:
    """A new call row for this staff member's test call; None without the permissions
    or for an agent that is gone or archived."""
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return None
    if not user.has_perms(PERMISSIONS):
        return None
    agent = Agent.objects.filter(pk=agent_id, archived_at__isnull=True).first()
    if agent is None:
        return None
    call = Call.objects.create(
        sid="BR" + uuid.uuid4().hex,
        direction="browser",
        from_number=f"browser:{user.get_username()}"[:255],
        to_number=agent.name[:255],
        agent=agent,
        agent_version=agent.current_version,
        placed_by=user,
    )
    return call.sid


class BrowserCallConsumer(MediaStreamConsumer):
    async def websocket_connect(self, message: dict) -> None:
        agent_id = self.scope["url_route"]["kwargs"]["agent_id"]
        user = self.scope.get("user")
        call_sid = await database_sync_to_async(start_browser_call)(agent_id, user)
        if call_sid is None:
            log.warning("refused a browser test call to agent %s", agent_id)
            await self.send({"type": "websocket.close", "code": 4403})
            return
        if await self._start_call(call_sid, audio=BROWSER_AUDIO):
            # The page needs the sid for its `start`, and to show the live transcript.
            await self.send(
                {
                    "type": "websocket.send",
                    "text": orjson.dumps({"event": "call", "callSid": call_sid}).decode(),
                }
            )
