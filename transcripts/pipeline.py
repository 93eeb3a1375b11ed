"""Recording → transcript: diarize (or transcribe per utterance) → identify speakers →
check against the channels → format. The steps are plain functions over the decoded
audio and an HTTP client, so tests run them against the fake OpenAI server; `run()` at
the bottom loads and saves the rows."""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
from django.conf import settings
from django.utils import timezone

from transcripts import audio as audio_lib
from transcripts import openai_api, speakers
from transcripts.audio import AGENT_CHANNEL, CALLER_CHANNEL, Audio
from transcripts.formatting import display_name, labelled_text, merge_consecutive
from transcripts.pricing import text_cost, transcription_cost

log = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 24 * 1024 * 1024  # OpenAI takes 25 MB per file; keep a margin
KNOWN_AGENT, KNOWN_CALLER = "agent", "caller"  # the names our voice clips are sent under
UTTERANCE_SILENCE_S = 0.6  # standard mode: a pause this long ends an utterance
PARALLEL_REQUESTS = 4


@dataclass
class AgentProfile:
    name: str = "Agent"
    instructions: str = ""
    mode: str = "diarized"
    vocabulary: str = ""


@dataclass
class Result:
    model: str
    segments: list[dict] = field(default_factory=list)
    agent_label: str = ""
    caller_name: str | None = None
    method: str = "none"
    disagreement: str = ""
    text: str = ""
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    audio_seconds: float = 0.0
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)


class Stopwatch:
    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    def step(self, name: str):
        timings = self.timings

        class _Step:
            def __enter__(self):
                self.started = time.perf_counter()

            def __exit__(self, *exc):
                timings[name] = round(timings.get(name, 0) + time.perf_counter() - self.started, 3)

        return _Step()


# --- which channel is the agent -------------------------------------------------------


def agent_channel(audio: Audio, live_agent_starts_s: list[float]) -> int:
    """Twilio puts the caller first and our audio second. The live transcript's agent
    turns confirm it: if the first channel is the loud one while the agent spoke, the
    file is the other way round and we follow the file."""
    if audio.channels < 2 or not live_agent_starts_s:
        return AGENT_CHANNEL
    first = second = 0.0
    for start in live_agent_starts_s:
        span = audio.span(start, start + 2.0)
        first += float((span[:, 0] ** 2).sum())
        second += float((span[:, 1] ** 2).sum())
    return CALLER_CHANNEL if first > 4 * second and first > 0 else AGENT_CHANNEL


# --- diarized mode --------------------------------------------------------------------


def piece_seconds(audio: Audio) -> float:
    bytes_per_s = audio.rate * 2
    return min(settings.TRANSCRIPTION_PIECE_MAX_S, MAX_UPLOAD_BYTES / bytes_per_s)


def known_speaker_fields(audio: Audio, agent_ch: int) -> list[tuple[str, str]]:
    """Clean clips of both sides from their own channels, so that the labels come back
    as names and stay the same in every piece of a long call."""
    if audio.channels < 2:
        return []
    caller_ch = CALLER_CHANNEL if agent_ch == AGENT_CHANNEL else AGENT_CHANNEL
    fields = []
    for name, channel in ((KNOWN_AGENT, agent_ch), (KNOWN_CALLER, caller_ch)):
        clip = audio_lib.voice_clip(audio, channel)
        if clip is not None:
            fields.append(("known_speaker_names[]", name))
            fields.append(("known_speaker_references[]", audio_lib.wav_data_url(clip, audio.rate)))
    return fields


