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


# --- Receiving: whole text messages handed over as they are read --------------------------


class Speaker:
    """A loopback websockets server that sends each connection the messages it is given."""

    def __init__(self) -> None:
        self.to_send: asyncio.Queue = asyncio.Queue()

    async def handler(self, connection) -> None:
        closed = asyncio.create_task(connection.wait_closed())
        while True:
            message = asyncio.create_task(self.to_send.get())
            await asyncio.wait([message, closed], return_when=asyncio.FIRST_COMPLETED)
            if closed.done():
                message.cancel()
                return
            await connection.send(message.result())


@pytest.fixture
async def speaker_url():
    speaker = Speaker()
    async with serve(speaker.handler, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        yield speaker, f"ws://127.0.0.1:{port}"


async def read_into(connection: RealtimeConnection, order: list) -> None:
    async for message in connection:
        order.append(("read", message))


async def settle(order: list, count: int) -> None:
    async with asyncio.timeout(5):
        while len(order) < count:  # noqa: ASYNC110 - the reader and handler fill it
            await asyncio.sleep(0.01)


async def test_text_messages_go_to_the_handler_while_the_reader_waits_in_order(speaker_url):
    speaker, url = speaker_url
    connection = await open_connection(url)
    order: list = []
    connection.hand_text_to(lambda text: order.append(("handed", text)) or True)
    reader = asyncio.create_task(read_into(connection, order))
    await asyncio.sleep(0.05)  # the reader waits in recv
    for message in ["a", "b", b"binary", ["frag", "mented"], "c"]:
        speaker.to_send.put_nowait(message)
    await settle(order, 5)
    assert [message for _, message in order] == ["a", "b", b"binary", "fragmented", "c"]
    assert ("handed", "a") in order and ("read", b"binary") in order
    speaker.to_send.put_nowait("d")  # the reader caught up: handed over again
    await settle(order, 6)
    assert order[-1] == ("handed", "d")
    reader.cancel()
    await connection.close()


async def test_a_message_the_handler_declines_or_no_reader_waits_for_goes_to_recv(speaker_url):
    speaker, url = speaker_url
    connection = await open_connection(url)
    handed: list[str] = []
    connection.hand_text_to(lambda text: handed.append(text) and False)  # declines
    speaker.to_send.put_nowait("declined")
    assert await asyncio.wait_for(connection.recv(), 5) == "declined"
    assert handed == ["declined"]
    connection.hand_text_to(lambda text: handed.append(text) or True)
    speaker.to_send.put_nowait("nobody waits")  # no recv running when it arrives
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(connection.recv(), 5) == "nobody waits"
    assert handed == ["declined"]
    await connection.close()


async def test_invalid_utf8_is_left_to_websockets_which_fails_the_connection(speaker_url):
    _, url = speaker_url
    connection = await open_connection(url)
    handed: list[str] = []
    connection.hand_text_to(lambda text: handed.append(text) or True)
    receiving = asyncio.create_task(connection.recv())
    await asyncio.sleep(0.05)
    connection.process_event(Frame(Opcode.TEXT, b"\xff\xfe"))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(receiving, 5)
    assert handed == []
    assert connection.protocol.close_sent.code == 1007  # invalid data, as websockets does
