"""voiceagents/websocket_protocol.py: Daphne's WebSocket protocol without autobahn's
per-frame debug formatting and with its own reading of whole data frames, doing exactly
what autobahn's own methods do otherwise."""

import asyncio
import inspect
import socket
import struct
from unittest import mock

import daphne.cli
import daphne.server  # installs the asyncio reactor first, as in the web process
import pytest
import txaio
from autobahn.exception import PayloadExceededError
from autobahn.twisted import websocket as autobahn_twisted
from autobahn.websocket import protocol as autobahn_protocol
from daphne.ws_protocol import WebSocketFactory
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet import address, tcp
from twisted.internet.testing import StringTransport

from voiceagents import web_server
from voiceagents.daphne_server import ShortcutServer
from voiceagents.websocket_frames import SHORTCUT_EXTENSION
from voiceagents.websocket_protocol import LeanWebSocketFactory, LeanWebSocketProtocol

FORMATTED = AssertionError("debug arguments were formatted")


class ApplicationQueue(list):
    def put_nowait(self, message: dict) -> None:
        self.append(message)

    def empty(self) -> bool:
        return not self


class DaphneServer:
    """What Daphne's WebSocket protocol asks of its server."""

    root_path = ""
    proxy_forwarded_address_header = None

    def __init__(self) -> None:
        self.queue = ApplicationQueue()

    def protocol_connected(self, protocol) -> None:
        pass

    def protocol_disconnected(self, protocol) -> None:
        pass

    def create_application(self, protocol, scope) -> ApplicationQueue:
        return self.queue

    def log_action(self, *args) -> None:
        pass


