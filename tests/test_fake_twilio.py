"""Tests of the fake Twilio caller itself, against a tiny stand-in app on loopback that
checks signatures the way the real app does and plays scripted stream behaviour.

Run without Django: `.venv/bin/pytest tests/test_fake_twilio.py -p no:django`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import Connect, VoiceResponse
from websockets.frames import Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from tests.fakes import audio
from tests.fakes.twilio_caller import (
    FRAME_BYTES,
    FakeTwilioCall,
    StreamRefused,
    parse_twiml,
    read_connect,
    run_twiml,
)

AUTH_TOKEN = "test-auth-token"
ACCOUNT_SID = "AC" + "1" * 32
PUBLIC = "https://voice.example.com"
TOKEN = "tok3n"
APOLOGY = "Sorry, something went wrong."


def connect_twiml(public: str, *, path: str = f"/twilio/stream/{TOKEN}", action: bool = True):
    ws_base = public.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    response = VoiceResponse()
    connect = Connect(action=public + "/twilio/stream-ended") if action else Connect()
    stream = connect.stream(url=ws_base + path)
    stream.parameter(name="token", value=TOKEN)
    response.append(connect)
    return str(response)


def say_and_hangup(text: str) -> str:
    response = VoiceResponse()
    response.say(text)
    response.hangup()
    return str(response)


# --- a tiny app: HTTP webhooks and the media-stream WebSocket on one port ---------------


@dataclass
class HttpHit:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]
    signature_ok: bool


class StreamSocket:
    """The app's end of one media stream (websockets' sans-I/O server protocol)."""

    def __init__(self, protocol: ServerProtocol, reader, writer, request: Request) -> None:
        self.protocol = protocol
        self.reader = reader
        self.writer = writer
        self.request = request
        self.inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.closed = asyncio.Event()
        self.pump = asyncio.get_running_loop().create_task(self._pump())

    def _flush(self) -> None:
        for data in self.protocol.data_to_send():
            if data:
                self.writer.write(data)
            else:
                self.writer.close()

    async def _pump(self) -> None:
        try:
            while self.protocol.state is not State.CLOSED:
                data = await self.reader.read(65536)
                if data:
                    self.protocol.receive_data(data)
                else:
                    self.protocol.receive_eof()
                for frame in self.protocol.events_received():
                    if frame.opcode is Opcode.TEXT:
                        self.inbox.put_nowait(frame.data.decode())
                    elif frame.opcode is Opcode.BINARY:
                        self.inbox.put_nowait(bytes(frame.data))
                self._flush()
                if not data:
                    break
        finally:
            self.writer.close()
            self.closed.set()

    async def recv(self, timeout: float = 2.0) -> dict:  # noqa: ASYNC109
        return orjson.loads(await asyncio.wait_for(self.inbox.get(), timeout))

    async def next_event(self, kind: str, timeout: float = 2.0) -> dict:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.0, deadline - time.monotonic()))
            if message["event"] == kind:
                return message

    def send(self, message: dict | str | bytes) -> None:
        if isinstance(message, dict):
            message = orjson.dumps(message).decode()
        if isinstance(message, str):
            self.protocol.send_text(message.encode())
        else:
            self.protocol.send_binary(message)
        self._flush()

    async def close(self, code: int = 1000) -> None:
        self.protocol.send_close(code)
        self._flush()
        await asyncio.wait_for(self.closed.wait(), 2)


class TinyApp:
    """Stands in for the Django app: checks Twilio signatures against the public URL,
    answers scripted TwiML, and hands each accepted media stream to the test."""

    def __init__(self, public_base_url: str | None = None) -> None:
        self.public_base_url = public_base_url
        self.hits: list[HttpHit] = []
        self.handshakes: list[tuple[Request, bool]] = []
        self.sockets: asyncio.Queue[StreamSocket] = asyncio.Queue()
        self.voice_twiml = ""
        self.action_twiml = say_and_hangup(APOLOGY)
        self.refuse_streams = False
        self.validator = RequestValidator(AUTH_TOKEN)

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.public = self.public_base_url or self.base_url
        self.voice_twiml = connect_twiml(self.public)

    async def stop(self) -> None:
        self.server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    async def next_socket(self, timeout: float = 2.0) -> StreamSocket:  # noqa: ASYNC109
        return await asyncio.wait_for(self.sockets.get(), timeout)

    async def _handle(self, reader, writer) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _ = request_line.split(" ")
        if method == "GET":
            await self._stream(head, reader, writer)
            return
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        ok = self.validator.validate(
            self.public + target, form, headers.get("x-twilio-signature", "")
        )
        self.hits.append(HttpHit(method, urlsplit(target).path, headers, form, ok))
        if not ok:
            status, text = "403 Forbidden", "Invalid Twilio signature"
        elif target.startswith("/twilio/voice"):
            status, text = "200 OK", self.voice_twiml
        else:
            status, text = "200 OK", self.action_twiml
        payload = text.encode()
        writer.write(
            f"HTTP/1.1 {status}\r\nContent-Type: text/xml; charset=utf-8\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )
        await writer.drain()
        writer.close()

    async def _stream(self, head: bytes, reader, writer) -> None:
        protocol = ServerProtocol()
        protocol.receive_data(head)
        (request,) = protocol.events_received()
        ws_public = self.public.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
        signed = self.validator.validate(
            ws_public + request.path, {}, request.headers.get("X-Twilio-Signature", "")
        )
        self.handshakes.append((request, signed))
        if self.refuse_streams:
            protocol.send_response(protocol.reject(403, "Forbidden"))
            for data in protocol.data_to_send():
                writer.write(data)
            await writer.drain()
            writer.close()
            return
        protocol.send_response(protocol.accept(request))
        socket = StreamSocket(protocol, reader, writer, request)
        socket._flush()
        self.sockets.put_nowait(socket)
        await socket.closed.wait()


@pytest.fixture
async def app():
    tiny = TinyApp()
    await tiny.start()
    yield tiny
    await tiny.stop()


@pytest.fixture
async def proxied_app():
    tiny = TinyApp(public_base_url=PUBLIC)
    await tiny.start()
    yield tiny
    await tiny.stop()


@pytest.fixture
async def make_call():
    calls: list[FakeTwilioCall] = []

    def make(tiny: TinyApp, **kwargs) -> FakeTwilioCall:
        kwargs.setdefault("public_base_url", tiny.public_base_url)
        call = FakeTwilioCall(
            tiny.base_url, auth_token=AUTH_TOKEN, account_sid=ACCOUNT_SID, **kwargs
        )
        calls.append(call)
        return call

    yield make
    for call in calls:
        await call.close()


async def answered(tiny: TinyApp, call: FakeTwilioCall) -> StreamSocket:
    """Dial, connect the stream, and return the app's socket after connected + start."""
    response = await call.dial()
    assert response.status_code == 200
    await call.connect_stream()
    socket = await tiny.next_socket()
    assert (await socket.recv())["event"] == "connected"
    assert (await socket.recv())["event"] == "start"
    return socket


