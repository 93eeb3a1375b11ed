"""The client side of the OpenAI Realtime WebSocket, with a cheaper send and receive for the
common case.

Every call sends OpenAI fifty small text messages a second (the caller's audio). websockets'
own `send` runs an async context manager, a frame object, a serializer and one
`getrandom` system call for each frame's masking key; under load that was about a tenth
of a web process's busy time. `RealtimeConnection.send_now` writes a whole text message
as one masked frame directly whenever nothing stands in the way (the socket open, no
fragmented message or queued bytes, not paused by flow control, no extension, no debug
logging); otherwise the caller uses websockets' own `send`, which also raises the close
reason. `send` stays websockets' own, for the few messages off the hot path. The masking
keys are drawn from the OS's random source, as websockets draws them, but a block at a
time per connection: RFC 6455 asks for keys from a strong entropy source, not for one
system call each.

It also hands each whole text message (an OpenAI event, ~25 a second per call) to a
handler as it is read (`hand_text_to`), while the reader waits in `recv` with nothing
queued before it; through `recv` each one went into websockets' frame queue and woke the
reader's task. Anything else (binary, fragmented, invalid UTF-8, a reader busy with an
earlier message, a handler that declines) goes to `recv` as before, so order is kept.
This reads websockets' `Assembler` (the future of `recv_messages.frames`' getter, which
waits only while nothing is queued); tests/test_realtime_socket.py runs it on real
websockets connections, so an upgrade that changes it fails there.
"""

import os
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.frames import Frame, Opcode, apply_mask
from websockets.protocol import OPEN

from voiceagents.websocket_frames import text_frame_header

MASK_KEYS_PER_DRAW = 256  # 1 KiB of randomness: one draw per five seconds of caller audio


class MaskKeys:
    """Four-byte masking keys from `os.urandom`, drawn in blocks."""

    def __init__(self, keys_per_draw: int = MASK_KEYS_PER_DRAW) -> None:
        self.block_size = 4 * keys_per_draw
        self.block = b""
        self.position = 0

    def take(self) -> bytes:
        if self.position == len(self.block):
            self.block = os.urandom(self.block_size)
            self.position = 0
        start = self.position
        self.position = start + 4
        return self.block[start : start + 4]


def masked_text_frame(data: bytes, key: bytes) -> bytes:
    """One final, masked text frame carrying `data` (RFC 6455 section 5.2)."""
    return b"".join((text_frame_header(len(data), masked=True), key, apply_mask(data, key)))


class RealtimeConnection(ClientConnection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mask_keys = MaskKeys()
        # The reader's handler for whole text messages (`hand_text_to`); None: `recv`.
        self.text_handler: Callable[[str], bool] | None = None

    def hand_text_to(self, handler: Callable[[str], bool] | None) -> None:
        """From now on, give each whole text message to `handler` as it is read, while
        the reader waits in `recv` with nothing queued before it; the handler returns
        False to leave the message to `recv` after all. None stops it."""
        self.text_handler = handler

    def process_event(self, event: Frame) -> None:
        # Through `recv`, each event is queued for the reader and wakes its task: a future,
        # a task step and the reader's `async for` for each of the ~25 events a second.
        handler = self.text_handler
        if (
            handler is not None
            and event.opcode is Opcode.TEXT
            and event.fin
            and self._reader_waits_for_nothing_queued()
        ):
            try:
                text = str(event.data, "utf-8")  # bytes, or any buffer websockets gives
            except UnicodeDecodeError:
                pass  # `recv` fails the connection for it, as websockets does
            else:
                if handler(text):
                    return
        super().process_event(event)

    def _reader_waits_for_nothing_queued(self) -> bool:
        # The queue's getter waits only while the queue is empty: a frame put in wakes it
        # (its future is done from then on, until the reader takes the frame).
        waiter = self.recv_messages.frames.get_waiter
        return waiter is not None and not waiter.done()

    def send_now(self, text: str) -> bool:
        """Write `text` as one text message now, if the connection allows it without
        waiting; False when it must go through `send` (closed, busy, paused, extensions)."""
        protocol = self.protocol
        if (
            protocol.state is not OPEN
            or self.send_in_progress is not None
            or self.paused
            or protocol.writes
            or protocol.expect_continuation_frame
            or protocol.extensions
            or protocol.debug
            or self.transport.is_closing()
        ):
            return False
        self.transport.write(masked_text_frame(text.encode(), self.mask_keys.take()))
        return True