HANDSHAKE = (
    b"GET /twilio/stream/t HTTP/1.1\r\nHost: app\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)
FRAME_LIMIT = 2000  # small, so that a test can cross it cheaply


class ClientTransport(StringTransport):
    def unregisterProducer(self) -> None:
        # autobahn unregisters when it drops a connection it failed, registered or not.
        self.producer = None


def accepted_socket(factory_class=LeanWebSocketFactory, transport=None):
    """A Daphne WebSocket after a real handshake, accepted by the application."""
    server = DaphneServer()
    factory = factory_class(server)
    factory.setProtocolOptions(maxFramePayloadSize=FRAME_LIMIT, maxMessagePayloadSize=3000)
    protocol = factory.buildProtocol(("127.0.0.1", 1))
    protocol._raw_query_string = b""  # set by Daphne's HTTP protocol before the upgrade
    protocol.makeConnection(transport or ClientTransport())
    protocol.dataReceived(HANDSHAKE)
    protocol.serverAccept()
    assert protocol.state == protocol.STATE_OPEN
    if transport is None:
        protocol.transport.clear()
    assert server.queue == [{"type": "websocket.connect"}]
    server.queue.clear()
    return protocol, server.queue


@pytest.fixture
def autobahn_debug():
    txaio.set_global_log_level("debug")
    yield
    txaio.set_global_log_level("info")


def test_sending_with_debug_off_formats_nothing_and_writes_what_autobahn_writes():
    (lean, _), (plain, _) = accepted_socket(), accepted_socket(WebSocketFactory)
    with mock.patch.object(autobahn_protocol, "hltype", side_effect=FORMATTED):
        lean.sendData(b"frame bytes")
    plain.sendData(b"frame bytes")
    assert lean.transport.value() == plain.transport.value() == b"frame bytes"
    assert lean.trafficStats.outgoingOctetsWireLevel == 11
    assert plain.trafficStats.outgoingOctetsWireLevel == 11


def test_before_the_socket_opens_the_bytes_count_as_pre_open_traffic():
    lean, _ = accepted_socket()
    lean.state = lean.STATE_CONNECTING
    lean.trafficStats.reset()  # the handshake's own bytes
    lean.sendData(b"HTTP/1.1 101\r\n\r\n")
    assert lean.trafficStats.preopenOutgoingOctetsWireLevel == 16
    assert lean.trafficStats.outgoingOctetsWireLevel == 0


def test_queued_sends_go_through_autobahn_unchanged():
    lean, _ = accepted_socket()
    with mock.patch.object(
        autobahn_protocol.WebSocketProtocol, "sendData", autospec=True
    ) as autobahn_send:
        lean.sendData(b"x", sync=True)
        lean.sendData(b"y" * 10, chopsize=3)
    assert [c.args[1] for c in autobahn_send.call_args_list] == [b"x", b"y" * 10]


# --- Reading whole frames ---------------------------------------------------------------


def client_frame(
    payload: bytes, opcode: int = 1, fin: bool = True, mask: bytes = b"k3y!", length_bytes=None
) -> bytes:
    """A frame as a client sends it: masked, with the shortest length unless told."""
    length = len(payload)
    if length_bytes is None:
        length_bytes = 0 if length < 126 else 2 if length < 65536 else 8
    first = (0x80 if fin else 0) | opcode
    if length_bytes == 0:
        head = bytes([first, 0x80 | length])
    elif length_bytes == 2:
        head = bytes([first, 0x80 | 126]) + struct.pack("!H", length)
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack("!Q", length)
    if not mask:
        return bytes([head[0], head[1] & 0x7F]) + head[2:] + payload
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


MEDIA_FRAME = (
    b'{"event":"media","sequenceNumber":"3","streamSid":"MZ0","media":{"track":"inbound",'
    b'"chunk":"2","timestamp":"40","payload":"' + b"/" * 216 + b'"}}'
)


def received(queue: ApplicationQueue) -> list:
    return [m.get("text", m.get("bytes")) for m in queue]


def incoming_counters(protocol) -> dict:
    return {k: v for k, v in vars(protocol.trafficStats).items() if k.startswith("incoming")}


def test_a_whole_media_frame_reaches_daphne_without_autobahns_parser():
    lean, queue = accepted_socket()
    with mock.patch.object(autobahn_protocol.WebSocketProtocol, "processData") as parser:
        lean.dataReceived(client_frame(MEDIA_FRAME))
        lean.dataReceived(client_frame(b"\x00\xff", opcode=2) + client_frame(b"{}"))
    parser.assert_not_called()
    assert queue == [
        {"type": "websocket.receive", "text": MEDIA_FRAME.decode()},
        {"type": "websocket.receive", "bytes": b"\x00\xff"},
        {"type": "websocket.receive", "text": "{}"},
    ]
    assert lean.trafficStats.incomingWebSocketMessages == 3
    assert lean.trafficStats.incomingOctetsAppLevel == len(MEDIA_FRAME) + 2 + 2


def test_what_the_fast_path_does_not_take_goes_to_autobahn_from_that_frame_on():
    lean, queue = accepted_socket()
    whole = client_frame(b"first")
    fragment = client_frame(b"sec", fin=False) + client_frame(b"ond", opcode=0)
    with mock.patch.object(
        autobahn_protocol.WebSocketProtocol,
        "processData",
        autospec=True,
        side_effect=autobahn_protocol.WebSocketProtocol.processData,
    ) as parser:
        lean.dataReceived(whole + fragment + client_frame(b"third")[:5])
        parsed = parser.call_count
        lean.dataReceived(client_frame(b"third")[5:])
    assert parsed > 0 and parser.call_count > parsed
    assert received(queue) == ["first", "second", "third"]


def test_a_frame_restarts_the_ping_timeout_as_autobahn_does():
    lean, queue = accepted_socket()
    lean.autoPingTimeoutCall = mock.Mock()
    with mock.patch.object(LeanWebSocketProtocol, "_cancelAutoPingTimeoutCall") as cancel:
        lean.dataReceived(client_frame(MEDIA_FRAME) + client_frame(MEDIA_FRAME))
    assert cancel.call_count == 2
    assert len(queue) == 2


def test_receiving_with_debug_off_formats_nothing_on_either_path():
    lean, queue = accepted_socket()
    fragment = client_frame(b"sec", fin=False) + client_frame(b"ond", opcode=0)
    with mock.patch.object(autobahn_twisted, "hltype", side_effect=FORMATTED):
        lean.dataReceived(client_frame(b"first") + fragment)
    assert received(queue) == ["first", "second"]


def test_observers_of_autobahns_message_event_get_autobahns_parser():
    lean, queue = accepted_socket()
    seen = []
    lean.on("message", lambda payload, is_binary: seen.append(payload))
    lean.dataReceived(client_frame(b"hello"))
    assert seen == [b"hello"] and received(queue) == ["hello"]


def frames_a_client_might_send():
    """Valid and invalid frames, each the way a client could put it on the wire."""
    text = st.text(max_size=300).map(str.encode)
    mask = st.binary(min_size=4, max_size=4)
    return st.one_of(
        st.builds(client_frame, text, mask=mask),  # a message like Twilio's
        st.builds(client_frame, st.binary(max_size=200), st.just(2), mask=mask),
        st.builds(client_frame, st.binary(min_size=1, max_size=20), st.just(1)),  # bad UTF-8?
        st.builds(client_frame, st.binary(max_size=100), st.just(9)),  # ping
        st.builds(client_frame, st.binary(max_size=20), st.just(10)),  # unsolicited pong
        st.builds(lambda a, b: client_frame(a, fin=False) + client_frame(b, opcode=0), text, text),
        st.builds(client_frame, text, mask=st.just(b"")),  # unmasked: refused
        st.builds(client_frame, st.binary(max_size=100), length_bytes=st.just(2)),  # not minimal
        st.builds(client_frame, st.binary(min_size=126, max_size=130), length_bytes=st.just(8)),
        st.just(client_frame(b"x" * (FRAME_LIMIT + 1))),  # over the frame limit
        st.builds(client_frame, text, st.just(3)),  # reserved opcode
        st.just(client_frame(b"", opcode=8)),  # close
    )


def read_by_both(frames: list[bytes], data, lean, plain) -> None:
    """The frames' bytes, cut into reads where hypothesis chooses, read by both sockets;
    then both must have answered, ended and counted alike."""
    wire = b"".join(frames)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(wire) - 1)), max_size=6)))
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        lean.dataReceived(wire[a:b])
        plain.dataReceived(wire[a:b])
    assert lean.transport.value() == plain.transport.value()  # pongs, close frames
    assert lean.state == plain.state
    assert incoming_counters(lean) == incoming_counters(plain)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames_a_client_might_send(), max_size=8), st.data())
