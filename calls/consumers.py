"""The Twilio media-stream WebSocket: moves frames between Twilio, the call bridge and the
OpenAI Realtime socket. All decisions are the bridge's; this module only does I/O."""

import asyncio
import contextlib
import contextvars
import dataclasses
import functools
import logging
from urllib.parse import urlsplit

from channels.consumer import AsyncConsumer
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from django.conf import settings

# Imported from the submodule: `websockets.X` goes through a lazy-import hook on every
# access, which showed up in the per-frame profile.
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from calls import call_records
from calls.bridge import (
    Action,
    CallBridge,
    EndCall,
    ReconnectOpenAI,
    RunTool,
    SaveTurn,
    SendOpenAI,
    SendTwilio,
    StreamStarted,
    TransferCall,
)
from calls.outcomes import CompletionReason
from calls.stream_tokens import read_stream_token
from calls.transfer import transfer_call
from calls.twilio_signature import is_signed_by_twilio
from calls.views import call_group
from calls.webhooks import stream_url
from voiceagents import realtime
from voiceagents.log_context import current_call_sid
from voiceagents.realtime_socket import RealtimeConnection
from voiceagents.tools import run_http_tool, shared_http_client, tool_error
from voiceagents.websocket_frames import SHORTCUT_EXTENSION

log = logging.getLogger(__name__)

# Frames queued for OpenAI while its socket is still opening (50 a second of audio).
MAX_OPENAI_BACKLOG = 1500
OPENAI_CLOSE_TIMEOUT_S = 2.0
# Twilio sends `start` right after `connected`; a stream without one is ended after this.
STREAM_START_TIMEOUT_S = 5.0
# After an agent's time limit, how long its goodbye may take before the line is cut.
GOODBYE_GRACE_S = 30.0
# What a Twilio frame handed over by the web server left to do (`_frame_now`): queued
# behind it for the receive loop. Not a handler name, so no channel-layer message can be one.
LEFT_TO_PERFORM = "voiceagents.left_to_perform"
NO_ACTIONS: list[Action] = []


def openai_address() -> str:
    """Host and port of the Realtime API, for error messages (never the whole URL)."""
    url = urlsplit(settings.OPENAI_BASE_URL)
    return f"{url.hostname}:{url.port or (443 if url.scheme in ('https', 'wss') else 80)}"


