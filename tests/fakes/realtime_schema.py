"""Strict validation of OpenAI Realtime (GA) *client* events, for the fake server.

Field names, enums and nesting follow the generated types in openai-python
(`src/openai/types/realtime/*_param.py`). Everything the types do not list is rejected,
with a hint when the name is the beta protocol's. Error codes and message wording
copy the real API's style ("Unknown parameter: 'session.voice'.").

`find_problems()` returns structured problems (code, param, message) so the server can
answer with a faithful `error` event; `validate_client_event()` returns the messages.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

CLIENT_EVENT_TYPES = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
    "output_audio_buffer.clear",
)

# Beta client event types, named so the error says what happened.
BETA_EVENT_TYPES = {
    "transcription_session.update": "beta only; GA uses session.update with session.type",
    "session.create": "not a client event",
}

VOICES = ("alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar")
AUDIO_FORMAT_TYPES = ("audio/pcm", "audio/pcmu", "audio/pcma")
PCM_RATE = 24000
TOOL_CHOICE_MODES = ("none", "auto", "required")
REASONING_EFFORTS = ("minimal", "low", "medium", "high", "xhigh")
# The named models in openai-python's types (realtime_session_create_request_param.py and
# audio_transcription_param.py, 2026-08). The types also allow any string; the real API
# refuses names it does not serve, and so does this fake.
REALTIME_MODELS = (
    "gpt-realtime",
    "gpt-realtime-1.5",
    "gpt-realtime-2",
    "gpt-realtime-2.1",
    "gpt-realtime-2.1-mini",
    "gpt-realtime-2025-08-28",
    "gpt-4o-realtime-preview",
    "gpt-4o-realtime-preview-2024-10-01",
    "gpt-4o-realtime-preview-2024-12-17",
    "gpt-4o-realtime-preview-2025-06-03",
    "gpt-4o-mini-realtime-preview",
    "gpt-4o-mini-realtime-preview-2024-12-17",
    "gpt-realtime-mini",
    "gpt-realtime-mini-2025-10-06",
    "gpt-realtime-mini-2025-12-15",
    "gpt-audio-1.5",
    "gpt-audio-mini",
    "gpt-audio-mini-2025-10-06",
    "gpt-audio-mini-2025-12-15",
)
# "Configuration for reasoning-capable Realtime models such as gpt-realtime-2."
REASONING_REALTIME_MODELS = ("gpt-realtime-2", "gpt-realtime-2.1", "gpt-realtime-2.1-mini")
TRANSCRIPTION_MODELS = (
    "whisper-1",
    "gpt-transcribe",
    "gpt-live-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe",
    "gpt-4o-transcribe-diarize",
    "gpt-realtime-whisper",
)
# "keywords ... Supported by gpt-transcribe and gpt-live-transcribe" (languages too).
KEYWORD_TRANSCRIPTION_MODELS = ("gpt-transcribe", "gpt-live-transcribe")
TRANSCRIPTION_DELAYS = ("minimal", "low", "medium", "high", "xhigh")
SEMANTIC_EAGERNESS = ("low", "medium", "high", "auto")
NOISE_REDUCTION_TYPES = ("near_field", "far_field")
ITEM_STATUSES = ("completed", "incomplete", "in_progress")
SPEED_MIN, SPEED_MAX = 0.25, 1.5
MAX_OUTPUT_TOKENS_MAX = 4096

SESSION_FIELDS = {
    "type",
    "audio",
    "include",
    "instructions",
    "max_output_tokens",
    "model",
    "output_modalities",
    "parallel_tool_calls",
    "prompt",
    "reasoning",
    "tool_choice",
    "tools",
    "tracing",
    "truncation",
}
BETA_SESSION_FIELDS = {
    "modalities": "session.output_modalities",
    "voice": "session.audio.output.voice",
    "speed": "session.audio.output.speed",
    "input_audio_format": "session.audio.input.format",
    "output_audio_format": "session.audio.output.format",
    "turn_detection": "session.audio.input.turn_detection",
    "input_audio_transcription": "session.audio.input.transcription",
    "input_audio_noise_reduction": "session.audio.input.noise_reduction",
    "max_response_output_tokens": "session.max_output_tokens",
    "temperature": "nothing (removed in GA)",
}
SERVER_VAD_FIELDS = {
    "type",
    "create_response",
    "idle_timeout_ms",
    "interrupt_response",
    "prefix_padding_ms",
    "silence_duration_ms",
    "threshold",
}
SEMANTIC_VAD_FIELDS = {"type", "create_response", "eagerness", "interrupt_response"}
TRANSCRIPTION_FIELDS = {"delay", "keywords", "language", "languages", "model", "prompt"}
FUNCTION_TOOL_FIELDS = {"type", "name", "description", "parameters"}
MCP_TOOL_FIELDS = {
    "type",
    "server_label",
    "allowed_callers",
    "allowed_tools",
    "authorization",
    "connector_id",
    "defer_loading",
    "headers",
    "require_approval",
    "server_description",
    "server_url",
    "tunnel_id",
}
RESPONSE_FIELDS = {
    "audio",
    "conversation",
    "input",
    "instructions",
    "max_output_tokens",
    "metadata",
    "output_modalities",
    "parallel_tool_calls",
    "prompt",
    "reasoning",
    "tool_choice",
    "tools",
}
BETA_RESPONSE_FIELDS = {
    "modalities": "response.output_modalities",
    "voice": "response.audio.output.voice",
    "output_audio_format": "response.audio.output.format",
    "max_response_output_tokens": "response.max_output_tokens",
    "temperature": "nothing (removed in GA)",
}
ITEM_COMMON_FIELDS = {"type", "id", "object", "status"}
# Content part fields allowed per message role (from the *_message_param types).
MESSAGE_CONTENT = {
    "system": {"input_text": {"text"}},
    "user": {
        "input_text": {"text"},
        "input_audio": {"audio", "transcript"},
        "input_image": {"image_url", "detail"},
    },
    "assistant": {"output_text": {"text"}, "output_audio": {"audio", "transcript"}},
}
# The field a content part must carry to mean anything.
CONTENT_REQUIRED = {"input_text": "text", "output_text": "text", "input_image": "image_url"}
BETA_CONTENT_TYPES = {"text": "output_text (assistant) or input_text", "audio": "output_audio"}


@dataclass(frozen=True)
class Problem:
    code: str  # the real API's error code, e.g. "unknown_parameter"
    param: str  # dotted path of the offending field, e.g. "session.audio.output.voice"
    message: str

    def __str__(self) -> str:
        return self.message


def validate_client_event(event: dict) -> list[str]:
    """Every problem with a client event, as messages; empty means valid GA."""
    return [p.message for p in find_problems(event)]


def find_problems(event: Any) -> list[Problem]:
    check = _Checker()
    if not isinstance(event, dict):
        check.wrong_type("", event, "an object")
        return check.problems
    event_type = event.get("type")
    if "type" not in event:
        check.missing("type")
        return check.problems
    if not isinstance(event_type, str):
        check.wrong_type("type", event_type, "a string")
        return check.problems
    validate = _EVENT_VALIDATORS.get(event_type)
    if validate is None:
        hint = BETA_EVENT_TYPES.get(event_type)
        if event_type.startswith(("response.audio", "response.text")):
            hint = "a server event name, and a beta one"
        check.invalid_value("type", event_type, CLIENT_EVENT_TYPES, hint=hint)
        return check.problems
    if "event_id" in event:
        check.string("event_id", event["event_id"])
    validate(check, event)
    return check.problems


# --- the checker: one place for the real API's message wording ------------------------


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _quote_choices(choices: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{c}'" for c in choices]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Checker:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, code: str, param: str, message: str) -> None:
        self.problems.append(Problem(code, param, message))

    def missing(self, param: str) -> None:
        self.add("missing_required_parameter", param, f"Missing required parameter: '{param}'.")

    def wrong_type(self, param: str, value: Any, expected: str) -> None:
        self.add(
            "invalid_type",
            param,
            f"Invalid type for '{param}': expected {expected}, but got {_describe(value)} instead.",
        )

    def invalid_value(
        self, param: str, value: Any, choices: tuple | list, hint: str | None = None
    ) -> None:
        # The real message omits the path ("Invalid value: 'x'. ..."); naming it helps.
        message = (
            f"Invalid value for '{param}': '{value}'. "
            f"Supported values are: {_quote_choices(choices)}."
        )
        if hint:
            message += f" ({hint})"
        self.add("invalid_value", param, message)

    def unknown_fields(
        self, path: str, obj: dict, allowed: set[str], beta: dict[str, str] | None = None
    ) -> None:
        for key in obj:
            if key in allowed:
                continue
            param = f"{path}.{key}" if path else key
            message = f"Unknown parameter: '{param}'."
            if beta and key in beta:
                message += f" (beta name; GA uses {beta[key]})"
            self.add("unknown_parameter", param, message)

    def required(self, path: str, obj: dict, keys: tuple[str, ...]) -> bool:
        ok = True
        for key in keys:
            if key not in obj:
                self.missing(f"{path}.{key}" if path else key)
                ok = False
        return ok

    def object(self, param: str, value: Any, nullable: bool = False) -> dict | None:
        """The value if it is an object; None (after recording a problem) otherwise."""
        if isinstance(value, dict):
            return value
        if not (nullable and value is None):
            self.wrong_type(param, value, "an object")
        return None

    def array(self, param: str, value: Any) -> list | None:
        if isinstance(value, list):
            return value
        self.wrong_type(param, value, "an array")
        return None

    def string(self, param: str, value: Any, non_empty: bool = False) -> bool:
        if not isinstance(value, str):
            self.wrong_type(param, value, "a string")
            return False
        if non_empty and not value:
            self.add(
                "empty_string",
                param,
                f"Invalid '{param}': empty string. Expected a string with minimum length 1, "
                "but got an empty string instead.",
            )
            return False
        return True

    def boolean(self, param: str, value: Any) -> None:
        if not isinstance(value, bool):
            self.wrong_type(param, value, "a boolean")

    def integer(
        self, param: str, value: Any, minimum: int | None = None, maximum: int | None = None
    ) -> None:
        if not _is_int(value):
            self.wrong_type(param, value, "an integer")
        elif minimum is not None and value < minimum:
            self.add(
                "integer_below_min_value",
                param,
                f"Invalid '{param}': integer below minimum value. "
                f"Expected a value >= {minimum}, but got {value} instead.",
            )
        elif maximum is not None and value > maximum:
            self.add(
                "integer_above_max_value",
                param,
                f"Invalid '{param}': integer above maximum value. "
                f"Expected a value <= {maximum}, but got {value} instead.",
            )

    def decimal(self, param: str, value: Any, minimum: float, maximum: float) -> None:
        if not _is_number(value):
            self.wrong_type(param, value, "a decimal")
        elif value < minimum:
            self.add(
                "decimal_below_min_value",
                param,
                f"Invalid '{param}': decimal below minimum value. "
                f"Expected a value >= {minimum}, but got {value} instead.",
            )
        elif value > maximum:
            self.add(
                "decimal_above_max_value",
                param,
                f"Invalid '{param}': decimal above maximum value. "
                f"Expected a value <= {maximum}, but got {value} instead.",
            )

    def enum(self, param: str, value: Any, choices: tuple[str, ...]) -> None:
        if not isinstance(value, str):
            self.wrong_type(param, value, "a string")
        elif value not in choices:
            self.invalid_value(param, value, choices)

    def string_list(self, param: str, value: Any) -> None:
        items = self.array(param, value)
        for i, item in enumerate(items or []):
            self.string(f"{param}[{i}]", item)


# --- shared pieces of the session and response schemas --------------------------------


def _check_audio_format(check: _Checker, path: str, value: Any) -> None:
    fmt = check.object(path, value)
    if fmt is None:
        return
    if not check.required(path, fmt, ("type",)):
        return
    fmt_type = fmt["type"]
    check.enum(f"{path}.type", fmt_type, AUDIO_FORMAT_TYPES)
    if fmt_type == "audio/pcm":
        check.unknown_fields(path, fmt, {"type", "rate"})
        if "rate" in fmt and fmt["rate"] != PCM_RATE:
            if _is_int(fmt["rate"]):
                check.invalid_value(f"{path}.rate", fmt["rate"], [str(PCM_RATE)])
            else:
                check.wrong_type(f"{path}.rate", fmt["rate"], "an integer")
    else:
        check.unknown_fields(path, fmt, {"type"})


def _check_voice(check: _Checker, path: str, value: Any) -> None:
    # Voice is a free string (built-in names or newer ones) or {"id": "voice_..."}.
    if isinstance(value, dict):
        check.unknown_fields(path, value, {"id"})
        if check.required(path, value, ("id",)):
            check.string(f"{path}.id", value["id"], non_empty=True)
    else:
        check.string(path, value, non_empty=True)


def _check_output_modalities(check: _Checker, path: str, value: Any) -> None:
    modalities = check.array(path, value)
    if modalities is None:
        return
    if modalities not in (["audio"], ["text"]):
        check.add(
            "invalid_value",
            path,
            f"Invalid '{path}': expected ['audio'] or ['text'] "
            f"(both at once is not supported), but got {modalities!r} instead.",
        )


def _check_max_output_tokens(check: _Checker, path: str, value: Any) -> None:
    if value == "inf":
        return
    check.integer(path, value, minimum=1, maximum=MAX_OUTPUT_TOKENS_MAX)


def _check_prompt(check: _Checker, path: str, value: Any) -> None:
    prompt = check.object(path, value, nullable=True)
    if prompt is None:
        return
    check.unknown_fields(path, prompt, {"id", "variables", "version"})
    if check.required(path, prompt, ("id",)):
        check.string(f"{path}.id", prompt["id"], non_empty=True)
    if prompt.get("variables") is not None:
        check.object(f"{path}.variables", prompt["variables"])
    if prompt.get("version") is not None:
        check.string(f"{path}.version", prompt["version"])


def _check_reasoning(check: _Checker, path: str, value: Any) -> None:
    reasoning = check.object(path, value)
    if reasoning is None:
        return
    check.unknown_fields(path, reasoning, {"effort"})
    if "effort" in reasoning:
        check.enum(f"{path}.effort", reasoning["effort"], REASONING_EFFORTS)


def _check_tool_choice(check: _Checker, path: str, value: Any) -> None:
    if isinstance(value, str):
        check.enum(path, value, TOOL_CHOICE_MODES)
        return
    choice = check.object(path, value)
    if choice is None or not check.required(path, choice, ("type",)):
        return
    if choice["type"] == "function":
        check.unknown_fields(path, choice, {"type", "name"})
        if check.required(path, choice, ("name",)):
            check.string(f"{path}.name", choice["name"], non_empty=True)
    elif choice["type"] == "mcp":
        check.unknown_fields(path, choice, {"type", "server_label", "name"})
        if check.required(path, choice, ("server_label",)):
            check.string(f"{path}.server_label", choice["server_label"], non_empty=True)
        if choice.get("name") is not None:
            check.string(f"{path}.name", choice["name"])
    else:
        check.invalid_value(f"{path}.type", choice["type"], ("function", "mcp"))


def _check_tools(check: _Checker, path: str, value: Any) -> None:
    tools = check.array(path, value)
    for i, tool in enumerate(tools or []):
        _check_tool(check, f"{path}[{i}]", tool)


# Fields a session and a response both take, with the same shape in each.
SHARED_CONFIG_CHECKS = {
    "max_output_tokens": _check_max_output_tokens,
    "output_modalities": _check_output_modalities,
    "parallel_tool_calls": lambda check, path, value: check.boolean(path, value),
    "prompt": _check_prompt,
    "reasoning": _check_reasoning,
    "tool_choice": _check_tool_choice,
    "tools": _check_tools,
}


def _check_shared_config_fields(check: _Checker, prefix: str, config: dict) -> None:
    for name, check_field in SHARED_CONFIG_CHECKS.items():
        if name in config:
            check_field(check, f"{prefix}.{name}", config[name])


def _check_tool(check: _Checker, path: str, value: Any) -> None:
    tool = check.object(path, value)
    if tool is None:
        return
    tool_type = tool.get("type", "function")
    if tool_type == "mcp":
        check.unknown_fields(path, tool, MCP_TOOL_FIELDS)
        if check.required(path, tool, ("server_label",)):
            check.string(f"{path}.server_label", tool["server_label"], non_empty=True)
        return
    if tool_type != "function":
        check.invalid_value(f"{path}.type", tool_type, ("function", "mcp"))
        return
    check.unknown_fields(path, tool, FUNCTION_TOOL_FIELDS)
    # The types mark `name` optional, but a nameless function can never be called.
    if check.required(path, tool, ("name",)):
        check.string(f"{path}.name", tool["name"], non_empty=True)
    if "description" in tool:
        check.string(f"{path}.description", tool["description"])
    if "parameters" in tool:
        check.object(f"{path}.parameters", tool["parameters"])


# --- session.update -------------------------------------------------------------------


def _check_session_update(check: _Checker, event: dict) -> None:
    check.unknown_fields("", event, {"type", "event_id", "session"})
    if not check.required("", event, ("session",)):
        return
    session = check.object("session", event["session"])
    if session is None:
        return
    check.unknown_fields("session", session, SESSION_FIELDS, beta=BETA_SESSION_FIELDS)
    if "type" not in session:
        check.missing("session.type")
    elif session["type"] != "realtime":
        hint = "this server speaks realtime sessions only" if session["type"] else None
        check.invalid_value("session.type", session["type"], ("realtime",), hint=hint)
    _check_session_fields(check, session)


def _check_session_fields(check: _Checker, session: dict) -> None:
    if "audio" in session:
        _check_session_audio(check, "session.audio", session["audio"])
    if "include" in session:
        items = check.array("session.include", session["include"])
        for i, item in enumerate(items or []):
            check.enum(f"session.include[{i}]", item, ("item.input_audio_transcription.logprobs",))
    if "instructions" in session:
        check.string("session.instructions", session["instructions"])
    _check_shared_config_fields(check, "session", session)
    if "model" in session:
        check.enum("session.model", session["model"], REALTIME_MODELS)
        if "reasoning" in session and session["model"] not in REASONING_REALTIME_MODELS:
            check.invalid_value(
                "session.reasoning", session["reasoning"], (), hint="reasoning models only"
            )
    if "tracing" in session:
        _check_tracing(check, "session.tracing", session["tracing"])
    if "truncation" in session:
        _check_truncation(check, "session.truncation", session["truncation"])


def _check_session_audio(check: _Checker, path: str, value: Any) -> None:
    audio = check.object(path, value)
    if audio is None:
        return
    check.unknown_fields(path, audio, {"input", "output"})
    if "input" in audio:
        _check_audio_input(check, f"{path}.input", audio["input"])
    if "output" in audio:
        _check_audio_output(check, f"{path}.output", audio["output"])


def _check_audio_input(check: _Checker, path: str, value: Any) -> None:
    audio_input = check.object(path, value)
    if audio_input is None:
        return
    check.unknown_fields(
        path, audio_input, {"format", "noise_reduction", "transcription", "turn_detection"}
    )
    if "format" in audio_input:
        _check_audio_format(check, f"{path}.format", audio_input["format"])
    if "noise_reduction" in audio_input:
        _check_noise_reduction(check, f"{path}.noise_reduction", audio_input["noise_reduction"])
    if "transcription" in audio_input:
        _check_transcription(check, f"{path}.transcription", audio_input["transcription"])
    if "turn_detection" in audio_input:
        _check_turn_detection(check, f"{path}.turn_detection", audio_input["turn_detection"])


def _check_noise_reduction(check: _Checker, path: str, value: Any) -> None:
    noise_reduction = check.object(path, value, nullable=True)
    if noise_reduction is None:
        return
    check.unknown_fields(path, noise_reduction, {"type"})
    if "type" in noise_reduction:
        check.enum(f"{path}.type", noise_reduction["type"], NOISE_REDUCTION_TYPES)


def _check_transcription(check: _Checker, path: str, value: Any) -> None:
    transcription = check.object(path, value, nullable=True)
    if transcription is None:
        return
    check.unknown_fields(path, transcription, TRANSCRIPTION_FIELDS)
    if "model" in transcription:
        check.enum(f"{path}.model", transcription["model"], TRANSCRIPTION_MODELS)
        for key in ("keywords", "languages"):
            if key in transcription and transcription["model"] not in KEYWORD_TRANSCRIPTION_MODELS:
                check.invalid_value(
                    f"{path}.{key}",
                    transcription[key],
                    (),
                    hint="only gpt-transcribe and gpt-live-transcribe take it",
                )
    if "delay" in transcription:
        check.enum(f"{path}.delay", transcription["delay"], TRANSCRIPTION_DELAYS)
    for key in ("language", "prompt"):
        if key in transcription:
            check.string(f"{path}.{key}", transcription[key])
    for key in ("keywords", "languages"):
        if key in transcription:
            check.string_list(f"{path}.{key}", transcription[key])


def _check_turn_detection(check: _Checker, path: str, value: Any) -> None:
    turn_detection = check.object(path, value, nullable=True)
    if turn_detection is None:
        return
    if not check.required(path, turn_detection, ("type",)):
        return
    vad_type = turn_detection["type"]
    if vad_type == "server_vad":
        check.unknown_fields(path, turn_detection, SERVER_VAD_FIELDS)
        _check_server_vad(check, path, turn_detection)
    elif vad_type == "semantic_vad":
        check.unknown_fields(path, turn_detection, SEMANTIC_VAD_FIELDS)
        if "eagerness" in turn_detection:
            check.enum(f"{path}.eagerness", turn_detection["eagerness"], SEMANTIC_EAGERNESS)
    else:
        check.invalid_value(f"{path}.type", vad_type, ("server_vad", "semantic_vad"))
        return
    for key in ("create_response", "interrupt_response"):
        if key in turn_detection:
            check.boolean(f"{path}.{key}", turn_detection[key])


def _check_server_vad(check: _Checker, path: str, vad: dict) -> None:
    if "threshold" in vad:
        check.decimal(f"{path}.threshold", vad["threshold"], 0.0, 1.0)
    for key in ("prefix_padding_ms", "silence_duration_ms"):
        if key in vad:
            check.integer(f"{path}.{key}", vad[key], minimum=0)
    if vad.get("idle_timeout_ms") is not None:
        check.integer(f"{path}.idle_timeout_ms", vad["idle_timeout_ms"], minimum=0)


def _check_audio_output(check: _Checker, path: str, value: Any) -> None:
    audio_output = check.object(path, value)
    if audio_output is None:
        return
    check.unknown_fields(path, audio_output, {"format", "speed", "voice"})
    if "format" in audio_output:
        _check_audio_format(check, f"{path}.format", audio_output["format"])
    if "speed" in audio_output:
        check.decimal(f"{path}.speed", audio_output["speed"], SPEED_MIN, SPEED_MAX)
    if "voice" in audio_output:
        _check_voice(check, f"{path}.voice", audio_output["voice"])


def _check_tracing(check: _Checker, path: str, value: Any) -> None:
    if value is None or value == "auto":
        return
    if isinstance(value, str):
        check.invalid_value(path, value, ("auto",))
        return
    tracing = check.object(path, value)
    if tracing is None:
        return
    check.unknown_fields(path, tracing, {"group_id", "metadata", "workflow_name"})
    for key in ("group_id", "workflow_name"):
        if key in tracing:
            check.string(f"{path}.{key}", tracing[key])


def _check_truncation(check: _Checker, path: str, value: Any) -> None:
    if isinstance(value, str):
        check.enum(path, value, ("auto", "disabled"))
        return
    truncation = check.object(path, value)
    if truncation is None:
        return
    check.unknown_fields(path, truncation, {"type", "retention_ratio", "token_limits"})
    if not check.required(path, truncation, ("type", "retention_ratio")):
        return
    check.enum(f"{path}.type", truncation["type"], ("retention_ratio",))
    check.decimal(f"{path}.retention_ratio", truncation["retention_ratio"], 0.0, 1.0)
    if "token_limits" in truncation:
        limits = check.object(f"{path}.token_limits", truncation["token_limits"])
        if limits is not None:
            check.unknown_fields(f"{path}.token_limits", limits, {"post_instructions"})
            if "post_instructions" in limits:
                check.integer(
                    f"{path}.token_limits.post_instructions", limits["post_instructions"], 1
                )


# --- input audio buffer, output audio buffer ------------------------------------------


def decode_base64_strict(text: str) -> bytes | None:
    """The bytes, or None when `text` is not canonical base64 (no stray characters)."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _is_base64(text: str) -> bool:
    return decode_base64_strict(text) is not None


