"""The OpenAI-side connection's own send: the frames it writes are the frames websockets
would write (checked by websockets' own server-side parser), in order with everything
websockets sends itself, and it steps aside whenever websockets' send must decide.
"""

import asyncio
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side

from voiceagents.realtime_socket import MaskKeys, RealtimeConnection, masked_text_frame

KEY = b"\x01\x02\x03\x04"


def parsed_by_a_server(wire: bytes) -> list[Frame]:
    """The frames websockets' server side reads from `wire` (it requires masking)."""
    server = Protocol(Side.SERVER, max_size=None)  # open: past the handshake
    server.receive_data(wire)
    assert server.parser_exc is None, server.parser_exc
    return server.events_received()


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_every_length_encoding_parses_back_to_the_same_text(length):
    text = "a" * length
    [frame] = parsed_by_a_server(masked_text_frame(text.encode(), KEY))
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.TEXT, True, text.encode())


@given(st.text(), st.binary(min_size=4, max_size=4))
def test_any_text_with_any_key_is_the_frame_websockets_writes(text, key):
    ours = masked_text_frame(text.encode(), key)
    with mock.patch("secrets.token_bytes", return_value=key):
        theirs = Frame(Opcode.TEXT, text.encode()).serialize(mask=True)
    assert ours == theirs


def test_mask_keys_come_from_the_os_a_block_at_a_time():
    keys = MaskKeys(keys_per_draw=3)
    with mock.patch("os.urandom", side_effect=[b"abcdefghijkl", b"mnopqrstuvwx"]) as urandom:
        drawn = [keys.take() for _ in range(4)]
    assert drawn == [b"abcd", b"efgh", b"ijkl", b"mnop"]
    assert [call.args for call in urandom.call_args_list] == [(12,), (12,)]


def test_each_connection_draws_its_own_keys():
    # Nothing drawn at import or before the first frame: a web process forked after
    # import never shares a block with its siblings.
    assert MaskKeys().block == b""


class Recorder:
    """A loopback websockets server that keeps every message it receives, in order."""

    def __init__(self) -> None:
        self.messages: list[str | bytes] = []
        self.received = asyncio.Event()

    async def handler(self, connection) -> None:
        async for message in connection:
            self.messages.append(message)
            self.received.set()

    async def wait_for(self, count: int) -> list[str | bytes]:
        async with asyncio.timeout(5):
            while len(self.messages) < count:
                self.received.clear()
                await self.received.wait()
        return self.messages


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def url(recorder):
    async with serve(recorder.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def open_connection(url: str) -> RealtimeConnection:
    return await connect(url, compression=None, create_connection=RealtimeConnection)


async def test_messages_keep_their_order_across_both_paths(recorder, url):
    connection = await open_connection(url)
    assert connection.send_now("one")
    await connection.send(b"two")  # binary: websockets' own send
    await connection.send("three")  # text: websockets' own send too
    assert connection.send_now("four")
    await connection.send(["fi", "ve"])  # fragments: websockets' own send
    assert connection.send_now("six")
    assert await recorder.wait_for(6) == ["one", b"two", "three", "four", "five", "six"]
    await connection.close()


async def test_the_direct_write_masks_each_frame_with_a_fresh_key(url):
    connection = await open_connection(url)
    written = []
    with mock.patch.object(connection.transport, "write", side_effect=written.append):
        for _ in range(3):
            assert connection.send_now("same text")
    assert len({frame[2:6] for frame in written}) == 3
    await connection.close()


@pytest.mark.parametrize(
    "obstacle",
    [
        "paused by flow control",
        "bytes already queued",
        "a fragmented message in progress",
        "a message being sent",
        "debug logging",
        "an extension",
    ],
)
async def test_the_direct_write_steps_aside_when_websockets_must_decide(url, obstacle):
    connection = await open_connection(url)
    protocol = connection.protocol
    if obstacle == "paused by flow control":
        connection.paused = True
    elif obstacle == "bytes already queued":
        protocol.writes.append(b"")
    elif obstacle == "a fragmented message in progress":
        protocol.expect_continuation_frame = True
    elif obstacle == "a message being sent":
        connection.send_in_progress = asyncio.get_running_loop().create_future()
    elif obstacle == "debug logging":
        protocol.debug = True
    elif obstacle == "an extension":
        protocol.extensions = [object()]
    with mock.patch.object(connection.transport, "write") as write:
        assert connection.send_now("held back") is False
    write.assert_not_called()
    connection.transport.abort()


async def test_a_closed_connection_still_raises_websockets_close_reason(url):
    connection = await open_connection(url)
    await connection.close()
    assert connection.send_now("late") is False
    with pytest.raises(ConnectionClosed):
        await connection.send("late")


async def test_a_closing_transport_is_left_to_websockets(url):
    connection = await open_connection(url)
    connection.transport.close()
    assert connection.send_now("late") is False
