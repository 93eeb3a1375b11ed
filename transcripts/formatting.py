"""The transcript as staff read it: consecutive lines of one speaker merged, each line
labelled with the agent's name or the caller's first name."""


def clock(seconds: float, *, tenths: bool = False) -> str:
    """mm:ss from the start of the recording (mm:ss.s with tenths)."""
    seconds = max(0.0, seconds)
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes):02d}:{rest:04.1f}" if tenths else f"{int(minutes):02d}:{int(rest):02d}"


def merge_consecutive(segments: list[dict]) -> list[dict]:
    """One line per turn: neighbouring segments of the same speaker joined."""
    merged: list[dict] = []
    for segment in sorted(segments, key=lambda s: (s["start"], s["end"])):
        previous = merged[-1] if merged else None
        if (
            previous is not None
            and previous["speaker"] == segment["speaker"]
            and previous["label"] == segment["label"]
        ):
            previous["end"] = max(previous["end"], segment["end"])
            previous["text"] = f"{previous['text']} {segment['text']}".strip()
            if previous.get("channel") != segment.get("channel"):
                previous["channel"] = previous.get("channel") or segment.get("channel")
        else:
            merged.append(dict(segment))
    return merged


def display_name(segment: dict, agent_name: str, caller_name: str | None) -> str:
    if segment["speaker"] == "agent":
        return agent_name or "Agent"
    if segment["speaker"] == "caller":
        return caller_name or "Caller"
    return f"Speaker {segment['label']}"


def labelled_text(segments: list[dict]) -> str:
    return "\n".join(f"[{clock(s['start'])}] {s['name']}: {s['text']}" for s in segments)