def _check_append(check: _Checker, event: dict) -> None:
    check.unknown_fields("", event, {"type", "event_id", "audio"})
    if not check.required("", event, ("audio",)):
        return
    if check.string("audio", event["audio"]) and not _is_base64(event["audio"]):
        check.add(
            "invalid_value",
            "audio",
            "Invalid 'audio'. Expected base64-encoded audio bytes, "
            "but the value could not be decoded.",
        )


def _check_bare_event(check: _Checker, event: dict) -> None:
    check.unknown_fields("", event, {"type", "event_id"})


# --- conversation items ---------------------------------------------------------------


def _check_item(check: _Checker, path: str, value: Any) -> None:
    item = check.object(path, value)
    if item is None or not check.required(path, item, ("type",)):
        return
    item_type = item["type"]
    if "id" in item:
        check.string(f"{path}.id", item["id"], non_empty=True)
    if "object" in item:
        check.enum(f"{path}.object", item["object"], ("realtime.item",))
    if "status" in item:
        check.enum(f"{path}.status", item["status"], ITEM_STATUSES)
    if item_type == "message":
        _check_message_item(check, path, item)
    elif item_type == "function_call":
        check.unknown_fields(path, item, ITEM_COMMON_FIELDS | {"arguments", "name", "call_id"})
        if check.required(path, item, ("name", "arguments")):
            check.string(f"{path}.name", item["name"], non_empty=True)
            check.string(f"{path}.arguments", item["arguments"])
        if "call_id" in item:
            check.string(f"{path}.call_id", item["call_id"], non_empty=True)
    elif item_type == "function_call_output":
        check.unknown_fields(path, item, ITEM_COMMON_FIELDS | {"call_id", "output"})
        if check.required(path, item, ("call_id", "output")):
            check.string(f"{path}.call_id", item["call_id"], non_empty=True)
            check.string(f"{path}.output", item["output"])
    elif item_type == "mcp_approval_response":
        check.unknown_fields(path, item, {"type", "id", "approval_request_id", "approve", "reason"})
        if check.required(path, item, ("id", "approval_request_id", "approve")):
            check.boolean(f"{path}.approve", item["approve"])
    else:
        check.invalid_value(
            f"{path}.type",
            item_type,
            ("message", "function_call", "function_call_output", "mcp_approval_response"),
            hint="MCP list/call/request items are not modelled by this fake",
        )


