"""A strict fake of Twilio placing one inbound call into the app over loopback.

`FakeTwilioCall` plays Twilio's side of a call the way Twilio does it:

1. `dial()` POSTs the signed voice webhook (form fields and `X-Twilio-Signature` as
   Twilio sends them) and reads the TwiML answer: `<Say>`, `<Hangup/>`, and
   `<Connect action=…><Stream url=…><Parameter …/></Stream></Connect>`.
2. `connect_stream()` opens the Media Streams WebSocket to the `<Stream>` URL with its
   query string dropped (Twilio drops it), sends `connected` and `start`, then one
   `media` frame of caller audio every 20 ms on an absolute schedule. The caller says
   what `speak()` queued; otherwise the frames carry µ-law silence.
3. Audio the app sends is "played" on a real-time timeline (8 bytes per ms, queued
   back to back); each `mark` is echoed when the audio queued before it has played;
   `clear` drops what is not yet played and echoes the pending marks at once.
4. When the app closes the stream, the `<Connect action>` URL is requested (signed, like
   the webhook) and its TwiML recorded; `hangup()` instead sends `stop` and closes, and
   no action URL is requested, as with a real caller hanging up.

URLs: TwiML carries public URLs (`public_base_url`, what the app signs and advertises);
the fake sends the requests to `app_base_url` (where the app really listens, e.g. behind
a proxy), keeping the public host in the `Host` header as a forwarding proxy does.

Anything the app does that real Twilio would refuse, ignore or log as an error (bad
TwiML, an unknown or malformed stream message, a wrong `streamSid`, messages before
`start`, a failing action URL) is recorded in `violations`, a list of strings a test
asserts is empty.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import secrets
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import orjson
from twilio.request_validator import HMAC_SHA256, SIGNATURE_SETTINGS_HEADER, RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from tests.fakes import audio

FRAME_MS = 20
FRAME_BYTES = FRAME_MS * audio.BYTES_PER_MS  # 160 bytes of µ-law per media frame
SILENT_FRAME = bytes([audio.ULAW_SILENCE]) * FRAME_BYTES
# Float error in "seconds since the segment started" must not lose the last sample.
_PLAYBACK_EPSILON_SAMPLES = 1e-6
CONNECTED_MESSAGE = orjson.dumps(
    {"event": "connected", "protocol": "Call", "version": "1.0.0"}
).decode()
DTMF_DIGITS = frozenset("0123456789*#")
WEBHOOK_TIMEOUT_S = 15.0  # Twilio's default webhook timeout
TWIML_CONTENT_TYPES = ("text/xml", "application/xml", "text/html")
TWIML_VERBS = frozenset(
    {
        "Connect",
        "Dial",
        "Echo",
        "Enqueue",
        "Gather",
        "Hangup",
        "Leave",
        "Pause",
        "Pay",
        "Play",
        "Queue",
        "Record",
        "Redirect",
        "Refer",
        "Reject",
        "Say",
        "Sms",
        "Start",
        "Stop",
    }
)
CONNECT_NOUNS = frozenset(
    {"Stream", "Room", "ConversationRelay", "VirtualAgent", "Conversation", "Autopilot"}
)


class StreamRefused(Exception):
    """The app did not accept the Media Streams WebSocket handshake."""

    def __init__(self, status: int | None, detail: str) -> None:
        super().__init__(f"stream refused ({status}): {detail}")
        self.status = status
        self.detail = detail


def random_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _ws_scheme_for(http_scheme: str) -> str:
    return "wss" if http_scheme == "https" else "ws"


def _http_scheme_for(ws_scheme: str) -> str:
    return {"wss": "https", "ws": "http"}.get(ws_scheme, ws_scheme)


# --- TwiML --------------------------------------------------------------------------------


@dataclass
class TwimlRun:
    """What Twilio did with (part of) a TwiML document, verb by verb."""

    verbs: list[str] = field(default_factory=list)
    say_texts: list[str] = field(default_factory=list)
    hung_up: bool = False
    connect: ET.Element | None = None  # the <Connect> that stopped execution, if any
    remaining: list[ET.Element] = field(default_factory=list)  # verbs after that <Connect>
    problems: list[str] = field(default_factory=list)


def parse_twiml(text: str) -> tuple[list[ET.Element], list[str]]:
    """The verbs of a TwiML document, and what Twilio would reject in it."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return [], [f"TwiML is not well-formed XML ({exc}): {text[:200]!r}"]
    if root.tag != "Response":
        return [], [f"TwiML root element is <{root.tag}>, not <Response>"]
    problems = [f"unknown TwiML verb <{verb.tag}>" for verb in root if verb.tag not in TWIML_VERBS]
    return list(root), problems