def media(call: FakeTwilioCall, ulaw: bytes) -> dict:
    return {
        "event": "media",
        "streamSid": call.stream_sid,
        "media": {"payload": base64.b64encode(ulaw).decode()},
    }


def mark(call: FakeTwilioCall, name: str) -> dict:
    return {"event": "mark", "streamSid": call.stream_sid, "mark": {"name": name}}


def send_audio(socket: StreamSocket, call: FakeTwilioCall, ulaw: bytes) -> None:
    for offset in range(0, len(ulaw), FRAME_BYTES):
        socket.send(media(call, ulaw[offset : offset + FRAME_BYTES]))


# --- webhook and TwiML -----------------------------------------------------------------


async def test_webhook_is_signed_for_the_public_url_and_the_twiml_is_read(proxied_app, make_call):
    call = make_call(proxied_app, from_number="+15550009999", to_number="+15550008888")
    response = await call.dial()

    assert response.status_code == 200
    (hit,) = proxied_app.hits
    assert hit.signature_ok
    assert hit.path == "/twilio/voice"
    assert hit.headers["host"] == "voice.example.com"
    # The signature covers the public URL, not the address the request was sent to.
    validator = RequestValidator(AUTH_TOKEN)
    app_url = proxied_app.base_url + "/twilio/voice"
    assert not validator.validate(app_url, hit.form, hit.headers["x-twilio-signature"])
    assert hit.form["CallSid"] == call.call_sid and call.call_sid.startswith("CA")
    assert len(call.call_sid) == 34
    assert hit.form["AccountSid"] == ACCOUNT_SID
    assert hit.form["From"] == hit.form["Caller"] == "+15550009999"
    assert hit.form["To"] == hit.form["Called"] == "+15550008888"
    assert hit.form["CallStatus"] == "ringing"
    assert hit.form["Direction"] == "inbound"
    assert hit.form["ApiVersion"] == "2010-04-01"

    assert call.twiml == proxied_app.voice_twiml
    assert call.stream_url == f"wss://voice.example.com/twilio/stream/{TOKEN}"
    assert call.stream_parameters == {"token": TOKEN}
    assert call.connect_action == PUBLIC + "/twilio/stream-ended"
    assert call.say_texts == [] and not call.hung_up_by_twiml
    assert call.violations == []


