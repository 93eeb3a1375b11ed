"""OpenAI Realtime (GA) client side: the session configuration built from an Agent,
the WebSocket URL, and the connection itself.

The agent is copied into a plain `AgentConfig` once per call so the call bridge never
touches the ORM on the hot path.
"""

import dataclasses
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit, urlunsplit

import websockets

from voiceagents.realtime_socket import RealtimeConnection

# Phone audio is G.711 µ-law at 8 kHz: Twilio sends and plays it, and the Realtime API
# takes and produces it, so audio passes through without being decoded.
TELEPHONE_AUDIO_FORMAT = {"type": "audio/pcmu"}


@dataclass(frozen=True)
class AudioFormat:
    """The audio a call's transport carries, passed through to the Realtime API as is."""

    realtime: dict  # the session's audio format, both ways
    bytes_per_ms: int


PHONE_AUDIO = AudioFormat(TELEPHONE_AUDIO_FORMAT, 8)  # Twilio: µ-law, 8 kHz
BROWSER_AUDIO = AudioFormat({"type": "audio/pcm", "rate": 24000}, 48)  # 16-bit, 24 kHz


@dataclass(frozen=True)
class ToolConfig:
    name: str
    kind: str  # voiceagents.models.Tool.Kind
    definition: dict
    url: str = ""
    # HTTP tools: the stored headers, decrypted for this call, and the signing secret.
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    signing_secret: str = field(default="", repr=False)
    unreadable: str = ""  # why the stored headers could not be decrypted, if they could not
    transfer_to: str = ""  # transfer tools: the number or SIP address
    method: str = "POST"
    timeout_s: float | None = None  # None: HTTP_TOOL_TIMEOUT_S

    @classmethod
    def from_tool(cls, tool) -> "ToolConfig":
        from voiceagents.secret_box import SecretUnreadable

        try:
            headers = tuple((h.name, h.value()) for h in tool.headers.all())
            unreadable = ""
        except SecretUnreadable as exc:
            headers, unreadable = (), str(exc)
        return cls(
            name=tool.name,
            kind=tool.kind,
            definition=tool.realtime_definition(),
            url=tool.url,
            headers=headers,
            signing_secret=tool.signing_secret,
            unreadable=unreadable,
            transfer_to=tool.transfer_to,
            method=tool.method,
            timeout_s=tool.timeout_s,
        )


BUILTIN_END_CALL = ToolConfig(
    name="end_call",
    kind="end_call",
    definition={
        "type": "function",
        "name": "end_call",
        "description": "Hang up the phone. Use it once the caller has nothing more to ask "
        "and you have said goodbye; the call ends after your goodbye has played.",
        "parameters": {"type": "object", "properties": {}},
    },
)


BUILTIN_TRANSFER_CALL = ToolConfig(
    name="transfer_call",
    kind="transfer_call",
    definition={
        "type": "function",
        "name": "transfer_call",
        "description": "Put the caller through to a person, when they ask for one or you "
        "cannot help. Their call is handed over after you tell them.",
        "parameters": {
            "type": "object",
            "properties": {"reason": {"type": "string", "description": "Why, in a few words."}},
        },
    },
)


@dataclass(frozen=True)
class AgentConfig:
    name: str
    model: str
    voice: str
    instructions: str
    greeting: str
    turn_detection: str
    vad_threshold: float = 0.5
    vad_prefix_padding_ms: int = 300
    vad_silence_duration_ms: int = 500
    semantic_eagerness: str = "auto"
    interrupt_response: bool = True
    noise_reduction: str = ""
    input_transcription_model: str = ""
    transcription_keywords: tuple[str, ...] = ()
    transcription_languages: tuple[str, ...] = ()
    speed: float = 1.0
    tools: tuple[ToolConfig, ...] = field(default_factory=tuple)
    reasoning_effort: str = ""
    idle_timeout_ms: int | None = None
    max_call_duration_s: int | None = None
    audio: AudioFormat = PHONE_AUDIO
    dtmf_to_model: bool = True

    @classmethod
    def from_agent(cls, agent) -> "AgentConfig":
        tools = [ToolConfig.from_tool(t) for t in agent.tools.prefetch_related("headers")]
        # The "can hang up" switch governs ending the call: an attached end_call tool only
        # words it differently, and without the switch none is offered.
        hang_up_tools = [t for t in tools if t.kind == "end_call"]
        tools = [t for t in tools if t.kind != "end_call"]
        taken = {t.name for t in tools}
        if agent.end_call_enabled:
            tools += hang_up_tools or ([BUILTIN_END_CALL] if "end_call" not in taken else [])
        if agent.transfer_to and "transfer_call" not in taken:
            tools.append(dataclasses.replace(BUILTIN_TRANSFER_CALL, transfer_to=agent.transfer_to))
        return cls(
            name=agent.name,
            model=agent.model,
            voice=agent.voice,
            instructions=agent.instructions,
            greeting=agent.greeting,
            turn_detection=agent.turn_detection,
            vad_threshold=agent.vad_threshold,
            vad_prefix_padding_ms=agent.vad_prefix_padding_ms,
            vad_silence_duration_ms=agent.vad_silence_duration_ms,
            semantic_eagerness=agent.semantic_eagerness,
            interrupt_response=agent.interrupt_response,
            noise_reduction=agent.noise_reduction,
            input_transcription_model=agent.input_transcription_model,
            transcription_keywords=tuple(agent.transcription_keywords()),
            transcription_languages=tuple(agent.transcription_languages()),
            speed=agent.speed,
            tools=tuple(tools),
            reasoning_effort=agent.reasoning_effort,
            idle_timeout_ms=agent.idle_timeout_ms,
            max_call_duration_s=agent.max_call_duration_s,
            dtmf_to_model=agent.dtmf_to_model,
        )

    def tool(self, name: str) -> ToolConfig | None:
        return next((t for t in self.tools if t.name == name), None)