def diarize(http: httpx.Client, audio: Audio, agent_ch: int, result: Result) -> list[dict]:
    """Raw segments of the whole call ({label, start, end, text}), piece by piece."""
    known = known_speaker_fields(audio, agent_ch)
    segments: list[dict] = []
    for offset, samples in audio_lib.pieces(audio, piece_seconds(audio)):
        fields = [("response_format", "diarized_json"), ("chunking_strategy", "auto"), *known]
        answer = openai_api.transcribe(
            http, audio_lib.wav_bytes(samples, audio.rate), result.model, fields
        )
        seconds = len(samples) / audio.rate
        result.requests += 1
        result.audio_seconds += seconds
        result.cost_usd += transcription_cost(result.model, answer.usage, seconds)
        for segment in answer.segments:
            text = (segment.get("text") or "").strip()
            if not text:
                continue
            label = str(segment.get("speaker") or "?")
            # Letters are per request; only the known names carry across pieces.
            if label not in (KNOWN_AGENT, KNOWN_CALLER) and offset > 0:
                label = f"{label}@{round(offset)}"
            segments.append(
                {
                    "label": label,
                    "start": round(offset + float(segment.get("start", 0)), 3),
                    "end": round(offset + float(segment.get("end", 0)), 3),
                    "text": text,
                }
            )
    return segments


# --- standard mode --------------------------------------------------------------------


def utterances(audio: Audio, agent_ch: int) -> list[tuple[int, float, float]]:
    """(channel, start, end) of every utterance on either side, in time order."""
    found = []
    limit = piece_seconds(audio)
    for channel in range(1, min(audio.channels, 2) + 1):
        spans = audio_lib.own_speech_spans(audio, channel, min_silence_s=UTTERANCE_SILENCE_S)
        for start, end in spans:
            while end - start > limit:  # a monologue longer than one request takes
                found.append((channel, start, start + limit))
                start += limit
            found.append((channel, start, end))
    return sorted(found, key=lambda u: (u[1], u[0]))


def transcribe_utterances(
    http: httpx.Client, audio: Audio, agent_ch: int, vocabulary: str, result: Result
) -> list[dict]:
    fields = [("response_format", "json")]
    if vocabulary.strip():
        fields.append(("prompt", vocabulary.strip()[:2000]))
    spans = utterances(audio, agent_ch)

    def one(span: tuple[int, float, float]) -> openai_api.TranscriptionResult:
        channel, start, end = span
        clip = audio.channel(channel)[int(start * audio.rate) : int(end * audio.rate)]
        return openai_api.transcribe(
            http, audio_lib.wav_bytes(clip, audio.rate), result.model, fields
        )

    with ThreadPoolExecutor(PARALLEL_REQUESTS) as pool:
        answers = list(pool.map(one, spans))
    segments = []
    for (channel, start, end), answer in zip(spans, answers, strict=True):
        result.requests += 1
        result.audio_seconds += end - start
        result.cost_usd += transcription_cost(result.model, answer.usage, end - start)
        if answer.text.strip():
            role = "agent" if channel == agent_ch else "caller"
            segments.append(
                {
                    "label": role,
                    "speaker": role,
                    "channel": channel,
                    "start": start,
                    "end": end,
                    "text": answer.text.strip(),
                }
            )
    return segments


# --- identification and formatting ----------------------------------------------------


def identify(
    http: httpx.Client, segments: list[dict], profile: AgentProfile, result: Result
) -> speakers.ModelAnswer | None:
    """Ask the model which label is the agent and what the caller is called. A failure
    here is not fatal: the channels still decide, and the text is kept with a warning."""
    if not segments:
        return None
    user_text, schema = speakers.identification_request(
        segments, profile.name, profile.instructions
    )
    try:
        answer = openai_api.structured(
            http,
            settings.SPEAKER_ID_MODEL,
            speakers.IDENTIFY_INSTRUCTIONS,
            user_text,
            speakers.IDENTIFY_SCHEMA_NAME,
            schema,
        )
    except openai_api.OpenAIError as exc:
        log.warning("speaker identification failed: %s", exc)
        result.warnings.append(f"Speaker identification failed ({exc}); labels are unconfirmed.")
        return None
    result.input_tokens += answer.input_tokens
    result.output_tokens += answer.output_tokens
    result.cost_usd += text_cost(answer.model, answer.input_tokens, answer.output_tokens)
    value = answer.value if isinstance(answer.value, dict) else {}
    return speakers.ModelAnswer(
        agent_speaker=value.get("agent_speaker"),
        caller_name=speakers.clean_first_name(value.get("caller_name")),
    )