async def test_stream_handshake_goes_to_the_app_with_public_host_and_signature(
    proxied_app, make_call
):
    call = make_call(proxied_app)
    socket = await answered(proxied_app, call)

    ((request, signed),) = proxied_app.handshakes
    assert signed
    assert request.path == f"/twilio/stream/{TOKEN}"
    assert request.headers["Host"] == "voice.example.com"
    await call.hangup()
    await socket.closed.wait()
    assert call.violations == []


async def test_unknown_number_answer_is_read(app, make_call):
    app.voice_twiml = say_and_hangup("This number is not in service.")
    call = make_call(app)
    await call.dial()
    assert call.say_texts == ["This number is not in service."]
    assert call.hung_up_by_twiml
    assert call.stream_url is None
    assert call.twiml_verbs == ["Say", "Hangup"]
    with pytest.raises(RuntimeError):
        await call.connect_stream()
    assert call.violations == []


async def test_bad_signature_is_refused_by_the_app(app, make_call):
    call = make_call(app)
    response = await call.dial(signature="forged")
    assert response.status_code == 403
    assert call.twiml is None and call.stream_url is None


async def test_query_string_of_the_stream_url_is_dropped_and_reported(app, make_call):
    app.voice_twiml = connect_twiml(app.public, path=f"/twilio/stream?token={TOKEN}")
    call = make_call(app)
    await call.dial()
    assert any("query string" in v for v in call.violations)
    await call.connect_stream()
    socket = await app.next_socket()
    ((request, signed),) = app.handshakes
    assert request.path == "/twilio/stream"
    assert signed
    await call.hangup()
    await socket.closed.wait()


def test_twiml_problems_and_relative_urls():
    verbs, problems = parse_twiml("<Response><Sayy>hi</Sayy></Response>")
    assert problems == ["unknown TwiML verb <Sayy>"]
    _, problems = parse_twiml("<Connect/>")
    assert problems and "not <Response>" in problems[0]
    _, problems = parse_twiml("not xml")
    assert problems and "well-formed" in problems[0]

    verbs, problems = parse_twiml(
        '<Response><Say>One</Say><Connect action="/done" method="GET">'
        '<Stream url="/twilio/stream/x" track="both_tracks"/></Connect>'
        "<Say>After</Say></Response>"
    )
    run = run_twiml(verbs)
    assert run.say_texts == ["One"] and run.connect is not None
    assert [v.tag for v in run.remaining] == ["Say"]
    stream = read_connect(run.connect, "https://voice.example.com/twilio/voice", "https")
    assert stream.url == "wss://voice.example.com/twilio/stream/x"
    assert stream.action == "https://voice.example.com/done"
    assert stream.method == "GET"
    assert any("inbound_track" in p for p in stream.problems)

    # Twilio only speaks wss:// to a public https app.
    verbs, _ = parse_twiml(
        '<Response><Connect><Stream url="ws://voice.example.com/s"/></Connect></Response>'
    )
    stream = read_connect(run_twiml(verbs).connect, PUBLIC + "/twilio/voice", "https")
    assert any("scheme" in p for p in stream.problems)


# --- caller audio ------------------------------------------------------------------------


