"""calls/consumers.py with the web server's shortcut (voiceagents/daphne_server.py): Twilio
frames handed over as they are read, and sends written without `websocket.send`. The bridge
is a stand-in that returns chosen actions (or fails), so each of the consumer's choices is
seen on its own; tests/integration/test_call_flow.py runs whole calls both ways."""

import asyncio
import contextvars
import logging

import pytest
from websockets.exceptions import ConnectionClosed

from calls.bridge import EndCall, ReconnectOpenAI, SendOpenAI, SendTwilio
from calls.consumers import LEFT_TO_PERFORM, MediaStreamConsumer
from calls.outcomes import CompletionReason
from voiceagents import realtime
from voiceagents.log_context import current_call_sid
from voiceagents.websocket_frames import SHORTCUT_EXTENSION


class StandInBridge:
    call_sid = "CA-shortcut"

    def __init__(self, *actions, fails: bool = False) -> None:
        self.actions = list(actions)
        self.fails = fails
        self.ended = False
        self.frames: list[str] = []

    def on_twilio_text(self, text: str) -> list:
        self.frames.append(text)
        if self.fails:
            raise RuntimeError("a bug in the bridge")
        return self.actions


class OpenAISocket:
    """What the consumer asks of its OpenAI connection's fast path."""

    def __init__(self, takes_now: bool = True) -> None:
        self.takes_now = takes_now
        self.sent: list[str] = []

    def send_now(self, text: str) -> bool:
        if self.takes_now:
            self.sent.append(text)
        return self.takes_now

    async def send(self, text: str) -> None:
        self.sent.append(text)


class TwilioSocket:
    """Daphne's protocol as the shortcut offers it."""

    def __init__(self) -> None:
        self.handler = None
        self.sent: list[str] = []

    def receive_text_with(self, handler) -> None:
        self.handler = handler

    def send_text(self, text: str) -> None:
        self.sent.append(text)


def consumer_with(bridge, openai=None) -> MediaStreamConsumer:
    consumer = MediaStreamConsumer()
    consumer.bridge = bridge
    consumer.openai = openai or OpenAISocket()
    consumer.twilio_socket = TwilioSocket()
    consumer.twilio_open = True
    return consumer


def test_a_caller_frame_goes_to_openai_at_once_and_leaves_nothing_queued():
    openai = OpenAISocket()
    consumer = consumer_with(StandInBridge(SendOpenAI("audio")), openai)
    assert consumer._frame_now("frame") is None
    assert openai.sent == ["audio"]


def test_while_the_receive_loop_is_busy_the_frame_is_handed_back_unread():
    bridge = StandInBridge(SendOpenAI("audio"))
    consumer = consumer_with(bridge)
    consumer.in_message = True
    assert consumer._frame_now("frame") == {"type": "websocket.receive", "text": "frame"}
    assert bridge.frames == []  # the receive loop reads it later, in its turn


def test_what_a_step_leaves_to_do_is_queued_for_the_receive_loop_in_order():
    openai = OpenAISocket(takes_now=False)  # a busy socket: only websockets' send waits
    consumer = consumer_with(StandInBridge(SendOpenAI("audio")), openai)
    assert consumer._frame_now("frame") == {
        "type": LEFT_TO_PERFORM,
        "actions": [SendOpenAI("audio")],
    }
    assert openai.sent == []
    # Done at once up to the first action that needs waiting for; the rest after it.
    consumer = consumer_with(
        StandInBridge(SendTwilio("clear"), ReconnectOpenAI("rollover"), SendTwilio("after"))
    )
    assert consumer._frame_now("frame") == {
        "type": LEFT_TO_PERFORM,
        "actions": [ReconnectOpenAI("rollover"), SendTwilio("after")],
    }
    assert consumer.twilio_socket.sent == ["clear"]


def ending_recorder(consumer: MediaStreamConsumer) -> list:
    ends = []

    async def end_call(end) -> None:
        ends.append(end)

    consumer._end_call = end_call
    return ends


async def test_a_bridge_bug_on_a_handed_over_frame_ends_that_call_as_a_server_error(caplog):
    bridge = StandInBridge(fails=True)
    consumer = consumer_with(bridge)
    ends = ending_recorder(consumer)
    with caplog.at_level(logging.ERROR, logger="calls.consumers"):
        assert consumer._frame_now("frame") is None  # raises nothing into Twisted's read
    await consumer.end_task
    assert ends == [EndCall(CompletionReason.SERVER_ERROR, "bridge_exception")]
    assert bridge.ended
    assert "bridge failed" in caplog.text and "a bug in the bridge" in caplog.text
    assert consumer._frame_now("frame") is None  # ending already: nothing more to do
    assert len(ends) == 1


