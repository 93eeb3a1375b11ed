"""The call bridge: sans-I/O core between a Twilio media stream and an OpenAI Realtime session.

Feed it what arrives (`on_twilio_text`, `on_openai_text`, `on_tool_result`, `on_*_closed`)
and it returns the actions to carry out: frames to send to either side, turns to save,
tools to run, the end of the call. It never blocks, opens a socket or touches the
database, so barge-in, marks, truncation and tool flow are tested as plain logic.

Playback accounting: every audio chunk sent to Twilio is followed by a mark named after a
sequence number. Twilio echoes a mark once the audio before it has played, so the echoes
say exactly how much of each agent item the caller heard; barge-in truncates to that.
"""

import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field

import orjson

from calls.outcomes import USAGE_FIELDS, CompletionReason
from voiceagents.realtime import AgentConfig, greeting_event, session_update_event

log = logging.getLogger(__name__)

ULAW_BYTES_PER_MS = 8
TWILIO_FRAME_MS = 20
BASE64_AUDIO = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
# Errors that are races inherent to the protocol, not faults: the server's own VAD may
# cancel a response a moment before our response.cancel arrives.
BENIGN_OPENAI_ERRORS = {"response_cancel_not_active"}
RECONNECT_INSTRUCTIONS = (
    "The phone line to you dropped for a moment and is back. Apologise in a few words "
    "and carry on the conversation where it left off."
)
RESUME_INSTRUCTIONS = (
    "You were cut off in the middle of your answer. Apologise in a few words and answer "
    "the caller's last question again."
)
# One reconnect after a lost connection; more would hide a persistent outage from staff.
RECONNECTS_AFTER_FAILURE = 1
# Twilio's frames are a few hundred bytes (`start` with its parameters a few KB); anything
# far larger is dropped unread rather than parsed and forwarded.
MAX_TWILIO_MESSAGE_CHARS = 64 * 1024
END_CALL_TOOL_OUTPUT = '{"status":"ok","note":"Say a short goodbye; the call ends after it."}'


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


@dataclass(frozen=True, slots=True)
class ReconnectOpenAI:
    """Open a new Realtime session and hand it the conversation so far."""

    why: str  # "connection_lost" | "session_rollover"


@dataclass(frozen=True, slots=True)
class EndCall:
    reason: str  # calls.models.CompletionReason
    error_code: str = ""
    error_message: str = ""


Action = SendTwilio | SendOpenAI | StreamStarted | SaveTurn | RunTool | ReconnectOpenAI | EndCall


def _json(obj: dict) -> str:
    return orjson.dumps(obj).decode()


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


@dataclass
class PendingToolCall:
    call_id: str
    response_id: str
    output: str | None = None