def _check_message_item(check: _Checker, path: str, item: dict) -> None:
    check.unknown_fields(path, item, ITEM_COMMON_FIELDS | {"role", "content"})
    if not check.required(path, item, ("role", "content")):
        return
    role = item["role"]
    if role not in MESSAGE_CONTENT:
        check.invalid_value(f"{path}.role", role, tuple(MESSAGE_CONTENT))
        return
    parts = check.array(f"{path}.content", item["content"])
    for i, part in enumerate(parts or []):
        _check_content_part(check, f"{path}.content[{i}]", role, part)


def _check_content_part(check: _Checker, path: str, role: str, value: Any) -> None:
    part = check.object(path, value)
    if part is None or not check.required(path, part, ("type",)):
        return
    allowed = MESSAGE_CONTENT[role]
    part_type = part["type"]
    if part_type not in allowed:
        check.invalid_value(
            f"{path}.type", part_type, tuple(allowed), hint=BETA_CONTENT_TYPES.get(part_type)
        )
        return
    check.unknown_fields(path, part, {"type"} | allowed[part_type])
    required = CONTENT_REQUIRED.get(part_type)
    if required and check.required(path, part, (required,)):
        check.string(f"{path}.{required}", part[required])
    for key in ("text", "transcript", "image_url"):
        if key in part and key != required:
            check.string(f"{path}.{key}", part[key])
    audio = part.get("audio")
    if audio is not None and check.string(f"{path}.audio", audio) and not _is_base64(audio):
        check.add("invalid_value", f"{path}.audio", f"Invalid '{path}.audio': not base64.")
    if "detail" in part:
        check.enum(f"{path}.detail", part["detail"], ("auto", "low", "high"))


