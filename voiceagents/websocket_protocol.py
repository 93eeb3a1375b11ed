"""Daphne's WebSocket protocol without autobahn's per-frame debug formatting.

autobahn logs every received chunk and every sent frame at debug level, and builds the
log arguments (`hltype`, `hlval`: qualified names and `click.style` colouring) before
the logger can drop them: with debug logging off that was about 6 % of the web process's
CPU under load. No option turns it off (txaio's level makes the call a no-op, not the
argument building), so these two methods skip straight to the work when autobahn's
debug logging is off, and defer to autobahn's own when it is on. They mirror
autobahn 26's `dataReceived` and the unqueued branch of `sendData`;
tests/test_websocket_protocol.py fails if an autobahn upgrade changes what they rely on.

`voiceagents.web_server` installs it (`daphne.server.WebSocketFactory`).
"""

import txaio
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol

DEBUG_LEVELS = ("debug", "trace")


def autobahn_debug_on() -> bool:
    return txaio.get_global_log_level() in DEBUG_LEVELS


class LeanWebSocketProtocol(WebSocketProtocol):
    def dataReceived(self, data: bytes) -> None:
        if autobahn_debug_on():
            return super().dataReceived(data)
        self._dataReceived(data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue or self.logOctets or autobahn_debug_on():
            return super().sendData(data, sync, chopsize)
        # autobahn's own unqueued send, less its debug line.
        self.transport.write(data)
        if self.state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)
        elif self.state in (self.STATE_CONNECTING, self.STATE_PROXY_CONNECTING):
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(data)


class LeanWebSocketFactory(WebSocketFactory):
    protocol = LeanWebSocketProtocol
