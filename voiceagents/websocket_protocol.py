"""Daphne's WebSocket protocol without autobahn's per-frame debug formatting, reading
whole frames itself.

autobahn logs every received chunk and every sent frame at debug level, and builds the
log arguments (`hltype`, `hlval`: qualified names and `click.style` colouring) before
the logger can drop them: with debug logging off that was about 6 % of the web process's
CPU under load. No option turns it off (txaio's level makes the call a no-op, not the
argument building), so these two methods skip straight to the work when autobahn's
debug logging is off, and defer to autobahn's own when it is on. They mirror
autobahn 26's `dataReceived` and the unqueued branch of `sendData`;
tests/test_websocket_protocol.py fails if an autobahn upgrade changes what they rely on.

It also reads the common case itself: a Twilio media frame is one small, masked, final
text frame that arrives whole in one read. autobahn parses each frame in two passes
through a general state machine, builds a frame header, an unmasking object, a UTF-8
validator run and a Deferred for its message observers: about 15 µs a frame, 50 frames a
second per call. `_receive_whole_frames` delivers such frames straight to Daphne's
`onMessage`, keeping autobahn's checks and counters; anything else (a control frame, a
fragment, a frame split across reads, compression, a size over the limits, invalid
UTF-8, an unmasked frame) goes to autobahn's parser exactly as before.

And it corks its sends: the frames sent to a socket during one turn of the event loop
(an audio chunk and its mark) leave together in one `send` at the end of the turn,
straight from the socket when Twisted holds nothing unsent. Twisted's own write
registers the socket for writing and sends on the next turn: two `epoll_ctl` and a
wake-up per frame, 13 % of the web process at 50 calls. Whatever the socket does not
take goes to Twisted's buffer, so order and back-pressure are Twisted's as before. It
reads Twisted's send buffer (`dataBuffer`, the private `_tempDataBuffer`); the tests run
it on Twisted's own TCP transport, so a Twisted upgrade that changes them fails there.

Last, it offers the application a shortcut past Daphne's queue, as the ASGI scope
extension "voiceagents.websocket" (voiceagents/daphne_server.py puts the protocol there):
`receive_text_with` hands each text frame to a handler as it is read, and `send_text`
writes a text message without `websocket.send`. Through the queue a frame cost a message
dict, a queue put and get and a wake-up of the application's task; through `send`, a
coroutine and autobahn's general `sendMessage`. An application that ignores the
extension gets plain ASGI.

`voiceagents.web_server` installs it (`daphne.server.WebSocketFactory`).
"""

import asyncio
import contextlib
import time
from collections.abc import Callable

import txaio
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

# websockets' C unmasking (a pure-Python fallback where its extension is not built).
from websockets.frames import apply_mask

from voiceagents.websocket_frames import FIN_TEXT, MASKED, text_frame_header

DEBUG_LEVELS = ("debug", "trace")

# First header byte of a final, uncompressed binary frame (FIN + opcode); FIN_TEXT is
# the text one's.
FINAL_BINARY = 0x82
# Payload lengths up to 125 sit in the second byte; 126 means a 16-bit length follows.
# Longer frames (64-bit length) are left to autobahn.
LENGTH_16_BIT = 126


def autobahn_debug_on() -> bool:
    return txaio.get_global_log_level() in DEBUG_LEVELS