async def test_start_and_media_frames_every_20_ms(app, make_call):
    call = make_call(app)
    call.speak(200)  # the caller talks first, then is silent
    await call.dial()
    await call.connect_stream()
    socket = await app.next_socket()

    assert await socket.recv() == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    start = await socket.recv()
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": ACCOUNT_SID,
            "streamSid": call.stream_sid,
            "callSid": call.call_sid,
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            "customParameters": {"token": TOKEN},
        },
        "streamSid": call.stream_sid,
    }
    assert call.stream_sid.startswith("MZ") and len(call.stream_sid) == 34

    began = time.monotonic()
    frames = []
    while time.monotonic() - began < 1.0:
        frames.append(await socket.recv())
    assert 45 <= len(frames) <= 52
    for number, frame in enumerate(frames, start=1):
        assert frame["event"] == "media"
        assert frame["streamSid"] == call.stream_sid
        assert frame["sequenceNumber"] == str(number + 1)
        assert frame["media"]["track"] == "inbound"
        assert frame["media"]["chunk"] == str(number)
        assert frame["media"]["timestamp"] == str((number - 1) * 20)
    payloads = [base64.b64decode(f["media"]["payload"]) for f in frames]
    assert all(len(p) == FRAME_BYTES for p in payloads)
    assert all(audio.is_speech(p) for p in payloads[:10])
    assert not any(audio.is_speech(p) for p in payloads[10:])
    assert set(b"".join(payloads[10:])) == {audio.ULAW_SILENCE}
    assert bytes(call.sent_audio[: len(payloads) * FRAME_BYTES]) == b"".join(payloads)

    # speak_and_wait returns once the speech has gone out, in real time.
    frames_before = call.sent_media_frames
    began = time.monotonic()
    assert await call.speak_and_wait(200)
    assert 0.15 <= time.monotonic() - began <= 0.4
    assert call.sent_media_frames - frames_before >= 10
    await call.hangup()


# --- playback ----------------------------------------------------------------------------


async def test_mark_is_echoed_when_the_audio_before_it_has_played(app, make_call):
    call = make_call(app)
    socket = await answered(app, call)
    speech = audio.tone(400, freq=500)

    socket.send(mark(call, "nothing-queued"))
    echo = await socket.next_event("mark")
    assert echo["mark"] == {"name": "nothing-queued"}

    sent_at = time.monotonic()
    send_audio(socket, call, speech)
    socket.send(mark(call, "after-speech"))
    echo = await socket.next_event("mark")
    elapsed = time.monotonic() - sent_at
    assert 0.35 <= elapsed <= 0.6
    assert echo == {
        "event": "mark",
        "sequenceNumber": echo["sequenceNumber"],
        "streamSid": call.stream_sid,
        "mark": {"name": "after-speech"},
    }
    assert bytes(call.heard_audio) == speech
    assert [name for _, name in call.marks_echoed] == ["nothing-queued", "after-speech"]
    assert len(call.media_received) == 20
    assert call.first_media_at is not None
    assert call.violations == []
    await call.hangup()


async def test_clear_drops_unplayed_audio_and_echoes_pending_marks(app, make_call):
    call = make_call(app)
    socket = await answered(app, call)
    speech = audio.tone(1000, freq=500)

    send_audio(socket, call, speech[:4000])
    socket.send(mark(call, "first"))
    send_audio(socket, call, speech[4000:])
    socket.send(mark(call, "second"))
    await asyncio.sleep(0.2)
    cleared_at = time.monotonic()
    socket.send({"event": "clear", "streamSid": call.stream_sid})
    first = await socket.next_event("mark")
    second = await socket.next_event("mark")
    assert time.monotonic() - cleared_at < 0.1
    assert (first["mark"]["name"], second["mark"]["name"]) == ("first", "second")
    assert int(second["sequenceNumber"]) > int(first["sequenceNumber"])

    await call.wait_for(lambda: call.clears)
    heard = bytes(call.heard_audio)
    assert 180 <= audio.ms_of(len(heard)) <= 300
    assert heard == speech[: len(heard)]
    assert len(heard) + call.dropped_audio_bytes == len(speech)
    await asyncio.sleep(0.1)
    assert bytes(call.heard_audio) == heard  # nothing plays after a clear
    assert call.violations == []
    await call.hangup()


# --- strictness --------------------------------------------------------------------------