class MediaStreamConsumer(AsyncConsumer):
    def __init__(self) -> None:
        super().__init__()
        self.bridge: CallBridge | None = None
        self.call_pk: int | None = None
        self.openai: RealtimeConnection | None = None
        self.openai_backlog: list[str] = []
        self.openai_left: asyncio.Task | None = None  # see _openai_event_now
        self.reconnect_requested = False
        self.session_started_at = 0.0
        self.openai_task: asyncio.Task | None = None
        self.end_task: asyncio.Task | None = None
        self.background: set[asyncio.Task] = set()
        self.db_writes: list[asyncio.Task] = []
        self.twilio_open = False
        # Daphne's side of Twilio's socket, when the web server offers it (SHORTCUT_EXTENSION):
        # frames handed over as they are read, and sends without `websocket.send`.
        self.twilio_socket = None
        self.in_message = False  # the receive loop is handling a message

    async def __call__(self, scope, receive, send) -> None:
        # Channels' own loop (await_many_dispatch) makes a task and runs an asyncio.wait
        # for every message: at 50 frames a second per call that was a fifth of the CPU
        # profile under load. Twilio's frames are read in a plain loop instead (when the
        # web server hands them over as they are read, only those that queue behind an
        # earlier message come this way), and channel-layer messages (staff hang-up) in
        # a task beside it.
        self.scope = scope
        self.base_send = send
        self.twilio_socket = scope.get("extensions", {}).get(SHORTCUT_EXTENSION)
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        staff_messages = asyncio.create_task(self._receive_channel_layer())
        try:
            while True:
                self.in_message = False
                message = await receive()
                self.in_message = True
                if message["type"] == "websocket.receive":  # 50 a second: no lookup
                    await self.websocket_receive(message)
                elif message["type"] == LEFT_TO_PERFORM:
                    await self._finish_guarded(message["actions"])
                else:
                    await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            staff_messages.cancel()
            if self.twilio_socket is not None:
                self.twilio_socket.receive_text_with(None)

    async def _receive_channel_layer(self) -> None:
        try:
            while True:
                await self.dispatch(await self.channel_layer.receive(self.channel_name))
        except Exception:
            # A channel-layer outage loses staff hang-ups, not the call itself.
            log.exception("call %s: channel layer receive failed", self._call_sid())

    def _call_sid(self) -> str:
        return self.bridge.call_sid if self.bridge else "-"

    async def dispatch(self, message: dict) -> None:
        # Channels would hop to a thread to close stale DB connections before every
        # message, i.e. every 20 ms frame. This consumer reaches the database only through
        # database_sync_to_async, which does that itself, so the hop is skipped.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # --- Twilio socket ------------------------------------------------------------------
    async def websocket_connect(self, message: dict) -> None:
        token = self.scope["url_route"]["kwargs"]["token"]
        if not self._handshake_signed_by_twilio(token):
            log.warning("refused media stream: the handshake is not signed by Twilio")
            await self.send({"type": "websocket.close", "code": 4403})
            return
        call_sid = read_stream_token(token)
        if not call_sid:
            log.warning("refused media stream: token invalid or expired")
            await self.send({"type": "websocket.close", "code": 4403})
            return
        await self._start_call(call_sid, stream_token=token)

    async def _start_call(
        self, call_sid: str, stream_token: str = "", audio: realtime.AudioFormat | None = None
    ) -> bool:
        """Claim the call's one stream, accept the socket and open the Realtime session."""
        claimed = await database_sync_to_async(call_records.claim_stream)(call_sid)
        if claimed is None:
            # Closing before accepting answers the handshake with 403: no OpenAI session
            # is ever opened for a socket that has not proven which call it belongs to.
            log.warning("refused media stream of call %s: unknown, ended or reused", call_sid)
            await self.send({"type": "websocket.close", "code": 4403})
            return False
        self.call_pk, agent = claimed
        if audio is not None:
            agent = dataclasses.replace(agent, audio=audio)
        current_call_sid.set(call_sid)
        self.bridge = CallBridge(
            call_sid,
            agent,
            stream_token=stream_token,
            mark_interval_ms=settings.MARK_INTERVAL_MS,
            inbound_window_ms=settings.INBOUND_AUDIO_WINDOW_MS,
        )
        # Staff may end the call from the dashboard served by any web process.
        await self.channel_layer.group_add(call_group(call_sid), self.channel_name)
        await self.send({"type": "websocket.accept"})
        self.twilio_open = True
        self._hand_frames_over()
        # Open the Realtime session now, while Twilio is still sending `connected` and
        # `start`, so the greeting is not delayed by the OpenAI handshake.
        self.session_started_at = asyncio.get_running_loop().time()
        self.openai_task = asyncio.create_task(self._run_openai(agent))
        self._spawn(self._roll_over_sessions())
        self._spawn(self._expect_start())
        if agent.max_call_duration_s:
            self._spawn(self._enforce_time_limit(agent.max_call_duration_s))
        return True

    def _handshake_signed_by_twilio(self, token: str) -> bool:
        """Twilio signs the handshake like a webhook, over the wss:// URL without
        parameters; checked on top of the single-use token, as Twilio's docs ask."""
        headers = dict(self.scope.get("headers") or [])
        return is_signed_by_twilio(
            stream_url(token),
            {},
            headers.get(b"x-twilio-signature", b"").decode("latin-1"),
            headers.get(b"x-twilio-webhooks-signature-settings", b"").decode("latin-1"),
        )

    async def websocket_receive(self, message: dict) -> None:
        if self.bridge is None:
            return
        raw = message.get("text") or message.get("bytes")
        if raw is None:
            return
        await self._guarded(self.bridge.on_twilio_text, raw)

    def _hand_frames_over(self) -> None:
        """Have the web server hand Twilio's text frames to `_frame_now` as it reads them,
        run in this task's context (so that their logs carry the call sid)."""
        if self.twilio_socket is not None:
            self.twilio_socket.receive_text_with(
                functools.partial(contextvars.copy_context().run, self._frame_now)
            )

    def _frame_now(self, text: str) -> dict | None:
        """A Twilio text frame handed over by the web server as it was read, with nothing
        queued before it. The bridge takes it at once unless the receive loop is busy
        with an earlier message, and its actions are carried out at once as far as
        nothing needs waiting for; the rest is queued behind it for the receive loop."""
        if self.in_message or self.bridge is None:
            return {"type": "websocket.receive", "text": text}
        actions = self._step_now(self.bridge.on_twilio_text, text)
        return {"type": LEFT_TO_PERFORM, "actions": actions} if actions else None

    async def call_hangup(self, message: dict) -> None:
        if self.bridge is not None:
            log.info("call %s: ended by staff (%s)", self.bridge.call_sid, message.get("by"))
            await self._guarded(self.bridge.on_staff_hangup)

    async def websocket_disconnect(self, message: dict) -> None:
        self.twilio_open = False
        if self.bridge is not None:
            await self.channel_layer.group_discard(
                call_group(self.bridge.call_sid), self.channel_name
            )
            await self._guarded(self.bridge.on_twilio_closed)
            if self.end_task is not None:
                await asyncio.shield(self.end_task)
        raise StopConsumer

    # --- OpenAI socket ------------------------------------------------------------------
    async def _run_openai(self, agent: realtime.AgentConfig) -> None:
        """Own the OpenAI socket for the whole call: connect, pump events into the bridge,
        and open a fresh session when the bridge asks for one (lost link, rollover)."""
        bridge = self.bridge
        assert bridge is not None
        configure = bridge.on_openai_connected
        while not bridge.ended:
            self.reconnect_requested = False
            try:
                ws = await realtime.connect(
                    settings.OPENAI_BASE_URL,
                    settings.OPENAI_API_KEY,
                    agent.model,
                    settings.OPENAI_CONNECT_TIMEOUT_S,
                )
            except (
                OSError,
                TimeoutError,
                InvalidHandshake,
                InvalidURI,
            ) as exc:
                # Named with the address: uvloop's "Connection refused" does not say it.
                detail = f"{exc} ({openai_address()})"
                log.error("call %s: OpenAI connection failed: %s", bridge.call_sid, detail)
                await self._perform(bridge.on_openai_connect_failed(detail))
                return
            self.session_started_at = asyncio.get_running_loop().time()
            try:
                # Session set-up first, then whatever Twilio sent meanwhile, in order.
                for action in configure():
                    await ws.send(action.text)
                while self.openai_backlog:
                    batch, self.openai_backlog = self.openai_backlog, []
                    for text in batch:
                        await ws.send(text)
                self.openai = ws
                ws.hand_text_to(self._openai_event_now)
                async for raw in ws:
                    await self._openai_left_done()
                    await self._perform(bridge.on_openai_text(raw))
                detail = f"closed by OpenAI ({ws.close_code} {ws.close_reason})"
            except ConnectionClosed as exc:
                detail = f"connection lost ({exc})"
            except asyncio.CancelledError:
                # The call ended, perhaps while this session was still being configured
                # (before `self.openai` was set, so `_end_call` could not close it).
                if self.openai is not ws:
                    with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
                        await asyncio.wait_for(ws.close(), OPENAI_CLOSE_TIMEOUT_S)
                raise
            except Exception:
                log.exception("call %s: bridge failed on an OpenAI event", bridge.call_sid)
                await self._perform([EndCall(CompletionReason.SERVER_ERROR, "bridge_exception")])
                return
            self.openai = None
            await self._openai_left_done()
            configure = bridge.on_openai_reconnected
            if self.reconnect_requested or bridge.ended:
                continue  # we closed it on purpose, to roll over
            await self._perform(bridge.on_openai_closed(detail))
            if not self.reconnect_requested:
                return

    def _openai_event_now(self, text: str) -> bool:
        """An OpenAI event handed over by its socket as it was read, while the reader
        waits with nothing queued before it: the bridge takes it at once. What its step
        leaves to do runs in a task, which the reader awaits before its next event; while
        that task runs, events are left to the reader (False), so they keep their order."""
        if self.openai_left is not None:
            if not self.openai_left.done():
                return False
            self.openai_left = None
        rest = self._step_now(self.bridge.on_openai_text, text)
        if rest:
            self.openai_left = asyncio.create_task(self._finish_guarded(rest))
        return True

    async def _openai_left_done(self) -> None:
        """Before the reader goes on (an event read through `recv`, the session's close):
        what the last handed-over event left, carried out first."""
        if self.openai_left is not None:
            await self.openai_left
            self.openai_left = None

    async def _reconnect_openai(self) -> None:
        """Close the current session; `_run_openai` then opens and primes a new one."""
        self.reconnect_requested = True
        ws, self.openai = self.openai, None  # frames queue in the backlog meanwhile
        if ws is not None:
            with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
                await asyncio.wait_for(ws.close(), OPENAI_CLOSE_TIMEOUT_S)

    async def _roll_over_sessions(self) -> None:
        """Move to a new Realtime session before the current one hits its time limit,
        waiting for a moment when nobody is speaking."""
        bridge = self.bridge
        assert bridge is not None
        loop = asyncio.get_running_loop()
        while not bridge.ended:
            age = loop.time() - self.session_started_at
            if age < settings.OPENAI_SESSION_ROLLOVER_S:
                await asyncio.sleep(settings.OPENAI_SESSION_ROLLOVER_S - age)
            elif self.openai is not None and bridge.can_roll_over():
                log.info("call %s: rolling over to a new OpenAI session", bridge.call_sid)
                await self._guarded(bridge.roll_over)
                await asyncio.sleep(1.0)
            else:
                await asyncio.sleep(0.25)

    async def _enforce_time_limit(self, limit_s: float) -> None:
        bridge = self.bridge
        assert bridge is not None
        await asyncio.sleep(limit_s)
        await self._guarded(bridge.on_max_duration)
        await asyncio.sleep(GOODBYE_GRACE_S)
        if not bridge.ended:
            log.warning("call %s: the goodbye did not finish; hanging up", bridge.call_sid)
            await self._perform(bridge.on_goodbye_overdue())

    async def _expect_start(self) -> None:
        await asyncio.sleep(STREAM_START_TIMEOUT_S)
        if self.bridge is not None:
            await self._guarded(self.bridge.on_start_timeout)

    # --- Carrying out the bridge's actions ----------------------------------------------
    async def _guarded(self, step, *args) -> None:
        """Run one bridge step and carry out its actions; a bug in either ends this call
        cleanly and no other."""
        rest = self._step_now(step, *args)
        if rest:
            await self._finish_guarded(rest)

    def _step_now(self, step, *args) -> list[Action]:
        """Run one bridge step and carry out its actions as far as nothing needs waiting
        for (`_perform_now`); return the rest, for `_finish`."""
        try:
            return self._perform_now(step(*args))
        except Exception:
            return self._perform_now(self._bridge_failed())

    async def _finish_guarded(self, rest: list[Action]) -> None:
        try:
            await self._finish(rest)
        except Exception:
            await self._perform(self._bridge_failed())

    def _bridge_failed(self) -> list[Action]:
        """Log the bug; the call ends with a server error, unless it is ending already."""
        log.exception("call %s: bridge failed", self._call_sid())
        if self.bridge is None or self.bridge.ended:
            return NO_ACTIONS
        self.bridge.ended = True
        return [EndCall(CompletionReason.SERVER_ERROR, "bridge_exception")]

    async def _perform(self, actions: list[Action]) -> None:
        await self._finish(self._perform_now(actions))

    async def _finish(self, rest: list[Action]) -> None:
        """Carry out what `_perform_now` left: the action it stopped at, awaited, then the
        ones after it as `_perform` would."""
        while rest:
            action, rest = rest[0], rest[1:]
            if type(action) is SendOpenAI:
                await self._send_openai(action.text)
            elif type(action) is SendTwilio:
                await self.send({"type": "websocket.send", "text": action.text})
            elif type(action) is ReconnectOpenAI:
                await self._reconnect_openai()
            rest = self._perform_now(rest)

    def _perform_now(self, actions: list[Action]) -> list[Action]:
        """Carry out actions in order until one needs waiting for: a message OpenAI's
        socket does not take at once, a send to Twilio through plain ASGI (no shortcut),
        a reconnect. Return the rest, from that one on. Everything else is done here, or
        started as a task (database writes, tools, a transfer, the end of the call)."""
        for index, action in enumerate(actions):
            kind = type(action)
            if kind is SendOpenAI:
                if not self._sent_now(action.text):
                    return actions[index:]
            elif kind is SendTwilio:
                if not self.twilio_open:
                    continue
                if self.twilio_socket is None:
                    return actions[index:]
                self.twilio_socket.send_text(action.text)
            elif kind is SaveTurn:
                self._write(call_records.save_turn, self.call_pk, action)
            elif kind is StreamStarted:
                self._write(call_records.mark_answered, self.call_pk, action.stream_sid)
            elif kind is RunTool:
                self._spawn(self._run_tool(action))
            elif kind is TransferCall:
                self._spawn(self._transfer(action))
            elif kind is EndCall:
                if self.end_task is None:
                    self.end_task = asyncio.create_task(self._end_call(action))
            elif kind is ReconnectOpenAI:
                return actions[index:]
        return NO_ACTIONS

    def _sent_now(self, text: str) -> bool:
        """Whether `text` went to OpenAI at once, written straight to its socket."""
        return self.openai is not None and self.openai.send_now(text)

    async def _send_openai(self, text: str) -> None:
        """What `_sent_now` could not send: kept while the socket opens, else websockets'
        own send (which waits for the socket, or raises its close reason)."""
        if self.openai is None:
            if len(self.openai_backlog) < MAX_OPENAI_BACKLOG:
                self.openai_backlog.append(text)
            return
        try:  # noqa: SIM105 - cheaper than contextlib.suppress on the per-frame path
            await self.openai.send(text)
        except ConnectionClosed:
            pass  # the reader task sees the close and ends the call with the reason

    def _write(self, func, *args) -> None:
        task = asyncio.create_task(database_sync_to_async(func)(*args))
        self.db_writes.append(task)

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _run_tool(self, action: RunTool) -> None:
        assert self.bridge is not None
        tool = action.tool
        if tool is not None and tool.unreadable:
            log.error(
                "call %s: tool %s not run: %s", self.bridge.call_sid, action.name, tool.unreadable
            )
            output = tool_error("the tool's stored credentials cannot be read")
        else:
            output = await run_http_tool(
                shared_http_client(),
                action.url,
                action.name,
                action.arguments,
                self.bridge.call_sid,
                headers=tool.headers if tool else (),
                signing_secret=tool.signing_secret if tool else "",
                method=tool.method if tool else "POST",
                timeout_s=tool.timeout_s if tool else None,
            )
        # An error output (ours, or the tool's own {"error": …}) counts as a failure.
        failed = output.startswith('{"error"')
        self._write(call_records.count_tool_call, self.call_pk, failed)
        await self._guarded(self.bridge.on_tool_result, action.call_id, output)

    async def _transfer(self, action: TransferCall) -> None:
        """Twilio's REST client is synchronous: it runs in a thread, off the event loop
        every call on this process shares."""
        assert self.bridge is not None
        error = await asyncio.to_thread(transfer_call, self.bridge.call_sid, action.destination)
        if error is None:
            self._write(call_records.record_transfer, self.call_pk, action.destination)
        await self._guarded(self.bridge.on_transfer_result, error)

    async def _wait_for_transcripts(self, bridge: CallBridge) -> None:
        """The session is still open after a fault: the caller's last words may be
        committed and their transcript on its way. The reader keeps feeding the bridge."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.OPENAI_TRANSCRIPT_WAIT_S
        while bridge.awaiting_transcripts and loop.time() < deadline and self.openai:  # noqa: ASYNC110 - state the reader task changes
            await asyncio.sleep(0.02)

    async def _end_call(self, end: EndCall) -> None:
        """Close OpenAI, keep every turn, finalise the call, then close Twilio's socket.
        The call row is final before Twilio asks /twilio/stream-ended what to play."""
        bridge = self.bridge
        assert bridge is not None and self.call_pk is not None
        bridge.ended = True
        log.info("call %s ending: %s %s", bridge.call_sid, end.reason, end.error_code)
        if end.wait_for_transcripts:
            await self._wait_for_transcripts(bridge)
        if self.openai_task is not None and self.openai_task is not asyncio.current_task():
            self.openai_task.cancel()
        if self.openai is not None:
            # The socket is going away either way; a slow or failed close changes nothing.
            with contextlib.suppress(TimeoutError, ConnectionClosed, OSError):
                await asyncio.wait_for(self.openai.close(), OPENAI_CLOSE_TIMEOUT_S)
        for task in self.background:
            task.cancel()
        for turn in bridge.finish():
            self._write(call_records.save_turn, self.call_pk, turn)
        for result in await asyncio.gather(*self.db_writes, return_exceptions=True):
            if isinstance(result, BaseException):
                log.error("call %s: a turn could not be saved: %r", bridge.call_sid, result)
        await database_sync_to_async(call_records.finalize_call)(
            self.call_pk,
            end.reason,
            end.error_code,
            end.error_message,
            bridge.usage,
            (bridge.openai_errors, bridge.last_openai_error),
        )
        if self.twilio_open:
            self.twilio_open = False
            await self.send({"type": "websocket.close", "code": 1000})
