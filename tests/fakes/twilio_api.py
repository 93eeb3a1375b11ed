"""What Twilio does with a call's recording, faked strictly: the dual-channel recording
of a `FakeTwilioCall`, the signed recording status callback, and a REST API serving the
file.

The recording, as Twilio makes it for `<Start><Recording channels="dual" track="both">`:
time 0 is when the webhook's TwiML started the recording; channel 1 holds the call's
inbound track (what the caller said: the media frames the fake sent, each at the time it
was captured) and channel 2 the outbound track (what Twilio played from our stream, when
it played; audio dropped by `clear` was never played and is not there). 16-bit linear
PCM at 8 kHz, as Twilio serves `.wav`.

`FakeTwilioApi` serves `/2010-04-01/Accounts/{AccountSid}/Recordings/{RecordingSid}.wav`
(and `.json`, and `DELETE`) with HTTP basic auth, and can answer 404 for the first tries
(the file is not ready), scripted 429 (with `Retry-After`) and 5xx faults. It also takes
`POST .../Calls.json` (placing an outbound call), checks its parameters as Twilio does,
keeps each accepted request in `created_calls` for the test to play Twilio's part (the
answer request and status callbacks, with `FakeTwilioCall`), and answers 201 with the
call resource. Requests Twilio would refuse are answered as Twilio does and recorded in
`violations`.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import io
import re
import secrets
import threading
import time
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import numpy as np
import orjson

from tests.fakes import audio
from tests.fakes.threaded_http import QuietHandler, ThreadedHttpService
from tests.fakes.twilio_caller import FakeTwilioCall

RATE = audio.SAMPLE_RATE
ULAW_TO_LINEAR = np.array([audio.ulaw_to_linear(b) for b in range(256)], dtype=np.int16)
CALLBACK_EVENTS = {"in-progress", "completed", "absent"}


# --- the recording --------------------------------------------------------------------


@dataclass
class RecordingRequest:
    """`<Start><Recording>` as the app asked for it."""

    channels: str = "mono"
    trim: str = "trim-silence"  # TwiML's default
    track: str = "both"
    callback_url: str | None = None
    callback_method: str = "POST"
    callback_events: set[str] = field(default_factory=lambda: {"completed"})
    problems: list[str] = field(default_factory=list)


def recording_request(twiml: str, document_url: str) -> RecordingRequest | None:
    """The `<Start><Recording>` of a TwiML document, with what Twilio would refuse in it."""
    root = ET.fromstring(twiml)
    element = root.find("Start/Recording")
    if element is None:
        return None
    request = RecordingRequest()
    get = element.get
    request.channels = get("channels", "mono")
    request.trim = get("trim", "trim-silence")
    request.track = get("track", "both")
    request.callback_method = (get("recordingStatusCallbackMethod") or "POST").upper()
    events = (get("recordingStatusCallbackEvent") or "completed").split()
    request.callback_events = set(events)
    url = get("recordingStatusCallback")
    request.callback_url = urljoin(document_url, url) if url else None
    checks = [
        (request.channels in ("mono", "dual"), f"channels={request.channels!r}"),
        (request.trim in ("trim-silence", "do-not-trim"), f"trim={request.trim!r}"),
        (request.track in ("inbound", "outbound", "both"), f"track={request.track!r}"),
        (request.callback_method in ("GET", "POST"), f"method={request.callback_method!r}"),
        (set(events) <= CALLBACK_EVENTS, f"recordingStatusCallbackEvent={events!r}"),
        (request.track == "both" or request.channels == "mono", "a single track is mono"),
    ]
    request.problems = [f"<Recording {what}> is refused by Twilio" for ok, what in checks if not ok]
    return request


def _played_segments(call: FakeTwilioCall, ended_at: float) -> list[tuple[float, bytes]]:
    """(start time, µ-law) of what the caller heard: Twilio's playback, replayed from the
    media and clears it received (audio queued back to back, `clear` drops the rest)."""
    events = [(t, 0, base64.b64decode(p)) for t, p in call.media_received]
    events += [(t, 1, b"") for t in call.clears]
    segments: list[list] = []
    end_at = 0.0

    def cut(at: float) -> None:
        for segment in segments:
            played = max(0, min(len(segment[1]), int((at - segment[0]) * RATE)))
            segment[1] = segment[1][:played]

    for at, kind, data in sorted(events, key=lambda e: (e[0], e[1])):
        if kind == 1:
            cut(at)
            end_at = at
        else:
            start = max(at, end_at)
            segments.append([start, data])
            end_at = start + len(data) / RATE
    cut(ended_at)
    return [(start, data) for start, data in segments if data]


def call_recording(
    call: FakeTwilioCall, recorded_from: float, *, channels: int = 2, trim: bool = False
) -> bytes:
    """The WAV Twilio would store for this call (see the module doc)."""
    ended_at = call.stream_closed_at or time.monotonic()
    length = max(1, int((ended_at - recorded_from) * RATE))
    tracks = np.zeros((length, 2), dtype=np.int32)

    def place(track: int, at: float, ulaw: bytes) -> None:
        first = round((at - recorded_from) * RATE)
        samples = ULAW_TO_LINEAR[np.frombuffer(ulaw, dtype=np.uint8)]
        if first < 0:
            samples, first = samples[-first:], 0
        samples = samples[: max(0, length - first)]
        tracks[first : first + len(samples), track] += samples

    if call.start_sent_at is not None:
        place(0, call.start_sent_at, bytes(call.sent_audio))
    for start, data in _played_segments(call, ended_at):
        place(1, start, data)
    tracks = np.clip(tracks, -32768, 32767).astype("<i2")
    if channels == 1:
        tracks = np.clip(tracks.astype(np.int32).sum(axis=1, keepdims=True), -32768, 32767)
        tracks = tracks.astype("<i2")
    if trim:
        loud = np.flatnonzero(np.abs(tracks).max(axis=1) > 100)
        tracks = tracks[loud[0] : loud[-1] + 1] if len(loud) else tracks[:0]
    return wav_bytes(tracks)


def wav_bytes(tracks: np.ndarray) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(tracks.shape[1])
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(tracks.astype("<i2").tobytes())
    return out.getvalue()


class RecordedCall:
    """A `FakeTwilioCall` that Twilio records: `dial()` through this starts the clock."""

    def __init__(self, call: FakeTwilioCall, api: FakeTwilioApi) -> None:
        self.call = call
        self.api = api
        self.recording_sid = "RE" + secrets.token_hex(16)
        self.recorded_from: float | None = None
        self.request: RecordingRequest | None = None

    async def dial(self, **kwargs) -> httpx.Response:
        response = await self.call.dial(**kwargs)
        self.recorded_from = time.monotonic()
        if self.call.twiml:
            self.request = recording_request(self.call.twiml, self.call.voice_url)
            if self.request is not None:
                self.call.violations.extend(self.request.problems)
        return response

    def wav(self) -> bytes:
        assert self.request is not None and self.recorded_from is not None
        return call_recording(
            self.call,
            self.recorded_from,
            channels=2 if self.request.channels == "dual" else 1,
            trim=self.request.trim == "trim-silence",
        )

    async def send_callback(
        self, status: str = "completed", *, signature: str | None = None
    ) -> httpx.Response:
        """What Twilio does once the call is over: store the file, then tell the app. Call
        it again to play Twilio's retry of the same callback."""
        request = self.request
        if request is None or request.callback_url is None:
            raise AssertionError("the app did not ask Twilio to record with a callback")
        if status not in request.callback_events:
            raise AssertionError(f"the app did not subscribe to {status!r} callbacks")
        wav = self.wav() if status == "completed" else b""
        duration = 0
        if wav:
            self.api.add_recording(
                self.recording_sid, wav, self.call.call_sid, account_sid=self.call.account_sid
            )
            duration = round(_wav_seconds(wav))
        params = {
            "AccountSid": self.call.account_sid,
            "CallSid": self.call.call_sid,
            "RecordingSid": self.recording_sid,
            "RecordingUrl": f"{self.api.base_url}/2010-04-01/Accounts/"
            f"{self.call.account_sid}/Recordings/{self.recording_sid}",
            "RecordingStatus": status,
            "RecordingDuration": str(duration if status == "completed" else 0),
            "RecordingChannels": "2" if request.channels == "dual" else "1",
            "RecordingStartTime": email.utils.formatdate(usegmt=True),
            "RecordingSource": "StartCallRecordingTwiML",
            "RecordingTrack": request.track,
            "ErrorCode": "0",
        }
        return await self.call._request(
            request.callback_url, params, request.callback_method, signature
        )


