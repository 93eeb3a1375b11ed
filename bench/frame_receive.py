"""Micro-benchmark: one Twilio media frame through a Daphne WebSocket's `dataReceived`
to the application queue, with Daphne's own protocol, with this app's protocol reading
through autobahn's parser, and with its whole-frame path (voiceagents/websocket_protocol.py).

    .venv/bin/python -m bench.frame_receive
"""

import gc
import os
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceagents.settings")

from daphne.ws_protocol import WebSocketFactory

from tests.test_websocket_protocol import MEDIA_FRAME, accepted_socket, client_frame
from voiceagents.websocket_protocol import LeanWebSocketFactory, LeanWebSocketProtocol

FRAMES = 20_000


def microseconds_per_frame(factory_class) -> float:
    gc.collect()  # the previous measurement's sockets and queues, so each starts clean
    protocol, queue = accepted_socket(factory_class)
    frame = client_frame(MEDIA_FRAME)
    started = time.perf_counter()
    for _ in range(FRAMES):
        protocol.dataReceived(frame)
    elapsed = time.perf_counter() - started
    assert len(queue) == FRAMES
    queue.clear()  # the reactor may keep the socket (a timeout call): not its messages
    return elapsed / FRAMES * 1e6


def main() -> None:
    print(f"A {len(client_frame(MEDIA_FRAME))}-byte media frame, {FRAMES} times:")
    print(f"  Daphne's own protocol:          {microseconds_per_frame(WebSocketFactory):5.1f} µs")
    whole_frames = LeanWebSocketProtocol._reads_whole_frames
    LeanWebSocketProtocol._reads_whole_frames = lambda self: False  # not a Mock: it is timed
    try:
        through_autobahn = microseconds_per_frame(LeanWebSocketFactory)
    finally:
        LeanWebSocketProtocol._reads_whole_frames = whole_frames
    print(f"  this app's, autobahn's parser:  {through_autobahn:5.1f} µs")
    whole = microseconds_per_frame(LeanWebSocketFactory)
    print(f"  this app's, whole-frame path:   {whole:5.1f} µs")


if __name__ == "__main__":
    main()