def finish(segments: list[dict], profile: AgentProfile, result: Result) -> None:
    result.segments = merge_consecutive(segments)
    for segment in result.segments:
        segment["name"] = display_name(segment, profile.name, result.caller_name)
    result.text = labelled_text(result.segments)


def transcribe(
    http: httpx.Client, audio: Audio, profile: AgentProfile, live_agent_starts_s: list[float]
) -> Result:
    """The whole chain for one recording. Raises openai_api errors from transcription;
    identification failures only add a warning."""
    diarized = profile.mode == "diarized"
    result = Result(
        model=settings.TRANSCRIBE_DIARIZED_MODEL if diarized else settings.TRANSCRIBE_STANDARD_MODEL
    )
    watch = Stopwatch(result.timings)
    agent_ch = agent_channel(audio, live_agent_starts_s)
    if agent_ch != AGENT_CHANNEL:
        result.warnings.append("The recording had the agent on the first channel; followed it.")
    if audio.channels < 2:
        result.warnings.append("The recording has one channel: speakers come from the model.")

    if not diarized:
        with watch.step("transcribe"):
            segments = transcribe_utterances(http, audio, agent_ch, profile.vocabulary, result)
        with watch.step("identify"):
            answer = identify(http, segments, profile, result)
        result.caller_name = answer.caller_name if answer else None
        result.method = "channel"
        result.agent_label = "agent"
        finish(segments, profile, result)
        return result

    with watch.step("transcribe"):
        segments = diarize(http, audio, agent_ch, result)
    for segment in segments:
        segment["channel"] = audio_lib.dominant_channel(audio, segment["start"], segment["end"])
    with watch.step("identify"):
        answer = identify(http, segments, profile, result)
    decision = speakers.decide(segments, answer, agent_ch)
    result.method = decision.method
    result.agent_label = decision.agent_label
    result.disagreement = decision.disagreement
    result.caller_name = answer.caller_name if answer else None
    if decision.method == "none":
        result.warnings.append("Neither the channels nor the model told the speakers apart.")
    for segment in segments:
        segment["speaker"] = decision.roles.get(segment["label"], "unknown")
    finish(segments, profile, result)
    return result


# --- rows -----------------------------------------------------------------------------


def profile_of(call) -> AgentProfile:
    agent = call.agent
    if agent is None:
        return AgentProfile()
    return AgentProfile(
        name=agent.name,
        instructions=agent.instructions,
        mode=agent.transcript_mode,
        vocabulary=agent.transcript_vocabulary,
    )


def live_agent_starts_s(call) -> list[float]:
    """When the agent spoke, on the recording's clock: the stream starts a little after the
    recording (the time between the webhook's answer and the stream's connection)."""
    lead_s = 0.0
    if call.stream_connected_at and call.started_at:
        lead_s = max(0.0, (call.stream_connected_at - call.started_at).total_seconds())
    return [lead_s + t.started_ms / 1000 for t in call.turns.filter(speaker="agent")]


def run(transcript, wav: bytes) -> None:
    """Fill in a running Transcript row from the recording's WAV bytes, or raise."""
    call = transcript.call
    decoded = audio_lib.read_wav(wav)
    with openai_api.client() as http:
        result = transcribe(http, decoded, profile_of(call), live_agent_starts_s(call))
    transcript.model = result.model
    transcript.segments = result.segments
    transcript.agent_label = result.agent_label
    transcript.caller_name = result.caller_name or ""
    transcript.method = result.method
    transcript.disagreement = result.disagreement
    transcript.text = result.text
    transcript.warning = "\n".join(result.warnings)
    transcript.error = ""
    transcript.timings = result.timings
    transcript.audio_seconds = round(result.audio_seconds, 3)
    transcript.requests = result.requests
    transcript.input_tokens = result.input_tokens
    transcript.output_tokens = result.output_tokens
    transcript.cost_usd = result.cost_usd.quantize(Decimal("0.000001"))
    transcript.status = transcript.Status.COMPLETED
    transcript.finished_at = timezone.now()
    transcript.save()