class LeanWebSocketProtocol(WebSocketProtocol):
    # The application's handler for text frames (receive_text_with); None: Daphne's queue.
    text_handler: Callable[[str], dict | None] | None = None
    # Frames sent during this turn of the event loop, written together at its end.
    corked: list[bytes] | None = None
    # The loop that ends the turn; None where Twisted writes everything itself: a reactor
    # without an asyncio loop, or a transport that is not a plain socket (TLS).
    corking_loop: asyncio.AbstractEventLoop | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        if hasattr(self.transport, "writeSomeData"):
            with contextlib.suppress(RuntimeError):  # no asyncio loop: Twisted writes
                self.corking_loop = asyncio.get_running_loop()

    def dataReceived(self, data: bytes) -> None:
        if autobahn_debug_on():
            return super().dataReceived(data)
        if self._reads_whole_frames():
            data = self._receive_whole_frames(data)
            if not data:
                return
        self._dataReceived(data)

    def _reads_whole_frames(self) -> bool:
        """Whether nothing about the connection needs autobahn's own parser: open, between
        messages with nothing buffered, and none of the options the fast path skips."""
        return (
            self.state == self.STATE_OPEN
            and not self.data
            and self.current_frame is None
            and not self.inside_message
            and self._perMessageCompress is None
            and self.utf8validateIncoming
            and self.applyMask
            and not (self.logOctets or self.logFrames or self.trackedTimings)
            and self._listeners is None  # nobody observes autobahn's "message" event
            and not self.failedByMe
        )

    def _receive_whole_frames(self, data: bytes) -> bytes:
        """Deliver the complete final data frames at the start of `data` as autobahn would,
        and return the rest (from the first frame it must judge) for its parser."""
        end_of_data = len(data)
        start = 0
        while self.state == self.STATE_OPEN:
            if end_of_data - start < 6:
                break
            first, second = data[start], data[start + 1]
            if (first != FIN_TEXT and first != FINAL_BINARY) or not second & MASKED:
                break
            length = second & 0x7F
            if length < LENGTH_16_BIT:
                mask_at = start + 2
            elif length == LENGTH_16_BIT and end_of_data - start >= 8:
                length = (data[start + 2] << 8) | data[start + 3]
                if length < LENGTH_16_BIT:
                    break  # not the shortest encoding: autobahn refuses it
                mask_at = start + 4
            else:
                break
            payload_at = mask_at + 4
            end = payload_at + length
            if end > end_of_data or self._over_size_limits(length):
                break
            payload = apply_mask(data[payload_at:end], data[mask_at:payload_at])
            is_binary = first == FINAL_BINARY
            text = None
            if not is_binary:
                try:
                    text = payload.decode()  # autobahn's UTF-8 check; it fails the socket
                except UnicodeDecodeError:
                    break
            stats = self.trafficStats
            stats.incomingOctetsWireLevel += end - start
            stats.incomingOctetsWebSocketLevel += length
            stats.incomingOctetsAppLevel += length
            stats.incomingWebSocketFrames += 1
            stats.incomingWebSocketMessages += 1
            if self.autoPingTimeoutCall and self.autoPingRestartOnAnyTraffic:
                self._cancelAutoPingTimeoutCall()
            start = end
            if text is not None and self.text_handler is not None:
                self._hand_over(text)
            else:
                self._onMessage(payload, is_binary)
        return data[start:] if start else data

    def _hand_over(self, text: str) -> None:
        """Daphne's `onMessage` for a text frame, through the application's handler when
        nothing is queued before it (so frames keep their order)."""
        if self.muted:
            return
        self.last_ping = time.time()  # Daphne's: when the client last showed it is there
        queue = self.application_queue
        if queue.empty():
            message = self.text_handler(text)
            if message is not None:
                queue.put_nowait(message)
        else:
            queue.put_nowait({"type": "websocket.receive", "text": text})

    def _over_size_limits(self, length: int) -> bool:
        return 0 < self.maxFramePayloadSize < length or 0 < self.maxMessagePayloadSize < length

    # --- The application's shortcut (the "voiceagents.websocket" scope extension) -------
    def receive_text_with(self, handler: Callable[[str], dict | None] | None) -> None:
        """From now on, hand each whole text frame to `handler` as it is read, when nothing
        is queued for the application, instead of queueing a `websocket.receive` for it.
        The handler returns what to queue after all: None once it has dealt with the
        frame, else a message (the frame's own `websocket.receive`, or whatever work it
        leaves for the application's receive loop). None stops it."""
        self.text_handler = handler

    def send_text(self, text: str) -> None:
        """What `websocket.send` with `text` does through Daphne, without the coroutine,
        the message dict and autobahn's general `sendMessage`: one final text frame,
        counted as autobahn counts it. Dropped once the socket is no longer open, as
        Daphne drops what is sent to a closed connection; an empty text is not sent,
        as Daphne does not send one."""
        if self.state != self.STATE_OPEN or not text:
            return
        payload = text.encode()
        length = len(payload)
        if (
            self._perMessageCompress is not None
            or 0 < self.autoFragmentSize < length
            or 0 < self.maxMessagePayloadSize < length
            or self.maskServerFrames
            or self.trackedTimings
            or self.logFrames
        ):
            self.sendMessage(payload, False)  # autobahn's own, for what this path skips
            return
        stats = self.trafficStats
        stats.outgoingWebSocketMessages += 1
        stats.outgoingOctetsAppLevel += length
        stats.outgoingOctetsWebSocketLevel += length
        stats.outgoingWebSocketFrames += 1
        self.sendData(text_frame_header(length, masked=False) + payload)

    # --- Sending --------------------------------------------------------------------------
    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets or autobahn_debug_on():
            self._write_corked()
            return super().sendData(data, sync, chopsize)
        # autobahn's own unqueued send, less its debug line, corked until the end of
        # this turn of the loop.
        if self.corked is not None:
            self.corked.append(data)
        elif self.corking_loop is not None:
            self.corked = [data]
            self.corking_loop.call_soon(self._write_corked)
        else:
            self.transport.write(data)
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)

    def _write_corked(self) -> None:
        """Send this turn's frames with one system call when Twisted holds nothing unsent:
        Twisted's own write would register the socket for writing and send on the next
        turn (two `epoll_ctl` and a wake-up for every frame). What the socket does not
        take, and everything after a failure, goes to Twisted's buffer as before."""
        corked, self.corked = self.corked, None
        if not corked:
            return
        data = corked[0] if len(corked) == 1 else b"".join(corked)
        transport = self.transport
        if (
            transport.connected
            and not transport.disconnecting
            and not transport.dataBuffer
            and not transport._tempDataBuffer
        ):
            sent = transport.writeSomeData(data)
            if isinstance(sent, Exception):
                sent = 0  # Twisted's own write meets the error and closes the connection
            data = data[sent:]
        if data:
            transport.write(data)

    def _closeConnection(self, abort: bool = False) -> None:
        self._write_corked()
        super()._closeConnection(abort)


class LeanWebSocketFactory(WebSocketFactory):
    protocol = LeanWebSocketProtocol