def test_any_byte_stream_in_any_reads_ends_exactly_as_in_autobahn(frames, data):
    lean, lean_queue = accepted_socket()
    plain, plain_queue = accepted_socket(WebSocketFactory)
    read_by_both(frames, data, lean, plain)
    assert lean_queue == plain_queue


def test_with_autobahn_debug_on_its_own_logging_methods_run(autobahn_debug):
    lean, _ = accepted_socket()
    with (
        mock.patch.object(autobahn_protocol, "hltype", wraps=autobahn_protocol.hltype) as sent,
        mock.patch.object(autobahn_twisted, "hltype", wraps=autobahn_twisted.hltype) as read,
        mock.patch.object(LeanWebSocketProtocol, "_dataReceived"),
    ):
        lean.sendData(b"frame")
        lean.dataReceived(b"frame")
    assert sent.called and read.called
    assert lean.transport.value() == b"frame"


def test_the_web_server_makes_daphne_build_this_protocol_and_server(monkeypatch):
    monkeypatch.setattr(daphne.server, "WebSocketFactory", WebSocketFactory)
    monkeypatch.setattr(daphne.cli.CommandLineInterface, "server_class", daphne.server.Server)
    web_server.install_protocols()
    assert daphne.server.WebSocketFactory is LeanWebSocketFactory
    assert daphne.cli.CommandLineInterface.server_class is ShortcutServer
    # Daphne builds its factory from that module attribute when its server runs, and its
    # command line its server from that class attribute.
    assert "WebSocketFactory(self" in inspect.getsource(daphne.server.Server.run)
    assert "self.server_class(" in inspect.getsource(daphne.cli.CommandLineInterface.run)