async def test_the_receive_loop_performs_what_was_left_in_order_and_sends_directly():
    queue = asyncio.Queue()
    consumer = MediaStreamConsumer()
    consumer.bridge = StandInBridge(SendTwilio("three"))
    consumer.twilio_open = True
    consumer.openai = OpenAISocket(takes_now=False)
    twilio = TwilioSocket()
    twilio.handler = consumer._frame_now  # as handed over once the call started
    consumer.openai.sent = twilio.sent = wire = []  # both sockets' messages, in order
    scope = {"type": "websocket", "extensions": {SHORTCUT_EXTENSION: twilio}}
    # What a handed-over frame left: a message OpenAI's socket did not take, then one more.
    left = [SendOpenAI("one"), SendTwilio("two")]
    queue.put_nowait({"type": LEFT_TO_PERFORM, "actions": left})
    queue.put_nowait({"type": "websocket.receive", "text": "frame"})
    loop = asyncio.create_task(consumer(scope, queue.get, send=None))
    for _ in range(50):  # turns of the loop: the consumer takes both messages
        await asyncio.sleep(0)
    assert queue.empty()
    assert wire == ["one", "two", "three"]
    assert not consumer.in_message  # parked in receive(): frames may be handed over
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop
    assert consumer.twilio_socket is twilio and twilio.handler is None  # let go at the end


async def test_handed_over_frames_run_in_the_calls_log_context():
    seen = []

    class Bridge(StandInBridge):
        def on_twilio_text(self, text: str) -> list:
            seen.append(current_call_sid.get())
            return []

    consumer = consumer_with(Bridge())
    twilio = consumer.twilio_socket

    async def start() -> None:  # what _start_call does around the accept
        current_call_sid.set("CA-shortcut")
        consumer._hand_frames_over()

    await asyncio.create_task(start())
    contextvars.Context().run(twilio.handler, "frame")  # as from Twisted's read: no sid
    assert seen == ["CA-shortcut"]


# --- OpenAI's events handed over by its socket (RealtimeConnection.hand_text_to) ----------


class StandInOpenAIBridge(StandInBridge):
    def on_openai_text(self, text: str) -> list:
        return self.on_twilio_text(text)


async def test_an_openai_event_is_carried_out_at_once_when_nothing_needs_waiting_for():
    consumer = consumer_with(StandInOpenAIBridge(SendTwilio("media"), SendTwilio("mark")))
    assert consumer._openai_event_now("response.output_audio.delta") is True
    assert consumer.twilio_socket.sent == ["media", "mark"]
    assert consumer.openai_left is None


async def test_while_what_an_event_left_runs_later_events_are_left_to_the_reader():
    reconnected = asyncio.Event()
    consumer = consumer_with(StandInOpenAIBridge(ReconnectOpenAI("rollover"), SendTwilio("after")))

    async def reconnect() -> None:
        await reconnected.wait()

    consumer._reconnect_openai = reconnect
    assert consumer._openai_event_now("first") is True
    assert consumer.openai_left is not None
    assert consumer._openai_event_now("second") is False  # the reader takes it, in turn
    assert consumer.bridge.frames == ["first"]
    reconnected.set()
    await consumer.openai_left
    assert consumer.twilio_socket.sent == ["after"]
    assert consumer._openai_event_now("third") is True
    assert consumer.bridge.frames == ["first", "third"]


async def test_a_bridge_bug_on_a_handed_over_openai_event_ends_the_call():
    consumer = consumer_with(StandInOpenAIBridge(fails=True))
    ends = ending_recorder(consumer)
    assert consumer._openai_event_now("event") is True  # raises nothing into websockets
    await consumer.end_task
    assert ends == [EndCall(CompletionReason.SERVER_ERROR, "bridge_exception")]


class StandInAgent:
    model = "gpt-realtime"


class ClosingSocket:
    """An OpenAI session that OpenAI closes as soon as the reader starts."""

    close_code, close_reason = 1011, "server error"

    def hand_text_to(self, handler) -> None:
        pass

    def __aiter__(self):
        return self

    async def __anext__(self):
        raise ConnectionClosed(None, None)


async def test_a_closed_session_is_handled_after_what_the_last_event_left(monkeypatch):
    order = []

    class Bridge(StandInOpenAIBridge):
        def on_openai_connected(self) -> list:
            return []

        on_openai_reconnected = on_openai_connected

        def on_openai_closed(self, detail: str) -> list:
            order.append("closed")
            return []

    consumer = consumer_with(Bridge())
    consumer.openai = None
    left_may_finish = asyncio.Event()

    async def what_an_event_left() -> None:
        await left_may_finish.wait()
        order.append("left")

    consumer.openai_left = asyncio.create_task(what_an_event_left())

    async def connect(*args) -> ClosingSocket:
        return ClosingSocket()

    monkeypatch.setattr(realtime, "connect", connect)
    reader = asyncio.create_task(consumer._run_openai(StandInAgent()))
    await asyncio.sleep(0.01)
    assert order == []  # the close waits for the rest of the earlier event
    left_may_finish.set()
    await asyncio.wait_for(reader, 5)
    assert order == ["left", "closed"]