def _check_item_create(check: _Checker, event: dict) -> None:
    check.unknown_fields("", event, {"type", "event_id", "item", "previous_item_id"})
    if "previous_item_id" in event:
        check.string("previous_item_id", event["previous_item_id"], non_empty=True)
    if check.required("", event, ("item",)):
        _check_item(check, "item", event["item"])


def _check_item_truncate(check: _Checker, event: dict) -> None:
    fields = {"type", "event_id", "item_id", "content_index", "audio_end_ms"}
    check.unknown_fields("", event, fields)
    check.required("", event, ("item_id", "content_index", "audio_end_ms"))
    if "item_id" in event:
        check.string("item_id", event["item_id"], non_empty=True)
    if "content_index" in event:
        check.integer("content_index", event["content_index"], minimum=0)
    if "audio_end_ms" in event:
        check.integer("audio_end_ms", event["audio_end_ms"], minimum=0)


def _check_item_by_id(check: _Checker, event: dict) -> None:
    check.unknown_fields("", event, {"type", "event_id", "item_id"})
    if check.required("", event, ("item_id",)):
        check.string("item_id", event["item_id"], non_empty=True)


# --- responses ------------------------------------------------------------------------


def _check_response_create(check: _Checker, event: dict) -> None:
    check.unknown_fields("", event, {"type", "event_id", "response"})
    if "response" not in event:
        return
    response = check.object("response", event["response"])
    if response is None:
        return
    check.unknown_fields("response", response, RESPONSE_FIELDS, beta=BETA_RESPONSE_FIELDS)
    if "audio" in response:
        _check_response_audio(check, "response.audio", response["audio"])
    if "conversation" in response:
        # The types allow any string (future conversation ids); the API knows these two.
        check.enum("response.conversation", response["conversation"], ("auto", "none"))
    if "input" in response:
        items = check.array("response.input", response["input"])
        for i, item in enumerate(items or []):
            _check_item(check, f"response.input[{i}]", item)
    if "instructions" in response:
        check.string("response.instructions", response["instructions"])
    _check_shared_config_fields(check, "response", response)
    if "metadata" in response:
        _check_metadata(check, "response.metadata", response["metadata"])