# --- The application's shortcut: frames handed over, text sent directly -----------------


class HandedOver:
    """A handler for `receive_text_with` that keeps each frame, or hands it back."""

    def __init__(self, hand_back=None) -> None:
        self.texts: list[str] = []
        self.hand_back = hand_back

    def __call__(self, text: str) -> dict | None:
        self.texts.append(text)
        return self.hand_back(text) if self.hand_back else None


def test_a_text_frame_goes_to_the_handler_as_it_is_read_when_nothing_is_queued():
    lean, queue = accepted_socket()
    handler = HandedOver()
    lean.receive_text_with(handler)
    lean.last_ping = 0
    with mock.patch.object(autobahn_protocol.WebSocketProtocol, "processData") as parser:
        lean.dataReceived(client_frame(MEDIA_FRAME) + client_frame(b"{}"))
    parser.assert_not_called()
    assert handler.texts == [MEDIA_FRAME.decode(), "{}"] and queue == []
    assert lean.last_ping > 0  # Daphne's keep-alive clock, as its onMessage sets it
    plain, _ = accepted_socket(WebSocketFactory)
    plain.dataReceived(client_frame(MEDIA_FRAME) + client_frame(b"{}"))
    assert incoming_counters(lean) == incoming_counters(plain)


def test_what_the_handler_hands_back_is_queued_and_later_frames_queue_behind_it():
    lean, queue = accepted_socket()
    handler = HandedOver(hand_back=lambda text: {"type": "left over", "after": text})
    lean.receive_text_with(handler)
    lean.dataReceived(client_frame(b"one") + client_frame(b"two"))
    assert handler.texts == ["one"]
    assert queue == [
        {"type": "left over", "after": "one"},
        {"type": "websocket.receive", "text": "two"},
    ]
    queue.clear()  # the application caught up
    lean.dataReceived(client_frame(b"three"))
    assert handler.texts == ["one", "three"]


def test_binary_and_fragmented_messages_and_a_muted_socket_keep_daphnes_path():
    lean, queue = accepted_socket()
    handler = HandedOver()
    lean.receive_text_with(handler)
    fragmented = client_frame(b"sec", fin=False) + client_frame(b"ond", opcode=0)
    lean.dataReceived(client_frame(b"\x00", opcode=2) + fragmented)
    assert handler.texts == [] and received(queue) == [b"\x00", "second"]
    queue.clear()
    lean.muted = True  # Daphne drops what a muted socket reads
    lean.dataReceived(client_frame(b"dropped"))
    assert handler.texts == [] and queue == []
    lean.muted = False
    lean.receive_text_with(None)
    lean.dataReceived(client_frame(b"queued"))
    assert handler.texts == [] and received(queue) == ["queued"]


class CaughtUpQueue(ApplicationQueue):
    """An application that takes each message at once: `empty()` is always true."""

    def empty(self) -> bool:
        return True


@settings(max_examples=150, deadline=None)
@given(st.lists(frames_a_client_might_send(), max_size=8), st.data())
def test_with_a_handler_every_message_arrives_once_in_order_as_through_daphne(frames, data):
    lean, _ = accepted_socket()
    lean.application_queue = arrived = CaughtUpQueue()
    # Every other frame is handed back, as a consumer busy with an earlier one does.
    turn = iter(range(1_000))
    lean.receive_text_with(
        lambda text: (
            arrived.append({"type": "websocket.receive", "text": text})
            if next(turn) % 2
            else {"type": "websocket.receive", "text": text}
        )
    )
    plain, plain_queue = accepted_socket(WebSocketFactory)
    read_by_both(frames, data, lean, plain)
    assert arrived == plain_queue