async def test_protocol_mistakes_of_the_app_are_violations(app, make_call):
    call = make_call(app)
    await call.dial()
    await call.connect_stream(send_start=False)
    socket = await app.next_socket()
    assert (await socket.recv())["event"] == "connected"
    socket.send(media(call, audio.silence(20)))  # before start: no streamSid known yet
    await call.wait_for(lambda: call.violations)
    assert "before Twilio sent start" in call.violations[0]

    await call.send_start()
    assert (await socket.recv())["event"] == "start"
    bad = [
        {"event": "speak", "streamSid": call.stream_sid},
        {"event": "media", "streamSid": "MZwrong", "media": {"payload": "//8="}},
        {"event": "media", "media": {"payload": "//8="}},
        {"event": "media", "streamSid": call.stream_sid, "media": {"payload": "not base64!"}},
        {"event": "mark", "streamSid": call.stream_sid, "mark": {}},
        "{not json",
        b"\xff\xff",
    ]
    for message in bad:
        socket.send(message)
    await call.wait_for(lambda: len(call.violations) == 1 + len(bad))
    expected = [
        "unknown event 'speak'",
        "streamSid 'MZwrong'",
        "streamSid None",
        "not valid base64",
        "mark without a mark.name",
        "not JSON",
        "binary frame",
    ]
    for violation, words in zip(call.violations[1:], expected, strict=True):
        assert words in violation
    assert call.media_received == []
    assert call.marks_echoed == []
    await call.hangup()


# --- ending the call ---------------------------------------------------------------------


async def test_app_closing_the_stream_runs_the_action_url(proxied_app, make_call):
    call = make_call(proxied_app)
    socket = await answered(proxied_app, call)
    send_audio(socket, call, audio.tone(1000, freq=500))
    socket.send(mark(call, "never-played"))
    await asyncio.sleep(0.1)
    await socket.close(1000)
    await call.wait_closed(timeout=3)

    assert call.closed_by_app and call.close_code == 1000
    assert call.marks_echoed == []  # the rest of the audio was cut off with the stream
    assert 80 <= audio.ms_of(len(call.heard_audio)) <= 250
    _voice, action = proxied_app.hits
    assert action.path == "/twilio/stream-ended" and action.signature_ok
    assert action.headers["host"] == "voice.example.com"
    assert action.form["CallSid"] == call.call_sid
    assert action.form["CallStatus"] == "in-progress"
    assert call.after_stream_twiml == proxied_app.action_twiml
    assert call.after_stream_say_texts == [APOLOGY]
    assert call.after_stream_hung_up
    assert call.violations == []


async def test_without_action_the_rest_of_the_document_runs(app, make_call):
    response = VoiceResponse()
    connect = Connect()
    connect.stream(url=app.public.replace("http", "ws") + "/twilio/stream/x")
    response.append(connect)
    response.say("Goodbye.")
    app.voice_twiml = str(response)
    call = make_call(app)
    socket = await answered(app, call)
    await socket.close()
    await call.wait_closed(timeout=3)
    assert call.closed_by_app
    assert [hit.path for hit in app.hits] == ["/twilio/voice"]
    assert call.after_stream_twiml is None
    assert call.after_stream_say_texts == ["Goodbye."]


async def test_hangup_sends_stop_and_skips_the_action_url(app, make_call):
    call = make_call(app)
    socket = await answered(app, call)
    await call.dtmf("5")
    dtmf = await socket.next_event("dtmf")
    assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "5"}
    assert dtmf["streamSid"] == call.stream_sid

    await call.hangup()
    stop = await socket.next_event("stop")
    assert stop["streamSid"] == call.stream_sid
    assert stop["stop"] == {"accountSid": ACCOUNT_SID, "callSid": call.call_sid}
    assert int(stop["sequenceNumber"]) > int(dtmf["sequenceNumber"])
    await asyncio.wait_for(socket.closed.wait(), 2)
    await call.wait_closed(timeout=1)
    assert call.stop_sent and not call.closed_by_app
    assert [hit.path for hit in app.hits] == ["/twilio/voice"]
    frames = call.sent_media_frames
    await asyncio.sleep(0.1)
    assert call.sent_media_frames == frames  # the microphone stopped
    assert call.violations == []


async def test_refused_stream(app, make_call):
    app.refuse_streams = True
    forger = make_call(app)
    await forger.dial()
    with pytest.raises(StreamRefused) as refused:
        await forger.connect_stream(url_override="/twilio/stream/forged")
    assert refused.value.status == 403
    assert [hit.path for hit in app.hits] == ["/twilio/voice"]  # not Twilio: no action

    call = make_call(app)
    await call.dial()
    with pytest.raises(StreamRefused):
        await call.connect_stream()
    await call.wait_closed(timeout=1)
    assert call.handshake_status == 403
    assert app.hits[-1].path == "/twilio/stream-ended"  # Twilio moves on with the call
    assert call.after_stream_say_texts == [APOLOGY]