class CallBridge:
    """State of one call. One instance per call; nothing is shared between calls."""

    def __init__(self, call_sid: str, agent: AgentConfig, stream_token: str = "") -> None:
        self.call_sid = call_sid
        self.agent = agent
        self.stream_token = stream_token
        self.stream_sid: str | None = None
        self.ended = False
        # Stream clock: ms of caller audio received so far, from Twilio's timestamps.
        self.stream_ms = 0
        # When queued agent audio will have finished playing, on the stream clock.
        self.playback_end_ms = 0
        self.response_id: str | None = None
        self.items: dict[str, AgentItem] = {}
        # mark name -> (item_id, item's generated ms once this mark's audio has played)
        self.pending_marks: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self.mark_seq = 0
        self.cancelled_responses: set[str] = set()
        self.caller_started_ms: dict[str, int] = {}
        self.tool_calls: dict[str, PendingToolCall] = {}
        # Set by the end_call tool: hang up once a later response (the goodbye) has played.
        self.hangup_after_playback = False
        self.hangup_requested_in: str | None = None
        self.last_done_response_id: str | None = None
        self.usage: dict[str, int] = dict.fromkeys(USAGE_FIELDS, 0)
        # Caller and agent turns so far, replayed into a new session after a reconnect.
        self.history: list[SaveTurn] = []
        self.reconnects_left = RECONNECTS_AFTER_FAILURE
        self.reconnect_reason = ""
        # A reply the old session was giving (or about to give) when it went away.
        self.reply_lost_in_reconnect = False
        # From the caller's speech_started until the response to their turn is created:
        # their words are in the current session's input buffer only.
        self.caller_turn_open = False
        # OpenAI times caller speech from the start of its session's input audio; a new
        # session starts at this point of the stream clock.
        self.session_audio_start_ms = 0
        self.malformed_twilio = 0
        self.malformed_openai = 0

    # --- Start ------------------------------------------------------------------------
    def on_openai_connected(self) -> list[Action]:
        return [SendOpenAI(_json(session_update_event(self.agent)))]

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
            return self._end(CompletionReason.CALLER_HANGUP)
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
        self.stream_ms = timestamp_ms + TWILIO_FRAME_MS
        return [SendOpenAI('{"type":"input_audio_buffer.append","audio":"' + payload + '"}')]

    def _twilio_mark(self, msg: dict) -> list[Action]:
        try:
            name = msg["mark"]["name"]
        except (KeyError, TypeError):
            return self._malformed_twilio("mark without name")
        if not isinstance(name, str):
            return self._malformed_twilio("mark name is not a string")
        played = self.pending_marks.pop(name, None)
        if played is None:
            return []  # a mark dropped by `clear`, echoed at once: its audio was not heard
        item_id, heard_ms = played
        item = self.items.get(item_id)
        if item is not None and not item.interrupted:
            item.heard_ms = heard_ms
        actions = self._save_finished_items()
        if self.hangup_after_playback and self._agent_done_speaking():
            actions += self._end(CompletionReason.AGENT_HANGUP)
        return actions

    def _twilio_dtmf(self, msg: dict) -> list[Action]:
        try:
            digit = str(msg["dtmf"]["digit"])
        except (KeyError, TypeError):
            return self._malformed_twilio("dtmf without digit")
        note = f"[caller pressed {digit}]"
        item = {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": note}],
        }
        return [
            SendOpenAI(_json({"type": "conversation.item.create", "item": item})),
            self._remember(SaveTurn("caller", note, self.stream_ms)),
        ]

    def _malformed_twilio(self, why: str) -> list[Action]:
        self.malformed_twilio += 1
        # Log the first few and then sparsely: a broken peer must not flood the log.
        if self.malformed_twilio <= 5 or self.malformed_twilio % 500 == 0:
            log.error("call %s: dropped malformed Twilio frame (%s)", self.call_sid, why)
        return []

    def on_twilio_closed(self) -> list[Action]:
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
        if self.ended:
            return []
        try:
            event = orjson.loads(raw)
            kind = event["type"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.malformed_openai += 1
            log.error("call %s: ignored malformed OpenAI event", self.call_sid)
            return []
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

    def _audio_delta(self, event: dict) -> list[Action]:
        response_id = event["response_id"]
        if response_id in self.cancelled_responses or self.stream_sid is None:
            return []  # audio of a response the caller interrupted: never play it
        item = self._item(event["item_id"], response_id)
        delta = event["delta"]
        chunk_ms = base64_audio_bytes(delta) // ULAW_BYTES_PER_MS
        chunk_start_ms = max(self.stream_ms, self.playback_end_ms)
        if item.started_ms is None:
            item.started_ms = chunk_start_ms
        item.generated_bytes += base64_audio_bytes(delta)
        item.generated_ms = item.generated_bytes // ULAW_BYTES_PER_MS
        self.playback_end_ms = chunk_start_ms + chunk_ms
        self.mark_seq += 1
        mark_name = str(self.mark_seq)
        self.pending_marks[mark_name] = (item.item_id, item.generated_ms)
        stream_sid = self.stream_sid
        return [
            SendTwilio(
                _json({"event": "media", "streamSid": stream_sid, "media": {"payload": delta}})
            ),
            SendTwilio(
                _json({"event": "mark", "streamSid": stream_sid, "mark": {"name": mark_name}})
            ),
        ]

    def _speech_started(self, event: dict) -> list[Action]:
        audio_start_ms = event.get("audio_start_ms")
        self.caller_started_ms[event["item_id"]] = (
            self.session_audio_start_ms + int(audio_start_ms)
            if audio_start_ms is not None
            else self.stream_ms
        )
        self.caller_turn_open = True
        if not self.agent.interrupt_response:
            return []
        return self._barge_in()

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
        if self.pending_marks and self.stream_sid is not None:
            actions.insert(0, SendTwilio(_json({"event": "clear", "streamSid": self.stream_sid})))
            unheard = OrderedDict.fromkeys(item_id for item_id, _ in self.pending_marks.values())
            self.pending_marks.clear()
            self.playback_end_ms = self.stream_ms
            for item_id in unheard:
                item = self.items[item_id]
                item.interrupted = True
                truncate = {
                    "type": "conversation.item.truncate",
                    "item_id": item_id,
                    "content_index": 0,
                    "audio_end_ms": min(item.heard_ms, item.generated_ms),
                }
                actions.append(SendOpenAI(_json(truncate)))
        actions += self._save_finished_items()
        if self.hangup_after_playback and actions:
            # The caller spoke over the goodbye; the agent had already decided to hang up.
            actions += self._end(CompletionReason.AGENT_HANGUP)
        return actions

    def _response_created(self, event: dict) -> list[Action]:
        self.response_id = event["response"]["id"]
        self.caller_turn_open = False
        return []

    def _output_item_added(self, event: dict) -> list[Action]:
        item = event["item"]
        if item.get("type") == "message":
            self._item(item["id"], event["response_id"])
        return []

    def _transcript_delta(self, event: dict) -> list[Action]:
        self._item(event["item_id"], event["response_id"]).transcript_parts.append(event["delta"])
        return []

    def _transcript_done(self, event: dict) -> list[Action]:
        self._item(event["item_id"], event["response_id"]).transcript = event["transcript"]
        return []

    def _function_call_done(self, event: dict) -> list[Action]:
        call_id, name = event["call_id"], event["name"]
        response_id = event["response_id"]
        self.tool_calls[call_id] = PendingToolCall(call_id, response_id)
        actions: list[Action] = [SaveTurn("tool", f"{name}({event['arguments']})", self.stream_ms)]
        tool = self.agent.tool(name)
        if tool is None:
            return actions + self.on_tool_result(call_id, _json({"error": f"unknown tool {name}"}))
        if tool.kind == "end_call":
            self.hangup_after_playback = True
            self.hangup_requested_in = response_id
            return actions + self.on_tool_result(call_id, END_CALL_TOOL_OUTPUT)
        return [*actions, RunTool(call_id, name, event["arguments"], tool.url)]

    def on_tool_result(self, call_id: str, output: str) -> list[Action]:
        """A tool finished: hand its output to the model, and ask for the next response
        once every tool call of the response that asked is answered."""
        pending = self.tool_calls.get(call_id)
        if pending is None or pending.output is not None or self.ended:
            return []
        pending.output = output
        item = {"type": "function_call_output", "call_id": call_id, "output": output}
        actions: list[Action] = [
            SendOpenAI(_json({"type": "conversation.item.create", "item": item}))
        ]
        return actions + self._respond_after_tools()

    def _respond_after_tools(self) -> list[Action]:
        if self.response_id is not None or not self.tool_calls:
            return []  # wait for response.done: a second response.create would be refused
        if any(p.output is None for p in self.tool_calls.values()):
            return []
        if any(p.response_id in self.cancelled_responses for p in self.tool_calls.values()):
            self.tool_calls.clear()  # the caller spoke over it; their turn drives the reply
            return []
        self.tool_calls.clear()
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
        actions = self._save_finished_items() + self._respond_after_tools()
        if response.get("status") == "failed":
            error = (response.get("status_details") or {}).get("error") or {}
            return actions + self._end(
                CompletionReason.OPENAI_ERROR,
                error.get("code") or "response_failed",
                error.get("message", ""),
            )
        if self.hangup_after_playback and self._agent_done_speaking():
            actions += self._end(CompletionReason.AGENT_HANGUP)
        return actions

    def _caller_transcript(self, event: dict) -> list[Action]:
        item_id = event["item_id"]
        started_ms = self.caller_started_ms.pop(item_id, self.stream_ms)
        return [
            self._remember(SaveTurn("caller", event["transcript"], started_ms, item_id=item_id))
        ]

    def _caller_transcript_failed(self, event: dict) -> list[Action]:
        item_id = event["item_id"]
        started_ms = self.caller_started_ms.pop(item_id, self.stream_ms)
        return [
            self._remember(SaveTurn("caller", "(not transcribed)", started_ms, item_id=item_id))
        ]

    def _error(self, event: dict) -> list[Action]:
        error = event.get("error") or {}
        code = error.get("code") or error.get("type") or "unknown"
        if code in BENIGN_OPENAI_ERRORS:
            return []
        if code == "session_expired" and self.stream_sid is not None:
            log.info("call %s: OpenAI session expired; rolling over", self.call_sid)
            return self._reconnect("session_rollover")
        log.error("call %s: OpenAI error %s: %s", self.call_sid, code, error.get("message"))
        return self._end(CompletionReason.OPENAI_ERROR, code, error.get("message") or "")

    _openai_handlers = {
        "response.output_audio.delta": _audio_delta,
        "input_audio_buffer.speech_started": _speech_started,
        "response.created": _response_created,
        "response.output_item.added": _output_item_added,
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
        """A quiet moment to move to a new session: nobody mid-sentence, no tool pending."""
        return (
            not self.ended
            and self.stream_sid is not None
            and self.response_id is None
            and not self.pending_marks
            and not self.tool_calls
            and not self.caller_turn_open
        )

    def roll_over(self) -> list[Action]:
        return self._reconnect("session_rollover")

    def _reconnect(self, why: str) -> list[Action]:
        # Whatever the old session was saying is lost with it; audio already sent to
        # Twilio still plays and its marks still count. The new session is asked to answer
        # again, or the caller would wait in silence for a reply that never comes.
        self.reply_lost_in_reconnect = (
            self.response_id is not None or bool(self.tool_calls) or self.caller_turn_open
        )
        if self.response_id is not None:
            self.cancelled_responses.add(self.response_id)
            self.response_id = None
        self.tool_calls.clear()
        self.caller_turn_open = False
        # Caller audio from here on goes to the new session (queued while it opens).
        self.session_audio_start_ms = self.stream_ms
        self.reconnect_reason = why
        return [ReconnectOpenAI(why)]

    def on_openai_reconnected(self) -> list[Action]:
        """Configure the new session and replay the conversation, in spoken order."""
        actions: list[Action] = [SendOpenAI(_json(session_update_event(self.agent)))]
        for turn in sorted(self.history, key=lambda t: t.started_ms):
            if turn.speaker == "caller":
                item = {
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": turn.text}],
                }
            else:
                item = {
                    "type": "message",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": turn.text}],
                }
            actions.append(SendOpenAI(_json({"type": "conversation.item.create", "item": item})))
        if self.reconnect_reason == "connection_lost":
            instructions = RECONNECT_INSTRUCTIONS
        elif self.reply_lost_in_reconnect:
            instructions = RESUME_INSTRUCTIONS
        else:
            return actions  # a quiet moment: the caller speaks next
        create = {"type": "response.create", "response": {"instructions": instructions}}
        actions.append(SendOpenAI(_json(create)))
        return actions

    def on_staff_hangup(self) -> list[Action]:
        return self._end(CompletionReason.STAFF_HANGUP)

    def on_openai_connect_failed(self, detail: str) -> list[Action]:
        return self._end(CompletionReason.OPENAI_CONNECTION_FAILED, "connect_failed", detail)

    # --- End --------------------------------------------------------------------------
    def finish(self) -> list[Action]:
        """Turns still unsaved when the call ends, cut to what the caller heard."""
        actions: list[Action] = []
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
        return [EndCall(reason, error_code, error_message)]

    # --- Helpers ----------------------------------------------------------------------
    def _item(self, item_id: str, response_id: str) -> AgentItem:
        item = self.items.get(item_id)
        if item is None:
            item = self.items[item_id] = AgentItem(item_id, response_id)
        return item

    def _agent_done_speaking(self) -> bool:
        """True once the goodbye that followed end_call was generated and played."""
        return (
            self.response_id is None
            and not self.pending_marks
            and self.last_done_response_id != self.hangup_requested_in
        )

    def _save_finished_items(self) -> list[Action]:
        """Save agent turns that are complete: generated in full and played (or cut)."""
        finished = [
            item
            for item in self.items.values()
            if item.response_done and not item.saved and item.started_ms is not None
        ]
        if not finished:  # most mark echoes: skip collecting every queued mark's item
            return []
        playing = {item_id for item_id, _ in self.pending_marks.values()}
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