def outgoing_counters(protocol) -> dict:
    return {k: v for k, v in vars(protocol.trafficStats).items() if k.startswith("outgoing")}


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536])
@pytest.mark.parametrize("letter", ["x", "é"])
def test_send_text_writes_what_daphne_writes_for_websocket_send(length, letter):
    text = letter * (length // len(letter.encode()))  # lengths at each header size's edge
    lean, _ = accepted_socket()
    plain, _ = accepted_socket(WebSocketFactory)
    lean.maxMessagePayloadSize = plain.maxMessagePayloadSize = 0  # no limit
    with mock.patch.object(autobahn_protocol.WebSocketProtocol, "sendMessage") as general:
        lean.send_text(text)
    general.assert_not_called()
    plain.handle_reply({"type": "websocket.send", "text": text})
    assert lean.transport.value() == plain.transport.value()
    assert outgoing_counters(lean) == outgoing_counters(plain)


def test_send_text_leaves_fragmenting_and_size_limits_to_autobahn():
    lean, _ = accepted_socket()
    plain, _ = accepted_socket(WebSocketFactory)
    for protocol in (lean, plain):
        protocol.autoFragmentSize = 4
    lean.send_text("fragmented")
    plain.handle_reply({"type": "websocket.send", "text": "fragmented"})
    assert lean.transport.value() == plain.transport.value()
    assert lean.trafficStats.outgoingWebSocketFrames == 3
    with pytest.raises(PayloadExceededError):
        lean.send_text("x" * 3001)  # maxMessagePayloadSize=3000, as autobahn refuses it


def test_send_text_drops_what_is_sent_once_the_socket_is_no_longer_open():
    lean, _ = accepted_socket()
    lean.sendClose(code=1000)
    lean.transport.clear()
    lean.send_text("too late")
    assert lean.transport.value() == b""


async def test_the_server_offers_the_protocol_to_the_application_in_the_scope():
    scopes = []

    async def application(scope, receive, send) -> None:
        scopes.append(scope)

    server = ShortcutServer(application=application, endpoints=["tcp:port=0"])  # not run
    server.connections = {}  # what run() sets up
    lean, _ = accepted_socket()
    plain, _ = accepted_socket(WebSocketFactory)
    for protocol in (lean, plain):
        server.protocol_connected(protocol)
        scope = {"type": "websocket", "extensions": {"other": {}}}
        assert isinstance(server.create_application(protocol, scope), asyncio.Queue)
    await asyncio.sleep(0)
    assert scopes[0]["extensions"] == {"other": {}, SHORTCUT_EXTENSION: lean}
    assert scopes[1]["extensions"] == {"other": {}}


# --- Sending: a turn's frames in one system call ------------------------------------------


class RecordingReactor:
    """What a Twisted TCP transport asks of its reactor, kept instead of done: whether a
    send was left to Twisted's buffer shows as a writer registration."""

    def __init__(self) -> None:
        self.writers = []

    def addWriter(self, writer) -> None:
        self.writers.append(writer)

    def removeWriter(self, writer) -> None:
        self.writers.remove(writer)

    def addReader(self, reader) -> None:
        pass

    def removeReader(self, reader) -> None:
        pass


class SocketPairConnection(tcp.Connection):
    """Twisted's TCP transport on one end of a socket pair (which has no TCP addresses)."""

    def getPeer(self) -> address.IPv4Address:
        return address.IPv4Address("TCP", "127.0.0.1", 1)

    def getHost(self) -> address.IPv4Address:
        return address.IPv4Address("TCP", "127.0.0.1", 8000)


async def accepted_on_a_real_socket():
    """The accepted socket on Twisted's own TCP transport over a socket pair, as in the web
    server (its reactor recorded); returns the protocol, the transport and the client end.
    """
    ours, client_end = socket.socketpair()
    ours.setblocking(False)
    client_end.setblocking(False)
    transport = SocketPairConnection(ours, None, reactor=RecordingReactor())
    transport.connected = 1
    protocol, _ = accepted_socket(transport=transport)
    transport.protocol = protocol
    await asyncio.sleep(0)  # the end of the turn: the handshake's answer goes out
    assert read_all(client_end).startswith(b"HTTP/1.1 101")
    return protocol, transport, client_end


def read_all(client_end) -> bytes:
    chunks = []
    while True:
        try:
            chunk = client_end.recv(1 << 20)
        except BlockingIOError:
            return b"".join(chunks)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def twisted_holds(transport) -> bytes:
    return transport.dataBuffer[transport.offset :] + b"".join(transport._tempDataBuffer)


async def test_frames_sent_in_one_turn_leave_in_one_system_call_at_its_end():
    lean, transport, client_end = await accepted_on_a_real_socket()
    with mock.patch.object(transport, "writeSomeData", wraps=transport.writeSomeData) as sent:
        lean.sendData(b"media")
        lean.sendData(b"mark")
        assert read_all(client_end) == b""  # nothing before the turn ends
        await asyncio.sleep(0)
    assert [c.args for c in sent.call_args_list] == [(b"mediamark",)]
    assert read_all(client_end) == b"mediamark"
    assert transport.reactor.writers == []  # never registered for writing
    assert lean.trafficStats.outgoingOctetsWireLevel == 9


async def test_what_the_socket_does_not_take_waits_in_twisteds_buffer_in_order():
    lean, transport, client_end = await accepted_on_a_real_socket()
    big = bytes(range(256)) * 40_000  # more than the socket pair's buffers hold
    lean.sendData(big)
    await asyncio.sleep(0)
    assert transport.reactor.writers == [transport]
    assert 0 < len(twisted_holds(transport)) < len(big)
    lean.sendData(b"after")  # Twisted holds unsent bytes: this queues behind them
    await asyncio.sleep(0)
    assert twisted_holds(transport).endswith(b"after")
    transport.doWrite()  # the reactor's turn: part moves into Twisted's send buffer
    received_bytes = read_all(client_end)  # the socket has room again
    lean.sendData(b"later")
    await asyncio.sleep(0)
    assert twisted_holds(transport).endswith(b"afterlater")
    while twisted_holds(transport):
        transport.doWrite()
        received_bytes += read_all(client_end)
    assert received_bytes == big + b"afterlater"


async def test_a_broken_connection_leaves_the_frames_to_twisted():
    lean, transport, client_end = await accepted_on_a_real_socket()
    client_end.close()
    lean.sendData(b"media")
    await asyncio.sleep(0)
    assert twisted_holds(transport) == b"media"
    assert transport.reactor.writers == [transport]  # Twisted meets the error and closes


async def test_closing_sends_the_corked_frames_first():
    lean, transport, client_end = await accepted_on_a_real_socket()
    lean.sendData(b"last words")
    with mock.patch.object(transport, "loseConnection") as lose:
        lean.dropConnection(abort=False)
        assert read_all(client_end) == b"last words"
    lose.assert_called_once()


async def test_a_send_through_autobahns_own_path_follows_the_corked_frames():
    lean, transport, client_end = await accepted_on_a_real_socket()
    lean.sendData(b"first")
    with mock.patch.object(
        autobahn_protocol.WebSocketProtocol, "sendData", autospec=True
    ) as autobahn_send:
        autobahn_send.side_effect = lambda protocol, data, *args: transport.write(data)
        lean.sendData(b"second", sync=True)
    assert read_all(client_end) == b"first"
    assert twisted_holds(transport) == b"second"


def test_without_an_asyncio_loop_twisted_writes_each_frame():
    lean, _ = accepted_socket()  # built outside a running loop
    assert lean.corking_loop is None
    lean.sendData(b"media")
    assert lean.transport.value() == b"media"
