"""The call bridge: sans-I/O core between a Twilio media stream and an OpenAI Realtime session.

Feed it what arrives (`on_twilio_text`, `on_openai_text`, `on_tool_result`, `on_*_closed`)
and it returns the actions to carry out: frames to send to either side, turns to save,
tools to run, the end of the call. It never blocks, opens a socket or touches the
database, so barge-in, marks, truncation and tool flow are tested as plain logic.

Playback accounting: every audio chunk sent to Twilio is remembered with when it arrived
on the stream clock (Twilio's media timestamps), so the bridge knows when Twilio will
play it: back to back, or as it arrives after a pause. A mark follows the chunk that
completes `mark_interval_ms` of audio and the last chunk of each item (0: every chunk);
Twilio echoes a mark once the audio before it has played, which re-anchors that schedule.
Between echoes the position is the schedule run on from the last echo, never past the
next mark; barge-in truncates to that, so the cut is as fine as the 20 ms caller frames
whatever the size of the chunks or the marks' spacing.

Caller audio goes to OpenAI as it comes, or batched into `inbound_window_ms` of audio
per `input_audio_buffer.append` (fewer, larger frames; the model hears it that much later).

OpenAI errors are classified (`calls.openai_errors`): most leave the session open and the
call goes on.
"""

import logging
import re
from binascii import a2b_base64, b2a_base64
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from calls.openai_errors import (
    SESSION_UPDATE_EVENT_PREFIX,
    TRUNCATE_EVENT_PREFIX,
    ErrorClass,
    classify,
)
from calls.outcomes import USAGE_FIELDS, CompletionReason
from voiceagents.realtime import (
    AgentConfig,
    ToolConfig,
    greeting_event,
    session_update_event,
    with_agent_instructions,
)
from voiceagents.tool_schema import argument_problem

log = logging.getLogger(__name__)

TWILIO_FRAME_MS = 20
# The stream clock's bounds: turns store their offset in a 32-bit column, and no call
# lasts a day, so a timestamp outside this is a broken or hostile peer, not a clock.
MAX_STREAM_MS = 24 * 3600 * 1000
BASE64_AUDIO = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
RECONNECT_INSTRUCTIONS = (
    "The phone line to you dropped for a moment and is back. Apologise in a few words "
    "and carry on the conversation where it left off."
)
RESUME_INSTRUCTIONS = (
    "You were cut off in the middle of your answer. Apologise in a few words and answer "
    "the caller's last question again."
)
GOODBYE_INSTRUCTIONS = (
    "The call has reached its time limit. Tell the caller so in one sentence and say a "
    "short, polite goodbye now."
)
NOT_TRANSCRIBED = "(not transcribed)"
# A failed response is retried once; a second failure in a row ends the call.
FAILED_RESPONSES_BEFORE_ENDING = 2
# One reconnect after a lost connection; more would hide a persistent outage from staff.
RECONNECTS_AFTER_FAILURE = 1
# Twilio's frames are a few hundred bytes (`start` with its parameters a few KB); anything
# far larger is dropped unread rather than parsed and forwarded.
MAX_TWILIO_MESSAGE_CHARS = 64 * 1024
TRANSCRIPT_EVENTS = frozenset(
    {
        "conversation.item.input_audio_transcription.completed",
        "conversation.item.input_audio_transcription.failed",
    }
)
END_CALL_TOOL_OUTPUT = '{"status":"ok","note":"Say a short goodbye; the call ends after it."}'
TRANSFER_TOOL_OUTPUT = (
    '{"status":"ok","note":"Tell the caller in one short sentence that you are putting them '
    'through now; the transfer starts after it."}'
)


# --- Actions ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendTwilio:
    text: str


@dataclass(frozen=True, slots=True)
class SendOpenAI:
    text: str


@dataclass(frozen=True, slots=True)
class StreamStarted:
    stream_sid: str


@dataclass(frozen=True, slots=True)
class SaveTurn:
    speaker: str  # calls.models.Turn.Speaker
    text: str
    started_ms: int
    interrupted: bool = False
    item_id: str = ""


@dataclass(frozen=True, slots=True)
class RunTool:
    call_id: str
    name: str
    arguments: str
    url: str
    tool: ToolConfig | None = field(default=None, compare=False, repr=False)  # its headers


@dataclass(frozen=True, slots=True)
class ReconnectOpenAI:
    """Open a new Realtime session and hand it the conversation so far."""

    why: str  # "connection_lost" | "session_rollover"


@dataclass(frozen=True, slots=True)
class TransferCall:
    """Hand the live call to `destination` (Twilio REST update to <Dial>); the result
    comes back through `CallBridge.on_transfer_result`."""

    destination: str


@dataclass(frozen=True, slots=True)
class EndCall:
    reason: str  # calls.models.CompletionReason
    error_code: str = ""
    error_message: str = ""
    # The OpenAI session is still open and caller turns await their transcripts: give
    # them a moment before closing it (`CallBridge.awaiting_transcripts`).
    wait_for_transcripts: bool = False


Action = SendTwilio | SendOpenAI | StreamStarted | SaveTurn | RunTool | ReconnectOpenAI | EndCall


def _json(obj: dict) -> str:
    return orjson.dumps(obj).decode()


class QueuedAudio(NamedTuple):
    """A chunk of agent audio sent to Twilio and not yet known to have played."""

    item_id: str
    end_ms: int  # the item's audio generated up to the end of this chunk
    ms: int
    arrived_ms: int  # on the stream clock: Twilio plays it from then, or after the one before
    mark: str | None  # the mark sent after it, if any


APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'
APPEND_SUFFIX = '"}'


def base64_audio_bytes(payload: str) -> int:
    """Decoded length of a base64 string, without decoding it."""
    return len(payload) // 4 * 3 - payload.count("=", -2)


def cut_transcript(text: str, heard_ms: int, generated_ms: int) -> str:
    """The part of an agent's words the caller heard, assuming even speech over the audio."""
    if generated_ms <= 0 or heard_ms >= generated_ms:
        return text
    words = text.split()
    kept = round(len(words) * max(heard_ms, 0) / generated_ms)
    return " ".join(words[:kept])


@dataclass
class AgentItem:
    """One assistant audio item: what was generated, what the caller has heard."""

    item_id: str
    response_id: str
    session: int  # which Realtime session made it: only that session can truncate it
    started_ms: int | None = None
    generated_ms: int = 0
    generated_bytes: int = 0
    heard_ms: int = 0
    transcript_parts: list[str] = field(default_factory=list)
    transcript: str | None = None
    interrupted: bool = False
    response_done: bool = False
    saved: bool = False

    @property
    def text(self) -> str:
        return self.transcript if self.transcript is not None else "".join(self.transcript_parts)


class CallBridge:
    """State of one call. One instance per call; nothing is shared between calls."""

    def __init__(
        self,
        call_sid: str,
        agent: AgentConfig,
        stream_token: str = "",
        *,
        mark_interval_ms: int = 0,
        inbound_window_ms: int = 0,
    ) -> None:
        self.call_sid = call_sid
        self.agent = agent
        self.stream_token = stream_token
        self.mark_interval_ms = mark_interval_ms
        self.inbound_window_ms = inbound_window_ms
        # Caller audio held back until it makes up inbound_window_ms: base64 payloads.
        self.inbound_payloads: list[str] = []
        self.inbound_ms = 0
        self.stream_sid: str | None = None
        self.ended = False
        # Stream clock: ms of caller audio received so far, from Twilio's timestamps.
        self.stream_ms = 0
        # When queued agent audio will have finished playing, on the stream clock.
        self.playback_end_ms = 0
        self.response_id: str | None = None
        self.items: dict[str, AgentItem] = {}
        # Agent audio sent to Twilio and not yet known to have played, oldest first.
        self.queued: deque[QueuedAudio] = deque()
        # Marks sent and not echoed, in the order sent (each also on its chunk in `queued`).
        self.pending_marks: dict[str, None] = {}
        self.unmarked_ms = 0  # audio sent since the last mark
        self.mark_seq = 0
        # Stream time of the last mark echo: the queue has been playing on since then.
        self.play_anchor_ms = 0
        self.cancelled_responses: set[str] = set()
        self.caller_started_ms: dict[str, int] = {}
        # Tool calls running, by call id -> name; then their outputs, by call id, until a
        # response has seen them (True once the server has added the output item).
        self.tool_calls: dict[str, str] = {}
        self.unanswered_outputs: dict[str, bool] = {}
        self.seen_call_ids: set[str] = set()
        self.function_names_by_item: dict[str, str] = {}
        # Caller turns committed whose transcript has not come yet: item id -> start ms.
        self.awaiting_transcripts: dict[str, int] = {}
        self.idle_prompt_items: set[str] = set()
        self.draining = False  # ended, but still taking those transcripts
        # Set by the end_call tool: hang up once a later response (the goodbye) has played.
        self.hangup_after_playback = False
        self.hangup_requested_in: str | None = None
        # transfer_call: where to once the handover line has played, then while Twilio
        # is being asked.
        self.transfer_after_playback: str | None = None
        self.transferring: str | None = None
        self.last_done_response_id: str | None = None
        self.usage: dict[str, int] = dict.fromkeys(USAGE_FIELDS, 0)
        self.openai_errors = 0
        self.last_openai_error = ""
        self.failed_responses_in_a_row = 0
        self.session_number = 0
        self.formats_checked = False
        self.event_seq = 0
        # The time limit passed: a goodbye is due once the current response is done.
        self.goodbye_due = False
        self.time_limit_reached = False
        # Caller and agent turns so far, replayed into a new session after a reconnect.
        self.history: list[SaveTurn] = []
        self.reconnects_left = RECONNECTS_AFTER_FAILURE
        self.reconnect_reason = ""
        # A reply the old session was giving (or about to give) when it went away.
        self.reply_lost_in_reconnect = False
        # From the caller's speech_started until the response to their turn is created:
        # their words are in the current session's input buffer only.
        self.caller_turn_open = False
        # Server VAD has committed that turn: its response is due next (or an error).
        self.caller_turn_committed = False
        # OpenAI times caller speech from the start of its session's input audio; a new
        # session starts at this point of the stream clock.
        self.session_audio_start_ms = 0
        self.malformed_twilio = 0
        self.malformed_openai = 0

    # --- Start ------------------------------------------------------------------------
    def on_openai_connected(self) -> list[Action]:
        return [self._session_update()]

    def _session_update(self) -> SendOpenAI:
        # Our own event id, so an `error` about this event is recognised as a refusal.
        event = session_update_event(self.agent)
        event["event_id"] = self._event_id(SESSION_UPDATE_EVENT_PREFIX)
        return SendOpenAI(_json(event))

    def _event_id(self, prefix: str) -> str:
        self.event_seq += 1
        return f"{prefix}{self.event_seq}"

    # --- From Twilio ------------------------------------------------------------------
    def on_twilio_text(self, raw: str | bytes) -> list[Action]:
        if self.ended:
            return []
        if len(raw) > MAX_TWILIO_MESSAGE_CHARS:
            return self._malformed_twilio(f"oversized frame of {len(raw)} characters")
        try:
            msg = orjson.loads(raw)
            event = msg["event"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return self._malformed_twilio("not a JSON object with an event")
        if event == "media":
            return self._twilio_media(msg)
        if event == "mark":
            return self._twilio_mark(msg)
        if event == "start":
            return self._twilio_start(msg)
        if event == "stop":
            # While a transfer is being asked for, the stream stopping is Twilio taking it.
            return self._send_inbound() + self._end(
                CompletionReason.TRANSFERRED
                if self.transferring
                else CompletionReason.CALLER_HANGUP
            )
        if event == "dtmf":
            return self._twilio_dtmf(msg)
        if event == "connected":
            return []
        return self._malformed_twilio(f"unknown event {event!r}")

    def _twilio_start(self, msg: dict) -> list[Action]:
        try:
            start = msg["start"]
            stream_sid = start["streamSid"]
            call_sid = start["callSid"]
        except (KeyError, TypeError):
            return self._malformed_twilio("start without streamSid/callSid")
        if self.stream_sid is not None:
            return self._malformed_twilio("second start")
        if call_sid != self.call_sid:
            log.warning("call %s: stream start names call %s; ending", self.call_sid, call_sid)
            return self._end(CompletionReason.SERVER_ERROR, "stream_call_mismatch", call_sid)
        parameters = start.get("customParameters")
        token = parameters.get("token") if isinstance(parameters, dict) else None
        if self.stream_token and token != self.stream_token:
            log.warning("call %s: stream start without its token parameter; ending", call_sid)
            return self._end(CompletionReason.SERVER_ERROR, "stream_token_mismatch")
        self.stream_sid = stream_sid
        return [StreamStarted(stream_sid), SendOpenAI(_json(greeting_event(self.agent)))]

    def _twilio_media(self, msg: dict) -> list[Action]:
        # Hot path: one dict lookup chain, a regex check on the payload, one dumps.
        try:
            media = msg["media"]
            payload = media["payload"]
            timestamp_ms = int(media["timestamp"])
        except (KeyError, TypeError, ValueError):
            return self._malformed_twilio("media without payload/timestamp")
        if self.stream_sid is None:
            return self._malformed_twilio("media before start")
        if (
            not isinstance(payload, str)
            or len(payload) % 4
            or not BASE64_AUDIO.fullmatch(payload.encode())
        ):
            return self._malformed_twilio("media payload is not base64")
        if not 0 <= timestamp_ms <= MAX_STREAM_MS:
            return self._malformed_twilio("media timestamp out of range")
        # Twilio's clock only moves forward; a frame stamped earlier does not turn it back.
        self.stream_ms = max(self.stream_ms, timestamp_ms + TWILIO_FRAME_MS)
        if self.inbound_window_ms <= 0:
            return [SendOpenAI(APPEND_PREFIX + payload + APPEND_SUFFIX)]
        self.inbound_payloads.append(payload)
        self.inbound_ms += base64_audio_bytes(payload) // self.agent.audio.bytes_per_ms
        if self.inbound_ms < self.inbound_window_ms:
            return []
        return self._send_inbound()

    def _send_inbound(self) -> list[Action]:
        """The caller audio held back, as one append (none if nothing is held)."""
        payloads, self.inbound_payloads, self.inbound_ms = self.inbound_payloads, [], 0
        if len(payloads) <= 1:
            return [SendOpenAI(APPEND_PREFIX + payloads[0] + APPEND_SUFFIX)] if payloads else []
        # Each frame's base64 ends in padding (160 bytes is not a multiple of 3): decode
        # and encode the whole, in C, rather than join the strings.
        audio = b2a_base64(b"".join([a2b_base64(p) for p in payloads]), newline=False)
        return [SendOpenAI(APPEND_PREFIX + audio.decode() + APPEND_SUFFIX)]

    def _twilio_mark(self, msg: dict) -> list[Action]:
        try:
            name = msg["mark"]["name"]
        except (KeyError, TypeError):
            return self._malformed_twilio("mark without name")
        if not isinstance(name, str):
            return self._malformed_twilio("mark name is not a string")
        if name not in self.pending_marks:
            return []  # a mark dropped by `clear`, echoed at once: its audio was not heard
        del self.pending_marks[name]
        self.play_anchor_ms = self.stream_ms
        while self.queued:  # everything up to the chunk this mark followed has played
            chunk = self.queued.popleft()
            item = self.items.get(chunk.item_id)
            if item is not None and not item.interrupted:
                item.heard_ms = chunk.end_ms
            if chunk.mark == name:
                break
        actions = self._save_finished_items()
        if self.hangup_after_playback and self._agent_done_speaking():
            actions += self._after_playback()
        return actions

    def _twilio_dtmf(self, msg: dict) -> list[Action]:
        try:
            digit = str(msg["dtmf"]["digit"])
        except (KeyError, TypeError):
            return self._malformed_twilio("dtmf without digit")
        note = f"[caller pressed {digit}]"
        if not self.agent.dtmf_to_model:
            return [self._remember(SaveTurn("caller", note, self.stream_ms))]
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": note}],
        }
        actions: list[Action] = [
            SendOpenAI(_json({"type": "conversation.item.create", "item": item})),
            self._remember(SaveTurn("caller", note, self.stream_ms)),
        ]
        # Server VAD answers speech, not key presses: ask for the answer ourselves unless
        # a response, the caller's own turn or a tool will bring one anyway.
        if self._quiet():
            actions.append(SendOpenAI('{"type":"response.create"}'))
        return actions

    def _quiet(self) -> bool:
        return (
            self.response_id is None
            and not self.caller_turn_open
            and not self.tool_calls
            and not self.unanswered_outputs
        )

    def _malformed_twilio(self, why: str) -> list[Action]:
        self.malformed_twilio += 1
        # Log the first few and then sparsely: a broken peer must not flood the log.
        if self.malformed_twilio <= 5 or self.malformed_twilio % 500 == 0:
            log.error("call %s: dropped malformed Twilio frame (%s)", self.call_sid, why)
        return []

    def on_twilio_closed(self) -> list[Action]:
        if self.transferring:
            return self._end(CompletionReason.TRANSFERRED)
        return self._end(CompletionReason.NORMAL)

    def on_start_timeout(self) -> list[Action]:
        """Twilio sends `start` right after `connected`; a stream that never starts holds
        an OpenAI session for nothing, so the call ends."""
        if self.stream_sid is not None:
            return []
        log.error("call %s: the media stream never sent a valid start; ending", self.call_sid)
        return self._end(CompletionReason.SERVER_ERROR, "stream_not_started")

    # --- From OpenAI ------------------------------------------------------------------
    def on_openai_text(self, raw: str | bytes) -> list[Action]:
        if self.ended and not self.draining:
            return []
        try:
            event = orjson.loads(raw)
            kind = event["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.malformed_openai += 1
            log.error("call %s: ignored malformed OpenAI event", self.call_sid)
            return []
        if self.ended and (
            kind not in TRANSCRIPT_EVENTS or event.get("item_id") not in self.awaiting_transcripts
        ):
            return []  # after the end, only the transcripts being waited for count
        handler = self._openai_handlers.get(kind)
        if handler is None:
            return []  # events the bridge does not need (rate_limits.updated, deltas of text…)
        try:
            return handler(self, event)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # AttributeError: a field of the wrong JSON type (a string where an object was due).
            self.malformed_openai += 1
            log.error("call %s: ignored OpenAI %s missing fields (%r)", self.call_sid, kind, exc)
            return []

    def _session_updated(self, event: dict) -> list[Action]:
        """The first `session.updated` of a session says what the server really applied:
        anything but µ-law both ways would be played to the caller as noise."""
        if self.formats_checked:
            return []
        self.formats_checked = True
        audio = event["session"]["audio"]
        formats = (audio["input"]["format"]["type"], audio["output"]["format"]["type"])
        wanted = self.agent.audio.realtime["type"]
        if formats == (wanted, wanted):
            return []
        message = (
            f"OpenAI applied audio formats {formats[0]} in and {formats[1]} out; "
            f"this call's audio needs {wanted} both ways."
        )
        log.error("call %s: %s Ending the call.", self.call_sid, message)
        return self._end(CompletionReason.OPENAI_ERROR, "audio_format_mismatch", message)

    def _audio_delta(self, event: dict) -> list[Action]:
        response_id = event["response_id"]
        if response_id in self.cancelled_responses or self.stream_sid is None:
            return []  # audio of a response the caller interrupted: never play it
        item = self._item(event["item_id"], response_id)
        delta = event["delta"]
        delta_bytes = base64_audio_bytes(delta)
        chunk_ms = delta_bytes // self.agent.audio.bytes_per_ms
        chunk_start_ms = max(self.stream_ms, self.playback_end_ms)
        if item.started_ms is None:
            item.started_ms = chunk_start_ms
        item.generated_bytes += delta_bytes
        item.generated_ms = item.generated_bytes // self.agent.audio.bytes_per_ms
        self.playback_end_ms = chunk_start_ms + chunk_ms
        self.unmarked_ms += chunk_ms
        mark = self._next_mark_name() if self.unmarked_ms >= self.mark_interval_ms else None
        self.queued.append(
            QueuedAudio(item.item_id, item.generated_ms, chunk_ms, self.stream_ms, mark)
        )
        media = SendTwilio(
            _json({"event": "media", "streamSid": self.stream_sid, "media": {"payload": delta}})
        )
        if mark is None:
            return [media]
        return [media, self._mark(mark)]

    def _next_mark_name(self) -> str:
        self.mark_seq += 1
        self.unmarked_ms = 0
        return str(self.mark_seq)

    def _mark(self, name: str) -> SendTwilio:
        self.pending_marks[name] = None
        return SendTwilio(
            _json({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})
        )

    def _mark_the_rest(self) -> list[Action]:
        """A mark after the last chunk sent, if it has none: an item's audio is complete,
        and its end must be echoed to know it was heard in full."""
        if not self.queued or self.queued[-1].mark is not None or self.stream_sid is None:
            return []
        name = self._next_mark_name()
        self.queued[-1] = self.queued[-1]._replace(mark=name)
        return [self._mark(name)]

    def _audio_done(self, event: dict) -> list[Action]:
        if event["response_id"] in self.cancelled_responses:
            return []
        return self._mark_the_rest()

    def _speech_started(self, event: dict) -> list[Action]:
        audio_start_ms = event.get("audio_start_ms")
        self.caller_started_ms[event["item_id"]] = (
            self.session_audio_start_ms + min(max(int(audio_start_ms), 0), MAX_STREAM_MS)
            if audio_start_ms is not None
            else self.stream_ms
        )
        self.caller_turn_open = True
        self.caller_turn_committed = False
        if not self.agent.interrupt_response:
            return []
        return self._barge_in()

    def playing_position(self) -> tuple[str, int] | None:
        """The item the caller is hearing now and how far into it (ms): the queue played
        on from the last echoed mark, each chunk from when it arrived or when the one
        before it ended, never past the next mark (not yet echoed: not known heard)."""
        now, played_until = self.stream_ms, self.play_anchor_ms
        chunk = None
        for chunk in self.queued:
            start = max(chunk.arrived_ms, played_until)
            if now < start + chunk.ms:
                return chunk.item_id, chunk.end_ms - chunk.ms + max(0, now - start)
            if chunk.mark is not None:
                break  # played by the schedule, but its mark has not come back
            played_until = start + chunk.ms
        return None if chunk is None else (chunk.item_id, chunk.end_ms)

    def _barge_in(self) -> list[Action]:
        """The caller spoke over the agent: stop the audio, cancel, truncate to what was heard."""
        actions: list[Action] = []
        if self.response_id is not None:
            # Cancel first so the item is complete when it is truncated.
            self.cancelled_responses.add(self.response_id)
            for item in self.items.values():
                if item.response_id == self.response_id:
                    item.interrupted = True
            actions.append(SendOpenAI('{"type":"response.cancel"}'))
        if self.queued and self.stream_sid is not None:
            actions.insert(0, SendTwilio(_json({"event": "clear", "streamSid": self.stream_sid})))
            playing = self.playing_position()
            if playing is not None:
                item_id, position_ms = playing
                self.items[item_id].heard_ms = position_ms
            unheard = OrderedDict.fromkeys(chunk.item_id for chunk in self.queued)
            self.queued.clear()
            self.pending_marks.clear()
            self.unmarked_ms = 0
            self.playback_end_ms = self.stream_ms
            for item_id in unheard:
                item = self.items[item_id]
                item.interrupted = True
                if item.session != self.session_number:
                    # Made by a session that is gone: the new one has never heard of it.
                    continue
                truncate = {
                    "type": "conversation.item.truncate",
                    "event_id": self._event_id(TRUNCATE_EVENT_PREFIX),
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": min(item.heard_ms, item.generated_ms),
                }
                actions.append(SendOpenAI(_json(truncate)))
        actions += self._save_finished_items()
        if self.hangup_after_playback and actions:
            # The caller spoke over the goodbye (or the handover line); the agent had
            # already decided to hang up (or transfer).
            actions += self._after_playback()
        return actions

    def _response_created(self, event: dict) -> list[Action]:
        self.response_id = event["response"]["id"]
        self.caller_turn_open = self.caller_turn_committed = False
        # Tool outputs already in the conversation are part of this response's input.
        for call_id in [c for c, added in self.unanswered_outputs.items() if added]:
            del self.unanswered_outputs[call_id]
        return []

    def _output_item_added(self, event: dict) -> list[Action]:
        item = event["item"]
        if item.get("type") == "message":
            self._item(item["id"], event["response_id"])
        elif item.get("type") == "function_call" and item.get("name"):
            self.function_names_by_item[item["id"]] = item["name"]
        return []

    def _output_item_done(self, event: dict) -> list[Action]:
        """A function call's item carries its name, call id and arguments too; whichever
        of this and `function_call_arguments.done` comes first runs the tool."""
        item = event["item"]
        if item.get("type") != "function_call" or item.get("status") != "completed":
            return []
        return self._function_call(
            item["call_id"], item["name"], item.get("arguments") or "", event["response_id"]
        )

    def _conversation_item_added(self, event: dict) -> list[Action]:
        item = event["item"]
        if item.get("type") == "function_call_output" and item.get("call_id") in (
            self.unanswered_outputs
        ):
            self.unanswered_outputs[item["call_id"]] = True
        return []

    def _transcript_delta(self, event: dict) -> list[Action]:
        self._item(event["item_id"], event["response_id"]).transcript_parts.append(event["delta"])
        return []

    def _transcript_done(self, event: dict) -> list[Action]:
        self._item(event["item_id"], event["response_id"]).transcript = event["transcript"]
        return []

    def _function_call_done(self, event: dict) -> list[Action]:
        name = event.get("name") or self.function_names_by_item.get(event.get("item_id", ""))
        if not name:
            raise KeyError("name")
        return self._function_call(event["call_id"], name, event["arguments"], event["response_id"])

    def _function_call(self, call_id: str, name: str, arguments: str, response_id: str):
        if call_id in self.seen_call_ids:
            return []
        self.seen_call_ids.add(call_id)
        self.tool_calls[call_id] = name
        actions: list[Action] = [SaveTurn("tool", f"{name}({arguments})", self.stream_ms)]
        tool = self.agent.tool(name)
        if tool is None:
            return actions + self.on_tool_result(call_id, _json({"error": f"unknown tool {name}"}))
        problem = argument_problem(arguments, tool.definition.get("parameters"))
        if problem is not None:
            log.warning(
                "call %s: tool %s called with invalid arguments: %s", self.call_sid, name, problem
            )
            return actions + self.on_tool_result(
                call_id, _json({"error": f"invalid arguments, not run: {problem}"})
            )
        if tool.kind == "end_call":
            self.hangup_after_playback = True
            self.hangup_requested_in = response_id
            return actions + self.on_tool_result(call_id, END_CALL_TOOL_OUTPUT)
        if tool.kind == "transfer_call":
            if self.transferring or self.transfer_after_playback:
                return actions + self.on_tool_result(
                    call_id, _json({"error": "a transfer is already under way"})
                )
            self.hangup_after_playback = True
            self.hangup_requested_in = response_id
            self.transfer_after_playback = tool.transfer_to
            return actions + self.on_tool_result(call_id, TRANSFER_TOOL_OUTPUT)
        return [*actions, RunTool(call_id, name, arguments, tool.url, tool)]

    def on_tool_result(self, call_id: str, output: str) -> list[Action]:
        """A tool finished: hand its output to the model, and ask for the next response
        once every running tool is answered, unless one is coming anyway."""
        if self.ended or self.tool_calls.pop(call_id, None) is None:
            return []
        self.unanswered_outputs[call_id] = False
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        actions: list[Action] = [
            SendOpenAI(_json({"type": "conversation.item.create", "item": item}))
        ]
        return actions + self._respond_after_tools()

    def _respond_after_tools(self) -> list[Action]:
        """`response.create` for tool outputs no response has seen. Not while a response
        is active (it would be refused: wait for its `response.done`), and not while the
        caller is mid-turn: server VAD answers when they stop, with the outputs already
        in the conversation, and a second response.create would race it."""
        if self.tool_calls or not self.unanswered_outputs:
            return []
        if self.response_id is not None or self.caller_turn_open:
            return []
        self.unanswered_outputs.clear()
        return [SendOpenAI('{"type":"response.create"}')]

    def _response_done(self, event: dict) -> list[Action]:
        response = event["response"]
        if response.get("id") == self.response_id:
            self.response_id = None
        self.last_done_response_id = response.get("id")
        self._add_usage(response.get("usage") or {})
        for item in self.items.values():
            if item.response_id == response.get("id"):
                item.response_done = True
        actions = self._mark_the_rest() + self._save_finished_items()
        if response.get("status") == "failed":
            return actions + self._response_failed(response)
        if response.get("status") == "completed":
            self.failed_responses_in_a_row = 0
        if self.goodbye_due and self.response_id is None:
            return actions + self._say_goodbye()
        actions += self._respond_after_tools()
        if self.hangup_after_playback and self._agent_done_speaking():
            actions += self._after_playback()
        return actions

    def _response_failed(self, response: dict) -> list[Action]:
        """Retry once with the agent's instructions; a second failure in a row, or one the
        session cannot get past, ends the call."""
        error = (response.get("status_details") or {}).get("error") or {}
        code = error.get("code") or error.get("type") or "response_failed"
        self._note_error(code)
        self.failed_responses_in_a_row += 1
        detail = f"response failed: type={error.get('type')} code={error.get('code')}"
        if (
            classify(error) is ErrorClass.FATAL
            or self.failed_responses_in_a_row >= FAILED_RESPONSES_BEFORE_ENDING
        ):
            log.error("call %s: %s; ending", self.call_sid, detail)
            return self._end_after_transcripts(CompletionReason.OPENAI_ERROR, code, detail)
        log.warning("call %s: %s; asking once more", self.call_sid, detail)
        self.unanswered_outputs.clear()  # the retry's input includes them
        return [self._response_create(self.agent.instructions)]

    def _caller_committed(self, event: dict) -> list[Action]:
        self.caller_turn_committed = self.caller_turn_open
        if self.agent.input_transcription_model:
            item_id = event["item_id"]
            self.awaiting_transcripts[item_id] = self.caller_started_ms.get(item_id, self.stream_ms)
        return []

    def _idle_timeout(self, event: dict) -> list[Action]:
        # Server VAD commits the silence and prompts the caller itself; its (empty)
        # transcript is not a caller turn.
        self.idle_prompt_items.add(event["item_id"])
        log.info("call %s: caller silent; the agent prompts them", self.call_sid)
        return []

    def _caller_transcript(self, event: dict) -> list[Action]:
        return self._caller_turn(event["item_id"], event["transcript"])

    def _caller_transcript_failed(self, event: dict) -> list[Action]:
        return self._caller_turn(event["item_id"], NOT_TRANSCRIBED)

    def _caller_turn(self, item_id: str, text: str) -> list[Action]:
        started_ms = self.awaiting_transcripts.pop(item_id, None)
        if started_ms is None:
            started_ms = self.caller_started_ms.get(item_id, self.stream_ms)
        self.caller_started_ms.pop(item_id, None)
        if item_id in self.idle_prompt_items and not text.strip():
            return []
        return [self._remember(SaveTurn("caller", text, started_ms, item_id=item_id))]

    def _error(self, event: dict) -> list[Action]:
        error = event.get("error") or {}
        code = error.get("code") or error.get("type") or "unknown"
        kind = classify(error)
        if kind is ErrorClass.BENIGN:
            log.info("call %s: OpenAI %s (a normal race)", self.call_sid, code)
            return []
        self._note_error(code)
        if kind is ErrorClass.SESSION and self.stream_sid is not None:
            log.info("call %s: OpenAI session expired; rolling over", self.call_sid)
            return self._reconnect("session_rollover")
        if kind is ErrorClass.RECOVERABLE:
            log.warning(
                "call %s: OpenAI error %s (the session stays open): %s",
                self.call_sid,
                code,
                error.get("message"),
            )
            return self._turn_response_not_coming()
        log.error("call %s: OpenAI error %s: %s", self.call_sid, code, error.get("message"))
        return self._end_after_transcripts(
            CompletionReason.OPENAI_ERROR, code, error.get("message") or ""
        )

    def _turn_response_not_coming(self) -> list[Action]:
        """An error where server VAD's response to a committed caller turn was due means
        that response is not coming: the turn is over, and tool outputs that were left
        to it get a response.create of their own (else the call would wait in silence)."""
        if not (self.caller_turn_committed and self.response_id is None):
            return []
        self.caller_turn_open = self.caller_turn_committed = False
        return self._respond_after_tools()

    def _note_error(self, code: str) -> None:
        self.openai_errors += 1
        self.last_openai_error = code

    _openai_handlers = {
        "response.output_audio.delta": _audio_delta,
        "response.output_audio.done": _audio_done,
        "input_audio_buffer.speech_started": _speech_started,
        "input_audio_buffer.committed": _caller_committed,
        "input_audio_buffer.timeout_triggered": _idle_timeout,
        "session.updated": _session_updated,
        "response.created": _response_created,
        "response.output_item.added": _output_item_added,
        "response.output_item.done": _output_item_done,
        "conversation.item.added": _conversation_item_added,
        "response.output_audio_transcript.delta": _transcript_delta,
        "response.output_audio_transcript.done": _transcript_done,
        "response.function_call_arguments.done": _function_call_done,
        "response.done": _response_done,
        "conversation.item.input_audio_transcription.completed": _caller_transcript,
        "conversation.item.input_audio_transcription.failed": _caller_transcript_failed,
        "error": _error,
    }

    def on_openai_closed(self, detail: str = "") -> list[Action]:
        if self.ended:
            return []
        if self.stream_sid is not None and self.reconnects_left > 0:
            self.reconnects_left -= 1
            log.warning("call %s: OpenAI connection lost (%s); reconnecting", self.call_sid, detail)
            return self._reconnect("connection_lost")
        return self._end(CompletionReason.OPENAI_CONNECTION_FAILED, "connection_closed", detail)

    def can_roll_over(self) -> bool:
        """A quiet moment to move to a new session: nobody mid-sentence, no tool pending,
        no caller turn waiting for its transcript."""
        return (
            not self.ended
            and self.stream_sid is not None
            and self._quiet()
            and not self.queued
            and not self.awaiting_transcripts
        )

    def roll_over(self) -> list[Action]:
        return self._reconnect("session_rollover")

    def _reconnect(self, why: str) -> list[Action]:
        # Whatever the old session was saying is lost with it; audio already sent to
        # Twilio still plays and its marks still count. The new session is asked to answer
        # again, or the caller would wait in silence for a reply that never comes.
        self.reply_lost_in_reconnect = not self._quiet()
        if self.response_id is not None:
            self.cancelled_responses.add(self.response_id)
            self.response_id = None
        self.tool_calls.clear()
        self.unanswered_outputs.clear()
        self.caller_turn_open = False
        self.session_number += 1
        self.formats_checked = False
        # Caller audio from here on goes to the new session (queued while it opens), and
        # so does any held back for batching.
        self.session_audio_start_ms = self.stream_ms - self.inbound_ms
        self.reconnect_reason = why
        # Transcripts the old session still owed will never come.
        lost = [self._caller_turn(item_id, NOT_TRANSCRIBED) for item_id in self._awaiting()]
        return [*(turn for turns in lost for turn in turns), ReconnectOpenAI(why)]

    def on_openai_reconnected(self) -> list[Action]:
        """Configure the new session and replay the conversation, in spoken order: saved
        turns, and the old session's answer the caller is still hearing, cut to what
        they have heard of it so far."""
        actions: list[Action] = [self._session_update()]
        spoken = [(t.started_ms, t.speaker, t.text) for t in self.history]
        playing = self.playing_position()
        for item in self.items.values():
            if item.saved or item.started_ms is None or item.session == self.session_number:
                continue
            heard_ms = playing[1] if playing and playing[0] == item.item_id else item.heard_ms
            spoken.append(
                (item.started_ms, "agent", cut_transcript(item.text, heard_ms, item.generated_ms))
            )
        for _, speaker, text in sorted(spoken, key=lambda turn: turn[0]):
            if not text or text == NOT_TRANSCRIBED:
                continue
            if speaker == "caller":
                item = {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": text}],
                }
            elif speaker == "agent":
                item = {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text}],
                }
            else:
                continue
            actions.append(SendOpenAI(_json({"type": "conversation.item.create", "item": item})))
        if self.reconnect_reason == "connection_lost":
            instructions = RECONNECT_INSTRUCTIONS
        elif self.reply_lost_in_reconnect:
            instructions = RESUME_INSTRUCTIONS
        else:
            return actions  # a quiet moment: the caller speaks next
        actions.append(self._response_create(with_agent_instructions(self.agent, instructions)))
        return actions

    def _after_playback(self) -> list[Action]:
        """The goodbye (or the handover line) has played: hang up, or transfer."""
        if self.transfer_after_playback is None:
            return self._end(CompletionReason.AGENT_HANGUP)
        if self.ended:
            return []
        self.transferring, self.transfer_after_playback = self.transfer_after_playback, None
        self.hangup_after_playback = False
        log.info("call %s: transferring to %s", self.call_sid, self.transferring)
        return [TransferCall(self.transferring)]

    def on_transfer_result(self, error: str | None) -> list[Action]:
        """Twilio took the transfer (the call is theirs now: it ends here as
        transferred), or refused it: the model is told, and the call goes on."""
        destination, self.transferring = self.transferring, None
        if destination is None or self.ended:
            return []
        if error is None:
            return self._end(CompletionReason.TRANSFERRED)
        log.warning("call %s: transfer to %s failed: %s", self.call_sid, destination, error)
        note = {
            "type": "message",
            "role": "system",
            "content": [
                {
                    "type": "input_text",
                    "text": f"The transfer_call tool failed: {error}. The caller is still on "
                    "the line: tell them you could not put them through, and keep helping.",
                }
            ],
        }
        actions: list[Action] = [
            SendOpenAI(_json({"type": "conversation.item.create", "item": note}))
        ]
        if self.response_id is None and not self.caller_turn_open:
            actions.append(SendOpenAI('{"type":"response.create"}'))
        return actions

    def on_staff_hangup(self) -> list[Action]:
        return self._end(CompletionReason.STAFF_HANGUP)

    def on_openai_connect_failed(self, detail: str) -> list[Action]:
        return self._end(CompletionReason.OPENAI_CONNECTION_FAILED, "connect_failed", detail)

    def on_max_duration(self) -> list[Action]:
        """The agent's time limit: a goodbye once the current answer is done, then hang up."""
        if self.ended or self.hangup_after_playback or self.stream_sid is None:
            return []
        log.info("call %s: time limit reached; saying goodbye", self.call_sid)
        self.time_limit_reached = True
        self.hangup_after_playback = True
        self.goodbye_due = True
        if self.response_id is not None:
            self.hangup_requested_in = self.response_id  # its end is not the goodbye's
            return []
        return self._say_goodbye()

    def on_goodbye_overdue(self) -> list[Action]:
        return self._end(CompletionReason.TIME_LIMIT)

    def _say_goodbye(self) -> list[Action]:
        self.goodbye_due = False
        self.hangup_requested_in = self.last_done_response_id
        self.tool_calls.clear()
        self.unanswered_outputs.clear()
        return [
            self._response_create(
                with_agent_instructions(self.agent, GOODBYE_INSTRUCTIONS), tool_choice="none"
            )
        ]

    def _response_create(self, instructions: str, **options) -> SendOpenAI:
        response = {"instructions": instructions, **options} if instructions else options
        event = (
            {"type": "response.create", "response": response}
            if response
            else {"type": "response.create"}
        )
        return SendOpenAI(_json(event))

    # --- End --------------------------------------------------------------------------
    def finish(self) -> list[Action]:
        """Turns still unsaved when the call ends: the agent's cut to what the caller
        heard, the caller's whose transcript never came marked as not transcribed."""
        self.draining = False
        actions: list[Action] = []
        for item_id in self._awaiting():
            actions += self._caller_turn(item_id, NOT_TRANSCRIBED)
        for item in self.items.values():
            if item.saved or item.started_ms is None:
                continue
            heard_all = item.response_done and item.heard_ms >= item.generated_ms
            item.interrupted = item.interrupted or not heard_all
            actions.append(self._save_item(item))
        return actions

    def _end(self, reason: str, error_code: str = "", error_message: str = "") -> list[Action]:
        if self.ended:
            return []
        self.ended = True
        if reason == CompletionReason.AGENT_HANGUP and self.time_limit_reached:
            reason = CompletionReason.TIME_LIMIT
        return [EndCall(reason, error_code, error_message)]

    def _end_after_transcripts(self, reason: str, error_code: str, message: str) -> list[Action]:
        """End on a fault while the session is still open: the caller's last words may be
        committed but not yet transcribed, so the transcripts still due are waited for."""
        actions = self._end(reason, error_code, message)
        if actions and self.awaiting_transcripts:
            self.draining = True
            return [EndCall(reason, error_code, message, wait_for_transcripts=True)]
        return actions

    # --- Helpers ----------------------------------------------------------------------
    def _item(self, item_id: str, response_id: str) -> AgentItem:
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = AgentItem(item_id, response_id, self.session_number)
        return item

    def _awaiting(self) -> list[str]:
        """Caller items still owed a transcript, oldest first."""
        return sorted(self.awaiting_transcripts, key=self.awaiting_transcripts.__getitem__)

    def _agent_done_speaking(self) -> bool:
        """True once the goodbye that followed end_call was generated and played."""
        return (
            self.response_id is None
            and not self.queued
            and self.last_done_response_id != self.hangup_requested_in
        )

    def _save_finished_items(self) -> list[Action]:
        """Save agent turns that are complete: generated in full and played (or cut)."""
        finished = [
            item
            for item in self.items.values()
            if item.response_done and not item.saved and item.started_ms is not None
        ]
        if not finished:  # most mark echoes: skip collecting every queued chunk's item
            return []
        playing = {chunk.item_id for chunk in self.queued}
        return [self._save_item(item) for item in finished if item.item_id not in playing]

    def _save_item(self, item: AgentItem) -> SaveTurn:
        item.saved = True
        text = item.text
        if item.interrupted:
            text = cut_transcript(text, item.heard_ms, item.generated_ms)
        return self._remember(
            SaveTurn("agent", text, item.started_ms or 0, item.interrupted, item.item_id)
        )

    def _remember(self, turn: SaveTurn) -> SaveTurn:
        self.history.append(turn)
        return turn

    def _add_usage(self, usage: dict) -> None:
        input_details = usage.get("input_token_details") or {}
        output_details = usage.get("output_token_details") or {}
        for name, value in (
            ("input_tokens", usage.get("input_tokens")),
            ("output_tokens", usage.get("output_tokens")),
            ("total_tokens", usage.get("total_tokens")),
            ("input_text_tokens", input_details.get("text_tokens")),
            ("input_audio_tokens", input_details.get("audio_tokens")),
            ("cached_tokens", input_details.get("cached_tokens")),
            ("output_text_tokens", output_details.get("text_tokens")),
            ("output_audio_tokens", output_details.get("audio_tokens")),
        ):
            if isinstance(value, int):
                self.usage[name] += value