def _check_response_audio(check: _Checker, path: str, value: Any) -> None:
    audio = check.object(path, value)
    if audio is None:
        return
    check.unknown_fields(path, audio, {"output"})
    if "output" not in audio:
        return
    output = check.object(f"{path}.output", audio["output"])
    if output is None:
        return
    check.unknown_fields(f"{path}.output", output, {"format", "voice"})
    if "format" in output:
        _check_audio_format(check, f"{path}.output.format", output["format"])
    if "voice" in output:
        _check_voice(check, f"{path}.output.voice", output["voice"])


def _check_metadata(check: _Checker, path: str, value: Any) -> None:
    metadata = check.object(path, value, nullable=True)
    if metadata is None:
        return
    if len(metadata) > 16:
        check.add("invalid_value", path, f"Invalid '{path}': at most 16 keys are allowed.")
    for key, item in metadata.items():
        if len(key) > 64:
            check.add("invalid_value", f"{path}.{key}", f"Invalid '{path}': key over 64 chars.")
        if check.string(f"{path}.{key}", item) and len(item) > 512:
            check.add("invalid_value", f"{path}.{key}", f"Invalid '{path}.{key}': over 512 chars.")


def _check_response_cancel(check: _Checker, event: dict) -> None:
    check.unknown_fields("", event, {"type", "event_id", "response_id"})
    if "response_id" in event:
        check.string("response_id", event["response_id"], non_empty=True)


_EVENT_VALIDATORS = {
    "session.update": _check_session_update,
    "input_audio_buffer.append": _check_append,
    "input_audio_buffer.commit": _check_bare_event,
    "input_audio_buffer.clear": _check_bare_event,
    "output_audio_buffer.clear": _check_bare_event,
    "conversation.item.create": _check_item_create,
    "conversation.item.truncate": _check_item_truncate,
    "conversation.item.delete": _check_item_by_id,
    "conversation.item.retrieve": _check_item_by_id,
    "response.create": _check_response_create,
    "response.cancel": _check_response_cancel,
}
assert set(_EVENT_VALIDATORS) == set(CLIENT_EVENT_TYPES)