def run_twiml(verbs: list[ET.Element]) -> TwimlRun:
    """Execute verbs in order until one ends the document (Hangup/Reject) or hands the
    call over (Connect). Verbs the fake does not simulate (Dial, Gather, …) are only
    listed in `verbs`."""
    run = TwimlRun()
    for index, verb in enumerate(verbs):
        run.verbs.append(verb.tag)
        if verb.tag == "Say":
            run.say_texts.append("".join(verb.itertext()).strip())
        elif verb.tag in ("Hangup", "Reject"):
            run.hung_up = True
            return run
        elif verb.tag == "Connect":
            run.connect = verb
            run.remaining = verbs[index + 1 :]
            return run
    return run


@dataclass
class ConnectStream:
    url: str | None
    parameters: dict[str, str]
    action: str | None
    method: str
    problems: list[str]


def read_connect(connect_el: ET.Element, document_url: str, public_scheme: str) -> ConnectStream:
    """The <Connect><Stream> instruction, with what real Twilio would refuse in it."""
    problems: list[str] = []
    action = connect_el.get("action")
    if action is not None:
        action = urljoin(document_url, action)
    method = (connect_el.get("method") or "POST").upper()
    if method not in ("GET", "POST"):
        problems.append(f"<Connect method={method!r}>: Twilio accepts GET or POST")
    nouns = [child for child in connect_el]
    unknown = [n.tag for n in nouns if n.tag not in CONNECT_NOUNS]
    if unknown:
        problems.append(f"<Connect> contains unknown nouns {unknown}")
    streams = [n for n in nouns if n.tag == "Stream"]
    if len(nouns) != 1:
        problems.append(f"<Connect> must contain exactly one noun, found {len(nouns)}")
    if not streams:
        return ConnectStream(None, {}, action, method, problems)
    stream = streams[0]
    url = stream.get("url")
    parameters: dict[str, str] = {}
    for param in stream:
        if param.tag != "Parameter":
            problems.append(f"<Stream> contains <{param.tag}>, only <Parameter> is allowed")
            continue
        name, value = param.get("name"), param.get("value")
        if not name or value is None:
            problems.append(f"<Parameter> needs name and value: {param.attrib}")
            continue
        parameters[name] = value
    track = stream.get("track")
    if track not in (None, "inbound_track"):
        problems.append(f"<Connect><Stream track={track!r}>: only inbound_track is allowed")
    if not url:
        problems.append("<Stream> has no url")
        return ConnectStream(None, parameters, action, method, problems)
    ws_document_url = urlunsplit(
        urlsplit(document_url)._replace(scheme=_ws_scheme_for(urlsplit(document_url).scheme))
    )
    url = urljoin(ws_document_url, url)
    parts = urlsplit(url)
    allowed = ("wss",) if public_scheme == "https" else ("ws", "wss")
    if parts.scheme not in allowed:
        problems.append(f"<Stream url={url!r}>: the scheme must be one of {allowed}")
    if parts.query:
        problems.append(
            f"<Stream url={url!r}> has a query string, which Twilio drops: "
            "use the path or <Parameter>"
        )
    return ConnectStream(url, parameters, action, method, problems)


# --- Playback -----------------------------------------------------------------------------


class _Playback:
    """The caller's earpiece: audio plays back to back in real time; what has played by
    a given moment is computed from the timeline, to the byte."""

    def __init__(self) -> None:
        self.heard = bytearray()
        # [start time, audio, bytes of it already moved into `heard`]
        self.segments: deque[list[Any]] = deque()
        self.end_at = 0.0  # when everything queued has played
        self.stopped_at: float | None = None
        self.dropped_bytes = 0

    def advance(self, now: float) -> None:
        if self.stopped_at is not None:
            now = min(now, self.stopped_at)
        segments = self.segments
        while segments:
            segment = segments[0]
            start, data, moved = segment
            played = int((now - start) * audio.SAMPLE_RATE + _PLAYBACK_EPSILON_SAMPLES)
            played = max(0, min(len(data), played))
            if played > moved:
                self.heard += data[moved:played]
                segment[2] = played
            if played < len(data):
                return
            segments.popleft()

    def enqueue(self, data: bytes, now: float) -> None:
        if self.stopped_at is not None or not data:
            return
        start = max(now, self.end_at)
        self.segments.append([start, data, 0])
        self.end_at = start + len(data) / audio.SAMPLE_RATE

    def queued_until(self, now: float) -> float:
        """When the audio queued so far will have played (now, if nothing is queued)."""
        return max(now, self.end_at)

    def clear(self, now: float) -> None:
        self.advance(now)
        self.dropped_bytes += sum(len(data) - moved for _, data, moved in self.segments)
        self.segments.clear()
        self.end_at = now

    def stop(self, now: float) -> None:
        if self.stopped_at is None:
            self.clear(now)
            self.stopped_at = now


