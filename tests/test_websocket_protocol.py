"""voiceagents/websocket_protocol.py: Daphne's WebSocket protocol without autobahn's
per-frame debug formatting, doing exactly what autobahn's own methods do otherwise."""

import inspect
from collections import deque
from unittest import mock

import daphne.server  # installs the asyncio reactor first, as in the web process
import pytest
import txaio
from autobahn.twisted import websocket as autobahn_twisted
from autobahn.websocket import protocol as autobahn_protocol
from autobahn.websocket.protocol import TrafficStats
from daphne.ws_protocol import WebSocketFactory
from twisted.internet.testing import StringTransport

from voiceagents import web_server
from voiceagents.websocket_protocol import LeanWebSocketFactory, LeanWebSocketProtocol

FORMATTED = AssertionError("debug arguments were formatted")


def open_protocol(factory_class=LeanWebSocketFactory):
    protocol = factory_class(None).buildProtocol(("127.0.0.1", 1))
    protocol.transport = StringTransport()
    protocol.trafficStats = TrafficStats()
    protocol.send_queue = deque()
    protocol.logOctets = False
    protocol.state = protocol.STATE_OPEN
    return protocol


@pytest.fixture
def autobahn_debug():
    txaio.set_global_log_level("debug")
    yield
    txaio.set_global_log_level("info")


def test_sending_with_debug_off_formats_nothing_and_writes_what_autobahn_writes():
    lean, plain = open_protocol(), open_protocol(WebSocketFactory)
    with mock.patch.object(autobahn_protocol, "hltype", side_effect=FORMATTED):
        lean.sendData(b"frame bytes")
    plain.sendData(b"frame bytes")
    assert lean.transport.value() == plain.transport.value() == b"frame bytes"
    assert lean.trafficStats.outgoingOctetsWireLevel == 11
    assert plain.trafficStats.outgoingOctetsWireLevel == 11


def test_before_the_socket_opens_the_bytes_count_as_pre_open_traffic():
    lean = open_protocol()
    lean.state = lean.STATE_CONNECTING
    lean.sendData(b"HTTP/1.1 101\r\n\r\n")
    assert lean.trafficStats.preopenOutgoingOctetsWireLevel == 16
    assert lean.trafficStats.outgoingOctetsWireLevel == 0


def test_queued_sends_go_through_autobahn_unchanged():
    lean = open_protocol()
    with mock.patch.object(
        autobahn_protocol.WebSocketProtocol, "sendData", autospec=True
    ) as autobahn_send:
        lean.sendData(b"x", sync=True)
        lean.sendData(b"y" * 10, chopsize=3)
    assert [c.args[1] for c in autobahn_send.call_args_list] == [b"x", b"y" * 10]


def test_receiving_with_debug_off_parses_without_formatting():
    lean = open_protocol()
    with (
        mock.patch.object(autobahn_twisted, "hltype", side_effect=FORMATTED),
        mock.patch.object(LeanWebSocketProtocol, "_dataReceived") as parse,
    ):
        lean.dataReceived(b"\x81\x85")
    parse.assert_called_once_with(b"\x81\x85")


def test_with_autobahn_debug_on_its_own_logging_methods_run(autobahn_debug):
    lean = open_protocol()
    with (
        mock.patch.object(autobahn_protocol, "hltype", wraps=autobahn_protocol.hltype) as sent,
        mock.patch.object(autobahn_twisted, "hltype", wraps=autobahn_twisted.hltype) as read,
        mock.patch.object(LeanWebSocketProtocol, "_dataReceived"),
    ):
        lean.sendData(b"frame")
        lean.dataReceived(b"frame")
    assert sent.called and read.called
    assert lean.transport.value() == b"frame"


def test_the_web_server_makes_daphne_build_this_protocol(monkeypatch):
    monkeypatch.setattr(daphne.server, "WebSocketFactory", WebSocketFactory)
    web_server.install_protocols()
    assert daphne.server.WebSocketFactory is LeanWebSocketFactory
    # Daphne builds its factory from that module attribute when its server runs.
    assert "WebSocketFactory(self" in inspect.getsource(daphne.server.Server.run)