def turn_detection_config(agent: AgentConfig) -> dict:
    if agent.turn_detection == "semantic_vad":
        return {
            "type": "semantic_vad",
            "eagerness": agent.semantic_eagerness,
            "create_response": True,
            "interrupt_response": agent.interrupt_response,
        }
    server_vad = {
        "type": "server_vad",
        "threshold": agent.vad_threshold,
        "prefix_padding_ms": agent.vad_prefix_padding_ms,
        "silence_duration_ms": agent.vad_silence_duration_ms,
        "create_response": True,
        "interrupt_response": agent.interrupt_response,
    }
    if agent.idle_timeout_ms:
        server_vad["idle_timeout_ms"] = agent.idle_timeout_ms
    return server_vad


def session_update_event(agent: AgentConfig) -> dict:
    """The GA `session.update` that configures a phone session for this agent."""
    audio_input: dict = {
        "format": agent.audio.realtime,
        "noise_reduction": {"type": agent.noise_reduction} if agent.noise_reduction else None,
        "turn_detection": turn_detection_config(agent),
    }
    if agent.input_transcription_model:
        transcription: dict = {"model": agent.input_transcription_model}
        if agent.transcription_keywords:
            transcription["keywords"] = list(agent.transcription_keywords)
        if agent.transcription_languages:
            transcription["languages"] = list(agent.transcription_languages)
        audio_input["transcription"] = transcription
    session: dict = {
        "type": "realtime",
        "model": agent.model,
        "output_modalities": ["audio"],
        "instructions": agent.instructions,
        "audio": {
            "input": audio_input,
            "output": {
                "format": agent.audio.realtime,
                "voice": agent.voice,
                "speed": agent.speed,
            },
        },
    }
    if agent.reasoning_effort:
        session["reasoning"] = {"effort": agent.reasoning_effort}
    if agent.tools:
        session["tools"] = [t.definition for t in agent.tools]
        session["tool_choice"] = "auto"
    return {"type": "session.update", "session": session}


def with_agent_instructions(agent: AgentConfig, instructions: str) -> str:
    """Per-response `instructions` replace the session's for that response, so the
    agent's own come first: persona and language survive greetings and resumes."""
    return f"{agent.instructions}\n\n{instructions}".strip()


def greeting_event(agent: AgentConfig) -> dict:
    """`response.create` that makes the agent speak first."""
    if agent.greeting:
        greet = (
            "You have just answered the phone. Greet the caller by saying exactly: "
            f"{agent.greeting}"
        )
    else:
        greet = "You have just answered the phone. Greet the caller briefly."
    return {
        "type": "response.create",
        "response": {"instructions": with_agent_instructions(agent, greet)},
    }


def realtime_url(base_url: str, model: str) -> str:
    """`https://host/v1` → `wss://host/v1/realtime?model=…` (http → ws for local fakes)."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    return urlunsplit(
        (scheme, parts.netloc, parts.path + "/realtime", urlencode({"model": model}), "")
    )


async def connect(
    base_url: str, api_key: str, model: str, open_timeout: float
) -> RealtimeConnection:
    return await websockets.connect(
        realtime_url(base_url, model),
        additional_headers={"Authorization": f"Bearer {api_key}"},
        open_timeout=open_timeout,
        # Audio deltas are small; a generous limit still guards against a runaway frame.
        max_size=2**22,
        # The OpenAI side keeps the session alive with its own traffic; our pings add load
        # to every call for no benefit on loopback or a healthy link.
        ping_interval=20,
        compression=None,
        create_connection=RealtimeConnection,
    )