# --- The call -----------------------------------------------------------------------------


class FakeTwilioCall:
    """One inbound phone call, placed by a fake Twilio into the app. See the module doc."""

    def __init__(
        self,
        app_base_url: str,
        *,
        auth_token: str,
        account_sid: str | None = None,
        from_number: str = "+15550001111",
        to_number: str = "+15550002222",
        call_sid: str | None = None,
        public_base_url: str | None = None,
        voice_path: str = "/twilio/voice",
        voice_method: str = "POST",
        shared_key: tuple[str, str] | None = None,
        tls_trust: ssl.SSLContext | None = None,
        direction: str = "inbound",
    ) -> None:
        """`voice_method`: how the number's voice URL is configured (GET or POST).
        `tls_trust`: the certificates to trust when the app is reached over https/wss
        (a test proxy's own authority); the system's by default.
        `shared_key`: (sid, secret) of a webhook SharedKey: every request and the stream
        handshake are then signed with HMAC-SHA256 under that secret and say so in
        X-Twilio-Webhooks-Signature-Settings, as Twilio does once one is configured."""
        self.app_base_url = app_base_url.rstrip("/")
        self.public_base_url = (public_base_url or app_base_url).rstrip("/")
        self.auth_token = auth_token
        self.account_sid = account_sid or random_sid("AC")
        self.from_number = from_number
        self.to_number = to_number
        self.call_sid = call_sid or random_sid("CA")
        self.voice_url = self.public_base_url + voice_path
        self.stream_sid = random_sid("MZ")
        self.voice_method = voice_method
        self.shared_key = shared_key
        self.tls_trust = tls_trust
        self.direction = direction  # "outbound-api" for a call the app placed
        self._validator = RequestValidator(shared_key[1] if shared_key else auth_token)

        # The webhook and its TwiML.
        self.dial_response: httpx.Response | None = None
        self.twiml: str | None = None
        self.twiml_verbs: list[str] = []
        self.say_texts: list[str] = []
        self.hung_up_by_twiml = False
        self.stream_url: str | None = None
        self.stream_parameters: dict[str, str] = {}
        self._custom_parameters: dict[str, str] = {}
        self.connect_action: str | None = None
        self.connect_method = "POST"
        self._verbs_after_connect: list[ET.Element] = []

        # The stream.
        self.handshake_status: int | None = None
        self.stream_connected_at: float | None = None
        self.start_sent_at: float | None = None
        self.first_media_at: float | None = None
        self.stream_closed_at: float | None = None
        self.closed_by_app = False
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.stop_sent = False
        self.received: list[tuple[float, dict]] = []
        self.media_received: list[tuple[float, str]] = []
        self.marks_received: list[tuple[float, str]] = []
        self.marks_echoed: list[tuple[float, str]] = []
        self.clears: list[float] = []
        self.dtmf_sent: list[tuple[float, str]] = []
        self.sent_media_frames = 0
        self.sent_audio = bytearray()
        self.violations: list[str] = []

        # After the stream.
        self.after_stream_response: httpx.Response | None = None
        self.after_stream_twiml: str | None = None
        self.after_stream_say_texts: list[str] = []
        self.after_stream_hung_up = False

        self._ws: ClientConnection | None = None
        self._playback = _Playback()
        self._pending_marks: deque[tuple[float, str]] = deque()
        self._marks_changed = asyncio.Event()
        self._mic_queue = bytearray()
        self._mic_consumed = 0  # bytes of queued speech taken into frames so far
        self._speech_waiters: list[tuple[int, asyncio.Future]] = []
        self._sequence = 0
        self._send_lock = asyncio.Lock()
        self._hanging_up = False
        self._stream_over = False
        self._finished = asyncio.Event()
        self._reader_task: asyncio.Task | None = None
        self._mic_task: asyncio.Task | None = None
        self._marks_task: asyncio.Task | None = None
        self._task_errors: list[BaseException] = []

    @classmethod
    def placed_by_app(
        cls,
        app_base_url: str,
        created: dict,
        *,
        auth_token: str,
        account_sid: str,
        public_base_url: str | None = None,
    ) -> FakeTwilioCall:
        """Twilio's side of a call the app asked it to place (`created`: the fake REST
        API's record of the Calls.json request): its answer URL is the voice URL."""
        answer = urlsplit(created["Url"])
        return cls(
            app_base_url,
            auth_token=auth_token,
            account_sid=account_sid,
            from_number=created["From"],
            to_number=created["To"],
            call_sid=created["sid"],
            public_base_url=public_base_url,
            voice_path=f"{answer.path}?{answer.query}",
            direction="outbound-api",
        )

    # --- observations -------------------------------------------------------------------
    @property
    def heard_audio(self) -> bytearray:
        """The µ-law the caller has heard by now (grows in real time while audio plays)."""
        self._playback.advance(time.monotonic())
        return self._playback.heard

    @property
    def queued_audio_ms(self) -> float:
        """Audio received from the app and not yet played, in ms."""
        now = time.monotonic()
        if self._playback.stopped_at is not None:
            return 0.0
        return (self._playback.queued_until(now) - now) * 1000

    @property
    def dropped_audio_bytes(self) -> int:
        """Audio dropped unplayed by `clear` (or by the end of the stream)."""
        return self._playback.dropped_bytes

    def describe(self) -> str:
        return (
            f"call {self.call_sid}: handshake={self.handshake_status} "
            f"start_sent={self.start_sent_at is not None} frames_sent={self.sent_media_frames} "
            f"received={len(self.received)} media={len(self.media_received)} "
            f"heard_ms={len(self.heard_audio) / audio.BYTES_PER_MS:.0f} "
            f"marks_echoed={[n for _, n in self.marks_echoed]} "
            f"pending_marks={[n for _, n in self._pending_marks]} clears={len(self.clears)} "
            f"closed_by_app={self.closed_by_app} close_code={self.close_code} "
            f"violations={self.violations}"
        )

    # --- HTTP: webhook, TwiML, action -----------------------------------------------------
    def call_params(self, call_status: str) -> dict[str, str]:
        """The standard form fields Twilio sends with every voice request of this call."""
        params = {
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
            "CallSid": self.call_sid,
            "CallStatus": call_status,
            "Direction": self.direction,
        }
        for role, number in (
            ("Called", self.to_number),
            ("To", self.to_number),
            ("Caller", self.from_number),
            ("From", self.from_number),
        ):
            params[role] = number
            params[role + "City"] = ""
            params[role + "State"] = ""
            params[role + "Zip"] = ""
            params[role + "Country"] = "US"
        return params

    async def answer_outbound(self, answered_by: str | None = None) -> httpx.Response:
        """A call the app placed is answered: Twilio requests its answer URL (the voice
        URL here) with the call in progress, and AnsweredBy when machine detection ran."""
        extra = {"CallStatus": "in-progress"}
        if answered_by is not None:
            extra["AnsweredBy"] = answered_by
        return await self.dial(extra_params=extra)

    async def send_status(self, public_url: str, status: str) -> httpx.Response:
        """A status callback, signed, as Twilio posts it for each event asked for."""
        return await self._request(public_url, self.call_params(status))

    def sign(self, public_url: str, params: dict[str, str]) -> str:
        algorithm = HMAC_SHA256 if self.shared_key else None
        return self._validator.compute_signature(public_url, params, algorithm)

    def signature_headers(self, signature: str) -> dict[str, str]:
        headers = {"X-Twilio-Signature": signature}
        if self.shared_key:
            headers[SIGNATURE_SETTINGS_HEADER] = f"key={self.shared_key[0]},algorithm=HMAC_SHA256"
        return headers

    def _to_app(self, public_url: str) -> tuple[str, str]:
        """Where to really send a request for `public_url`, and the Host header to keep."""
        public = urlsplit(public_url)
        base = urlsplit(self.public_base_url)
        app = urlsplit(self.app_base_url)
        if public.netloc != base.netloc:
            self.violations.append(
                f"TwiML points at {public_url!r}, which is not under the app's public base "
                f"URL {self.public_base_url!r}"
            )
        path = public.path
        public_prefix = base.path.rstrip("/")
        if public_prefix and path.startswith(public_prefix):
            path = path[len(public_prefix) :]
        path = app.path.rstrip("/") + path
        return urlunsplit((app.scheme, app.netloc, path, public.query, "")), public.netloc

    async def _request(
        self,
        public_url: str,
        params: dict[str, str],
        method: str = "POST",
        signature: str | None = None,
    ) -> httpx.Response:
        """A signed Twilio webhook request, sent to the app's real address."""
        app_url, host = self._to_app(public_url)
        signed_url = public_url
        if method == "GET":
            # Twilio appends the parameters to the query string and signs the whole URL.
            query = httpx.QueryParams(urlsplit(public_url).query).merge(params)
            signed_url = urlunsplit(urlsplit(public_url)._replace(query=str(query)))
            app_url = urlunsplit(urlsplit(app_url)._replace(query=str(query)))
        headers = {
            "Host": host,
            "User-Agent": "TwilioProxy/1.1",
            "Accept": "*/*",
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
            **self.signature_headers(
                signature
                if signature is not None
                else self.sign(signed_url, {} if method == "GET" else params)
            ),
        }
        async with httpx.AsyncClient(
            trust_env=False, timeout=WEBHOOK_TIMEOUT_S, verify=self.tls_trust or True
        ) as http:
            if method == "GET":
                return await http.get(app_url, headers=headers)
            return await http.post(app_url, data=params, headers=headers)

    def _read_twiml_response(self, response: httpx.Response, what: str) -> list[ET.Element]:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in TWIML_CONTENT_TYPES:
            self.violations.append(f"{what} answered with Content-Type {content_type!r}")
        verbs, problems = parse_twiml(response.text)
        self.violations.extend(f"{what}: {p}" for p in problems)
        return verbs

    async def dial(
        self, *, signature: str | None = None, extra_params: dict[str, str] | None = None
    ) -> httpx.Response:
        """POST the voice webhook as Twilio does when the call rings, and read the TwiML.
        `signature` / `extra_params` forge the request for fault tests."""
        params = self.call_params("ringing")
        params["CallToken"] = secrets.token_urlsafe(48)
        params.update(extra_params or {})
        response = await self._request(
            self.voice_url, params, self.voice_method, signature=signature
        )
        self.dial_response = response
        if response.status_code != 200:
            return response  # Twilio would play its "application error" message
        self.twiml = response.text
        verbs = self._read_twiml_response(response, "voice webhook")
        run = run_twiml(verbs)
        self.twiml_verbs = run.verbs
        self.say_texts = run.say_texts
        self.hung_up_by_twiml = run.hung_up
        if run.connect is not None:
            connect_stream = read_connect(
                run.connect, self.voice_url, urlsplit(self.public_base_url).scheme
            )
            self.violations.extend(f"voice webhook: {p}" for p in connect_stream.problems)
            self.stream_url = connect_stream.url
            self.stream_parameters = connect_stream.parameters
            self.connect_action = connect_stream.action
            self.connect_method = connect_stream.method
            self._verbs_after_connect = run.remaining
        return response

    async def _after_stream(self) -> None:
        """What Twilio does once the <Connect><Stream> ended without the caller hanging up:
        request the action URL, or go on with the rest of the document."""
        if self.connect_action is None:
            run = run_twiml(self._verbs_after_connect)
            self.after_stream_say_texts = run.say_texts
            self.after_stream_hung_up = run.hung_up
            return
        try:
            response = await self._request(
                self.connect_action, self.call_params("in-progress"), self.connect_method
            )
        except httpx.HTTPError as exc:
            self.violations.append(f"<Connect action> request failed: {exc!r}")
            return
        self.after_stream_response = response
        if response.status_code != 200:
            self.violations.append(
                f"<Connect action> answered {response.status_code}: {response.text[:200]!r}"
            )
            return
        self.after_stream_twiml = response.text
        run = run_twiml(self._read_twiml_response(response, "<Connect action>"))
        self.after_stream_say_texts = run.say_texts
        self.after_stream_hung_up = run.hung_up

    # --- the media stream ---------------------------------------------------------------
    def _public_stream_url(self, url_override: str | None) -> str:
        if url_override is None:
            if self.stream_url is None:
                raise RuntimeError("no <Connect><Stream> to connect to: dial() first")
            return self.stream_url
        if url_override.startswith("/"):
            base = urlsplit(self.public_base_url)
            return f"{_ws_scheme_for(base.scheme)}://{base.netloc}{url_override}"
        return url_override

    async def connect_stream(
        self,
        *,
        send_start: bool = True,
        url_override: str | None = None,
        custom_parameters: dict[str, str] | None = None,
        handshake_signature: str | None = None,
    ) -> None:
        """Open the Media Streams WebSocket and start the call audio.

        `url_override` (a full URL or a path under the public base) connects somewhere
        else than the TwiML said, e.g. a forged token; `custom_parameters` replaces the
        <Parameter>s sent in `start`. Raises `StreamRefused` if the handshake fails;
        when that happens on the TwiML's own URL, the action URL is requested first, as
        Twilio moves on with the call."""
        if self._ws is not None:
            raise RuntimeError("the stream is already connected")
        public_url = self._public_stream_url(url_override)
        parts = urlsplit(public_url)
        requested = urlunsplit(parts._replace(query="", fragment=""))  # Twilio drops the query
        app_http_url, host = self._to_app(
            urlunsplit(urlsplit(requested)._replace(scheme=_http_scheme_for(parts.scheme)))
        )
        app = urlsplit(app_http_url)
        uri = urlunsplit((_ws_scheme_for(app.scheme), host, app.path, "", ""))
        signature = handshake_signature
        if signature is None:
            signature = self.sign(requested, {})
        self._custom_parameters = (
            custom_parameters if custom_parameters is not None else dict(self.stream_parameters)
        )
        try:
            self._ws = await connect(
                uri,
                host=app.hostname,
                port=app.port or (443 if app.scheme == "https" else 80),
                additional_headers=self.signature_headers(signature),
                user_agent_header="Twilio.TmeWs/1.0",
                compression=None,
                ping_interval=None,
                proxy=None,
                open_timeout=10,
                ssl=self.tls_trust if app.scheme == "https" else None,
            )
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            status = exc.response.status_code if isinstance(exc, InvalidStatus) else None
            self.handshake_status = status
            if url_override is None:
                self._stream_over = True
                await self._after_stream()
                self._finished.set()
            raise StreamRefused(status, repr(exc)) from exc
        self.handshake_status = 101
        self.stream_connected_at = time.monotonic()
        self._reader_task = self._spawn(self._read_loop(self._ws))
        self._marks_task = self._spawn(self._mark_loop())
        # If the app drops the socket at once, the reader records it; nothing to send then.
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(CONNECTED_MESSAGE)
            if send_start:
                await self.send_start()

    async def send_start(self) -> None:
        """Send `start` and begin the caller's 20 ms audio frames (done by connect_stream
        unless it was told `send_start=False`)."""
        if self.start_sent_at is not None:
            raise RuntimeError("start was already sent")
        await self._send_numbered(
            lambda seq: {
                "event": "start",
                "sequenceNumber": seq,
                "start": {
                    "accountSid": self.account_sid,
                    "streamSid": self.stream_sid,
                    "callSid": self.call_sid,
                    "tracks": ["inbound"],
                    "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
                    "customParameters": self._custom_parameters,
                },
                "streamSid": self.stream_sid,
            }
        )
        self.start_sent_at = time.monotonic()
        self._mic_task = self._spawn(self._mic_loop(self.start_sent_at))

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        task.add_done_callback(self._note_task_failure)
        return task

    def _note_task_failure(self, task: asyncio.Task) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._task_errors.append(task.exception())

    def _raise_task_errors(self) -> None:
        if self._task_errors:
            raise RuntimeError(f"the fake Twilio failed: {self._task_errors[0]!r}") from (
                self._task_errors[0]
            )

    async def _send_numbered(self, build: Callable[[str], dict]) -> float:
        """Send a message carrying the next sequenceNumber; numbers follow wire order."""
        if self._ws is None:
            raise RuntimeError("the stream is not connected")
        async with self._send_lock:
            self._sequence += 1
            await self._ws.send(orjson.dumps(build(str(self._sequence))).decode())
            return time.monotonic()

    async def send_raw(self, message: str | bytes) -> None:
        """Send anything on the stream socket, for fault tests."""
        if self._ws is None:
            raise RuntimeError("the stream is not connected")
        async with self._send_lock:  # whole messages, never inside a numbered send
            await self._ws.send(message)

    # --- caller audio -------------------------------------------------------------------
    def queue_audio(self, ulaw: bytes) -> int:
        """Queue µ-law caller audio into the microphone; returns where it ends."""
        self._mic_queue += ulaw
        return self._mic_consumed + len(self._mic_queue)

    def speak(self, ms: int, amplitude: int = 8000, freq: int = 300) -> int:
        """The caller talks for `ms` (a tone), after anything already queued."""
        return self.queue_audio(audio.tone(ms, amplitude=amplitude, freq=freq))

    async def speak_and_wait(self, ms: int, amplitude: int = 8000, freq: int = 300) -> bool:
        """Speak and return once the frames carrying that speech were sent (False if the
        stream ended first)."""
        end = self.speak(ms, amplitude=amplitude, freq=freq)
        return await self._wait_mic_sent(end)

    async def _wait_mic_sent(self, end: int) -> bool:
        if self._mic_consumed >= end:
            return True
        if self._stream_over:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._speech_waiters.append((end, waiter))
        return await waiter

    def _release_speech_waiters(self, ended: bool = False) -> None:
        keep = []
        for end, waiter in self._speech_waiters:
            if waiter.done():
                continue
            if self._mic_consumed >= end:
                waiter.set_result(True)
            elif ended:
                waiter.set_result(False)
            else:
                keep.append((end, waiter))
        self._speech_waiters = keep

    def _next_mic_frame(self) -> bytes:
        speech = bytes(self._mic_queue[:FRAME_BYTES])
        if not speech:
            return SILENT_FRAME
        del self._mic_queue[:FRAME_BYTES]
        self._mic_consumed += len(speech)
        return speech + SILENT_FRAME[len(speech) :]

    async def _mic_loop(self, started_at: float) -> None:
        """One media frame per 20 ms of call time, on an absolute schedule: frame k is
        sent when its 20 ms of audio has been captured; late frames go out at once."""
        chunk = 0
        while True:
            due = started_at + (chunk + 1) * FRAME_MS / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = self._next_mic_frame()
            chunk += 1
            timestamp = (chunk - 1) * FRAME_MS
            payload = base64.b64encode(frame).decode()
            try:
                await self._send_numbered(
                    lambda seq, chunk=chunk, timestamp=timestamp, payload=payload: {
                        "event": "media",
                        "sequenceNumber": seq,
                        "media": {
                            "track": "inbound",
                            "chunk": str(chunk),
                            "timestamp": str(timestamp),
                            "payload": payload,
                        },
                        "streamSid": self.stream_sid,
                    }
                )
            except ConnectionClosed:
                return
            self.sent_media_frames += 1
            self.sent_audio += frame
            if self._speech_waiters:
                self._release_speech_waiters()

    async def dtmf(self, digit: str) -> None:
        """The caller presses a key."""
        if digit not in DTMF_DIGITS:
            raise ValueError(f"not a DTMF digit: {digit!r}")
        sent_at = await self._send_numbered(
            lambda seq: {
                "event": "dtmf",
                "streamSid": self.stream_sid,
                "sequenceNumber": seq,
                "dtmf": {"track": "inbound_track", "digit": digit},
            }
        )
        self.dtmf_sent.append((sent_at, digit))

    # --- messages from the app ----------------------------------------------------------
    async def _read_loop(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                if not self._hanging_up:
                    self._on_app_message(message, time.monotonic())
        await self._on_stream_closed(ws)

    def _violation(self, problem: str, message: str | bytes | dict) -> None:
        shown = message if isinstance(message, dict) else message[:200]
        self.violations.append(f"{problem}: {shown!r}")

    def _on_app_message(self, message: str | bytes, now: float) -> None:
        if isinstance(message, bytes):
            self._violation("binary frame on the media stream (Twilio expects JSON text)", message)
            return
        try:
            event = orjson.loads(message)
        except orjson.JSONDecodeError:
            self._violation("message is not JSON", message)
            return
        if not isinstance(event, dict):
            self._violation("message is not a JSON object", message)
            return
        self.received.append((now, event))
        kind = event.get("event")
        if kind not in ("media", "mark", "clear"):
            self._violation(f"unknown event {kind!r} (Twilio accepts media, mark, clear)", event)
            return
        if self.start_sent_at is None:
            self._violation(f"{kind} sent before Twilio sent start", event)
            return
        if event.get("streamSid") != self.stream_sid:
            self._violation(f"{kind} with streamSid {event.get('streamSid')!r}", event)
            return
        if kind == "media":
            self._on_media(event, now)
        elif kind == "mark":
            self._on_mark(event, now)
        else:
            self._on_clear(now)

    def _on_media(self, event: dict, now: float) -> None:
        media = event.get("media")
        payload = media.get("payload") if isinstance(media, dict) else None
        if not isinstance(payload, str):
            self._violation("media without a media.payload string", event)
            return
        try:
            ulaw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            self._violation("media.payload is not valid base64", event)
            return
        self.media_received.append((now, payload))
        if self.first_media_at is None:
            self.first_media_at = now
        self._playback.enqueue(ulaw, now)

    def _on_mark(self, event: dict, now: float) -> None:
        mark = event.get("mark")
        name = mark.get("name") if isinstance(mark, dict) else None
        if not isinstance(name, str) or not name:
            self._violation("mark without a mark.name string", event)
            return
        self.marks_received.append((now, name))
        self._pending_marks.append((self._playback.queued_until(now), name))
        self._marks_changed.set()

    def _on_clear(self, now: float) -> None:
        self.clears.append(now)
        self._playback.clear(now)
        # Every pending mark is echoed at once, in order.
        self._pending_marks = deque((now, name) for _, name in self._pending_marks)
        self._marks_changed.set()

    async def _mark_loop(self) -> None:
        """Echo each mark when the playhead passes it: sleeps until the next deadline."""
        while True:
            if not self._pending_marks:
                await self._marks_changed.wait()
                self._marks_changed.clear()
                continue
            delay = self._pending_marks[0][0] - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._marks_changed.wait(), delay)
                self._marks_changed.clear()
                continue
            _, name = self._pending_marks.popleft()
            try:
                sent_at = await self._send_numbered(
                    lambda seq, name=name: {
                        "event": "mark",
                        "sequenceNumber": seq,
                        "streamSid": self.stream_sid,
                        "mark": {"name": name},
                    }
                )
            except ConnectionClosed:
                return
            self.marks_echoed.append((sent_at, name))

    async def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        for task in (self._mic_task, self._marks_task):
            if task is not None and task is not current and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _on_stream_closed(self, ws: ClientConnection) -> None:
        now = time.monotonic()
        self._stream_over = True
        self.stream_closed_at = now
        # Audio still queued is cut off and pending marks are never echoed.
        self._playback.stop(now)
        self._pending_marks.clear()
        self.close_code = ws.close_code
        self.close_reason = ws.close_reason
        await self._stop_tasks()
        self._release_speech_waiters(ended=True)
        if not self._hanging_up:
            if ws.protocol.close_rcvd_then_sent is False:
                self.violations.append(
                    f"the stream failed on Twilio's side: close {ws.close_code} {ws.close_reason}"
                )
            else:
                self.closed_by_app = True
            await self._after_stream()
        self._finished.set()

    # --- ending the call ----------------------------------------------------------------
    async def hangup(self, *, stop_count: int = 1) -> None:
        """The caller hangs up: `stop`, close the socket; no action URL is requested.
        `stop_count` other than 1 is a fault: 0 closes without `stop`, 2 repeats it."""
        if self._ws is None or self._stream_over:
            return
        await self._stop_mic_and_playback()
        with contextlib.suppress(ConnectionClosed):
            for _ in range(stop_count if self.start_sent_at is not None else 0):
                await self._send_numbered(
                    lambda seq: {
                        "event": "stop",
                        "sequenceNumber": seq,
                        "streamSid": self.stream_sid,
                        "stop": {"accountSid": self.account_sid, "callSid": self.call_sid},
                    }
                )
                self.stop_sent = True
            await self._ws.close(1000)
        if self._reader_task is not None:
            await self._reader_task
        self._raise_task_errors()

    async def _stop_mic_and_playback(self) -> None:
        self._hanging_up = True
        if self._mic_task is not None:
            self._mic_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mic_task
        self._playback.stop(time.monotonic())

    async def drop_connection(self) -> None:
        """The network fails: the TCP connection is cut with no `stop` and no close frame,
        and Twilio requests no action URL (it has lost the stream too)."""
        if self._ws is None or self._stream_over:
            return
        await self._stop_mic_and_playback()
        self._ws.transport.abort()
        if self._reader_task is not None:
            await self._reader_task
        self._raise_task_errors()

    async def wait_closed(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Until the stream has ended (closed by the app, or by our hangup) and the action
        URL request, if any, is done."""
        if self._ws is None and not self._finished.is_set():
            raise RuntimeError("the stream was never connected")
        try:
            await asyncio.wait_for(self._finished.wait(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"the stream was not closed within {timeout}s.\n{self.describe()}"
            ) from None
        self._raise_task_errors()

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 5.0,  # noqa: ASYNC109 - same polling helper as the Realtime fake
        interval: float = 0.01,
    ) -> Any:
        """Poll until predicate() is truthy (awaiting it if needed) and return its value."""
        deadline = time.monotonic() + timeout
        while True:
            self._raise_task_errors()
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s.\n{self.describe()}")
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Release everything: hang up if the stream is still open."""
        if self._ws is not None and not self._stream_over:
            await self.hangup()
        await self._stop_tasks()
        if self._reader_task is not None and not self._reader_task.done():
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

    async def __aenter__(self) -> FakeTwilioCall:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
