"""Who is the agent and who is the caller: the recording's channels decide, the language
model names the caller and breaks ties. Pure logic over segments."""

import re
from collections import defaultdict
from dataclasses import dataclass, field

from transcripts.audio import AGENT_CHANNEL, CALLER_CHANNEL
from transcripts.formatting import clock

IDENTIFY_SCHEMA_NAME = "speaker_identification"
IDENTIFY_INSTRUCTIONS = (
    "You read the transcript of a phone call between an AI phone agent and a caller. "
    "Speakers are labelled by a diarization model. Say which label is the agent (it "
    "answered the phone and follows the agent instructions given) and the caller's first "
    "name if the caller says it; null if the caller never gives a name. Never guess a "
    "name from the agent's words alone."
)
TRANSCRIPT_CHARS_FOR_IDENTIFICATION = 12_000  # the opening of a call is enough to tell
# A label belongs to a channel when at least this share of its channel-clear speech is there.
CHANNEL_MAJORITY = 0.6


@dataclass
class ModelAnswer:
    agent_speaker: str | None
    caller_name: str | None


@dataclass
class SpeakerDecision:
    agent_label: str = ""
    method: str = "none"  # channel | model | none
    roles: dict[str, str] = field(default_factory=dict)  # label -> agent | caller
    disagreement: str = ""


def identification_request(
    segments: list[dict], agent_name: str, agent_instructions: str
) -> tuple[str, dict]:
    """The user text and strict JSON schema of the identification call."""
    labels = sorted({s["label"] for s in segments})
    lines, used = [], 0
    for segment in segments:
        line = f"[{clock(segment['start'], tenths=True)}] {segment['label']}: {segment['text']}"
        used += len(line) + 1
        if used > TRANSCRIPT_CHARS_FOR_IDENTIFICATION:
            lines.append("[…the rest of the call is left out…]")
            break
        lines.append(line)
    user_text = (
        f"Agent name: {agent_name}\n"
        f"Agent instructions:\n{agent_instructions[:4000]}\n\n"
        f"Speaker labels: {', '.join(labels)}\n\nTranscript:\n" + "\n".join(lines)
    )
    schema = {
        "type": "object",
        "properties": {
            "agent_speaker": {"type": "string", "enum": labels or ["A"]},
            "caller_name": {
                "type": ["string", "null"],
                "description": "The caller's first name as they said it, or null.",
            },
        },
        "required": ["agent_speaker", "caller_name"],
        "additionalProperties": False,
    }
    return user_text, schema


def clean_first_name(raw: object) -> str | None:
    """A first name fit to label transcript lines, or None."""
    if not isinstance(raw, str):
        return None
    words = re.findall(r"[^\W\d_](?:[^\W\d_]|['’-](?=[^\W\d_]))*", raw.strip())
    if not words or len(words[0]) > 40:
        return None
    return words[0][:1].upper() + words[0][1:]


def label_channels(segments: list[dict]) -> dict[str, int]:
    """Each label's channel, where its channel-clear speech is mostly on one side."""
    seconds: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for segment in segments:
        if segment.get("channel"):
            seconds[segment["label"]][segment["channel"]] += segment["end"] - segment["start"]
    decided = {}
    for label, per_channel in seconds.items():
        total = sum(per_channel.values())
        channel, most = max(per_channel.items(), key=lambda item: item[1])
        if total > 0 and most / total >= CHANNEL_MAJORITY:
            decided[label] = channel
    return decided


def decide(segments: list[dict], answer: ModelAnswer | None, agent_channel: int) -> SpeakerDecision:
    """Roles of the diarization labels. The channels decide where they are clear; the
    model's answer fills in only where they are not; a disagreement is kept."""
    labels = {s["label"] for s in segments}
    channels = label_channels(segments)
    model_agent = answer.agent_speaker if answer and answer.agent_speaker in labels else None
    by_channel = {label for label, ch in channels.items() if ch == agent_channel}
    decision = SpeakerDecision()
    if by_channel:
        durations = defaultdict(float)
        for s in segments:
            if s["label"] in by_channel:
                durations[s["label"]] += s["end"] - s["start"]
        decision.agent_label = max(durations, key=durations.get)
        decision.method = "channel"
        for label in labels:
            if label in channels:
                decision.roles[label] = "agent" if channels[label] == agent_channel else "caller"
            else:
                decision.roles[label] = "agent" if label == model_agent else "caller"
        if model_agent and channels.get(model_agent) not in (None, agent_channel):
            decision.disagreement = (
                f"The model named {model_agent} as the agent; the recording's channels put "
                f"{model_agent} on the caller's side and {decision.agent_label} on the agent's."
            )
    elif channels:
        # Only the caller's side is clear: the agent is whoever is not there.
        caller_labels = set(channels)
        rest = labels - caller_labels
        decision.method = "channel"
        decision.agent_label = model_agent if model_agent in rest else (sorted(rest) or [""])[0]
        for label in labels:
            decision.roles[label] = "agent" if label == decision.agent_label else "caller"
    elif model_agent:
        decision.method = "model"
        decision.agent_label = model_agent
        decision.roles = {label: "agent" if label == model_agent else "caller" for label in labels}
    return decision


def channel_of_role(role: str, agent_channel: int) -> int:
    caller_channel = CALLER_CHANNEL if agent_channel == AGENT_CHANNEL else AGENT_CHANNEL
    return agent_channel if role == "agent" else caller_channel