def _wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as wav:
        return wav.getnframes() / wav.getframerate()


# --- the REST API ---------------------------------------------------------------------


@dataclass
class _StoredRecording:
    sid: str
    account_sid: str
    call_sid: str
    wav: bytes
    not_ready_for: int = 0  # GETs of the media answered 404 before it is there
    faults: list[int] = field(default_factory=list)  # statuses answered first, in order
    created: str = field(default_factory=lambda: email.utils.formatdate(usegmt=True))


PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Recordings/(RE[0-9a-f]{32})\.(\w+)$")
CALLS_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Calls\.json$")
NUMBERS_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/IncomingPhoneNumbers\.json$")
CALL_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]{32})/Calls/(CA[0-9a-f]{32})\.json$")
E164 = re.compile(r"^\+[1-9]\d{1,14}$")
STATUS_CALLBACK_EVENTS = {"initiated", "ringing", "answered", "completed"}
MACHINE_DETECTION = {"Enable", "DetectMessageEnd"}


class FakeTwilioApi:
    """Twilio's REST API for recordings, on a loopback port, in a thread (so a busy test
    loop or another process, such as a Celery worker, can use it)."""

    def __init__(self, account_sid: str, auth_token: str, host: str = "127.0.0.1", port: int = 0):
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.host, self.port = host, port
        self.recordings: dict[str, _StoredRecording] = {}
        self.requests: list[dict] = []
        # Outbound calls: the numbers the account owns (a call must come from one), the
        # accepted Calls.json requests (form fields, lists for repeated ones), and
        # scripted refusals by destination: {to: (status, code, message)}.
        self.numbers: set[str] = set()
        self.voice_urls: dict[str, str] = {}  # number: its voice webhook, as set in Twilio
        self.created_calls: list[dict] = []
        self.refuse_calls_to: dict[str, tuple[int, int, str]] = {}
        # Live calls (sids the test says are in progress) may be updated with new TwiML
        # (a transfer); each accepted update is kept, scripted refusals by sid.
        self.live_calls: set[str] = set()
        self.updated_calls: list[dict] = []
        self.refuse_updates: dict[str, tuple[int, int, str]] = {}
        self.violations: list[str] = []
        self.not_ready_for = 0  # default for recordings added later
        self.retry_after_s = 1
        self._lock = threading.Lock()
        self._service: ThreadedHttpService | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_recording(
        self,
        sid: str,
        wav: bytes,
        call_sid: str,
        *,
        account_sid: str | None = None,
        not_ready_for: int | None = None,
        faults: list[int] | None = None,
    ) -> None:
        with self._lock:
            self.recordings[sid] = _StoredRecording(
                sid,
                account_sid or self.account_sid,
                call_sid,
                wav,
                self.not_ready_for if not_ready_for is None else not_ready_for,
                list(faults or []),
            )

    def fail_next(self, sid: str, statuses: list[int]) -> None:
        with self._lock:
            self.recordings[sid].faults.extend(statuses)

    def media_requests(self, sid: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == "GET" and sid in r["path"]]

    def start(self) -> None:
        api = self

        class Handler(QuietHandler):
            def do_GET(self):
                self.answer(*api.handle("GET", self.path, self.headers.get("Authorization")))

            def do_DELETE(self):
                self.answer(*api.handle("DELETE", self.path, self.headers.get("Authorization")))

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                form = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
                self.answer(*api.handle("POST", self.path, self.headers.get("Authorization"), form))

        self._service = ThreadedHttpService(self.host, self.port)
        self._service.serve(Handler)
        self.port = self._service.port

    def stop(self) -> None:
        if self._service is not None:
            self._service.stop()

    def _error(self, status: int, code: int, message: str, headers: dict | None = None):
        body = orjson.dumps(
            {
                "code": code,
                "message": message,
                "more_info": f"https://www.twilio.com/docs/errors/{code}",
                "status": status,
            }
        )
        return status, "application/json", body, headers or {}

    def _authorised(self, header: str | None) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return header == f"Basic {expected}"

    def handle(
        self, method: str, raw_path: str, authorization: str | None, form: dict | None = None
    ):
        parts = urlsplit(raw_path)
        query = parse_qs(parts.query)
        record = {"method": method, "path": parts.path, "query": query, "at": time.monotonic()}
        with self._lock:
            self.requests.append(record)
            if CALLS_PATH.match(parts.path) and self._authorised(authorization):
                answer = self._create_call(method, parts.path, form or {})
            elif NUMBERS_PATH.match(parts.path) and self._authorised(authorization):
                answer = self._list_numbers(method, parts.path, query)
            elif CALL_PATH.match(parts.path) and self._authorised(authorization):
                answer = self._update_call(method, parts.path, form or {})
            else:
                answer = self._route(method, parts.path, query, authorization)
        record["status"] = answer[0]
        return answer

    def _route(self, method: str, path: str, query: dict, authorization: str | None):
        if not self._authorised(authorization):
            self.violations.append(f"{method} {path} without the account's credentials")
            return self._error(401, 20003, "Authenticate")
        match = PATH.match(path)
        if match is None:
            self.violations.append(f"{method} {path}: not a recording resource")
            return self._error(404, 20404, f"The requested resource {path} was not found")
        account, sid, extension = match.groups()
        recording = self.recordings.get(sid)
        if account != self.account_sid or recording is None:
            return self._error(404, 20404, f"The requested resource {path} was not found")
        if method == "DELETE":
            if extension != "json":
                self.violations.append(f"DELETE {path}: Twilio deletes the .json resource")
                return self._error(405, 20004, "Method not allowed")
            del self.recordings[sid]
            return 204, "application/json", b"", {}
        if method != "GET":
            return self._error(405, 20004, "Method not allowed")
        if extension == "json":
            return 200, "application/json", self._resource(recording), {}
        if extension != "wav":
            self.violations.append(f"GET {path}: the app asked for .{extension}, not .wav")
            return self._error(404, 20404, "Only .wav is served by this fake")
        if recording.faults:
            status = recording.faults.pop(0)
            headers = {"Retry-After": str(self.retry_after_s)} if status == 429 else {}
            return self._error(status, 20429 if status == 429 else 20500, "Fault", headers)
        if recording.not_ready_for > 0:
            recording.not_ready_for -= 1
            return self._error(404, 20404, f"The requested resource {path} was not found")
        wav = recording.wav
        requested = query.get("RequestedChannels", [None])[0]
        if requested not in (None, "1", "2"):
            self.violations.append(f"RequestedChannels={requested!r}: Twilio takes 1 or 2")
            return self._error(400, 20001, "Invalid RequestedChannels")
        if requested == "1":
            wav = _downmix(wav)
        return 200, "audio/x-wav", wav, {}

    def _create_call(self, method: str, path: str, form: dict[str, list[str]]):
        """POST Calls.json, checked as Twilio checks it (error codes from its docs)."""
        if method != "POST":
            return self._error(405, 20004, "Method not allowed")
        account = CALLS_PATH.match(path).group(1)
        if account != self.account_sid:
            return self._error(404, 20404, f"The requested resource {path} was not found")
        one = {k: v[-1] for k, v in form.items()}

        def refuse(status: int, code: int, message: str):
            self.violations.append(f"Calls.json: {message}")
            return self._error(status, code, message)

        to, from_ = one.get("To", ""), one.get("From", "")
        if not to:
            return refuse(400, 21201, "No 'To' number is specified")
        if not E164.match(to):
            return refuse(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if not from_:
            return refuse(400, 21603, "A 'From' phone number is required.")
        if from_ not in self.numbers:
            return refuse(400, 21210, f"'From' phone number not verified: {from_}")
        if not (one.get("Url") or one.get("Twiml") or one.get("ApplicationSid")):
            return refuse(400, 21205, "Url, Twiml or ApplicationSid is required")
        for name in ("Url", "StatusCallback"):
            value = one.get(name)
            if value is not None and urlsplit(value).scheme not in ("http", "https"):
                return refuse(400, 21205, f"{name} is not a valid URL: {value!r}")
        for name in ("Method", "StatusCallbackMethod"):
            if one.get(name, "POST") not in ("GET", "POST"):
                return refuse(400, 21207, f"{name} must be GET or POST")
        events = set(" ".join(form.get("StatusCallbackEvent", [])).split())
        if events - STATUS_CALLBACK_EVENTS:
            return refuse(400, 21626, f"Invalid StatusCallbackEvent: {sorted(events)}")
        if one.get("MachineDetection", "Enable") not in MACHINE_DETECTION:
            return refuse(400, 21649, f"Invalid MachineDetection: {one['MachineDetection']}")
        if to in self.refuse_calls_to:
            status, code, message = self.refuse_calls_to[to]
            return self._error(status, code, message)
        sid = "CA" + secrets.token_hex(16)
        self.created_calls.append({**one, "StatusCallbackEvent": sorted(events), "sid": sid})
        return (
            201,
            "application/json",
            orjson.dumps(
                {
                    "sid": sid,
                    "account_sid": account,
                    "to": to,
                    "from": from_,
                    "status": "queued",
                    "direction": "outbound-api",
                    "api_version": "2010-04-01",
                    "date_created": email.utils.formatdate(usegmt=True),
                    "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json",
                }
            ),
            {},
        )

    def _list_numbers(self, method: str, path: str, query: dict[str, list[str]]):
        """GET IncomingPhoneNumbers.json, filtered by PhoneNumber, one page."""
        if method != "GET":
            return self._error(405, 20004, "Method not allowed")
        account = NUMBERS_PATH.match(path).group(1)
        if account != self.account_sid:
            return self._error(404, 20404, f"The requested resource {path} was not found")
        wanted = query.get("PhoneNumber", [None])[0]
        page_size = int(query.get("PageSize", ["50"])[0])
        numbers = sorted(n for n in self.numbers if wanted is None or n == wanted)[:page_size]
        return (
            200,
            "application/json",
            orjson.dumps(
                {
                    "incoming_phone_numbers": [
                        {
                            "sid": "PN" + hashlib.md5(n.encode()).hexdigest(),
                            "account_sid": account,
                            "phone_number": n,
                            "voice_url": self.voice_urls.get(n, ""),
                            "voice_method": "POST",
                        }
                        for n in numbers
                    ],
                    "page": 0,
                    "page_size": page_size,
                    "next_page_uri": None,
                    "uri": path,
                }
            ),
            {},
        )

    def _update_call(self, method: str, path: str, form: dict[str, list[str]]):
        """POST Calls/{sid}.json with new TwiML: Twilio stops what the call was doing (our
        media stream) and runs it. The test then plays the stream's `stop`."""
        if method != "POST":
            return self._error(405, 20004, "Method not allowed")
        account, sid = CALL_PATH.match(path).groups()
        if account != self.account_sid or sid not in self.live_calls:
            return self._error(404, 20404, f"The requested resource {path} was not found")
        one = {k: v[-1] for k, v in form.items()}
        twiml = one.get("Twiml")
        if not (twiml or one.get("Url") or one.get("Status")):
            self.violations.append(f"update of {sid} without Twiml, Url or Status")
            return self._error(400, 21205, "Twiml, Url or Status is required")
        if twiml is not None:
            try:
                root = ET.fromstring(twiml)
            except ET.ParseError as exc:
                self.violations.append(f"update of {sid}: Twiml is not XML: {exc}")
                return self._error(400, 12100, "Document parse failure")
            if root.tag != "Response":
                self.violations.append(f"update of {sid}: Twiml root is <{root.tag}>")
                return self._error(400, 12100, "Document parse failure")
        if sid in self.refuse_updates:
            status, code, message = self.refuse_updates[sid]
            return self._error(status, code, message)
        self.updated_calls.append({**one, "sid": sid})
        self.live_calls.discard(sid)
        return (
            200,
            "application/json",
            orjson.dumps({"sid": sid, "account_sid": account, "status": "in-progress"}),
            {},
        )

    def _resource(self, recording: _StoredRecording) -> bytes:
        uri = f"/2010-04-01/Accounts/{recording.account_sid}/Recordings/{recording.sid}.json"
        with wave.open(io.BytesIO(recording.wav)) as wav:
            channels, seconds = wav.getnchannels(), wav.getnframes() / wav.getframerate()
        return orjson.dumps(
            {
                "account_sid": recording.account_sid,
                "api_version": "2010-04-01",
                "call_sid": recording.call_sid,
                "channels": channels,
                "date_created": recording.created,
                "duration": str(round(seconds)),
                "sid": recording.sid,
                "source": "StartCallRecordingTwiML",
                "status": "completed",
                "uri": uri,
                "media_url": f"{self.base_url}{uri.removesuffix('.json')}",
            }
        )


def _downmix(data: bytes) -> bytes:
    with wave.open(io.BytesIO(data)) as wav:
        channels = wav.getnchannels()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    mixed = frames.reshape(-1, channels).astype(np.int32).sum(axis=1, keepdims=True)
    return wav_bytes(np.clip(mixed, -32768, 32767))
