"""What each voice sounds like, for the agent form: a short sentence spoken once through
the Realtime API in that voice (the default model), stored as a WAV under
VAR_DIR/voice-previews and served from there ever after, so choosing a voice costs one
short response per voice per installation."""

import asyncio
import base64
import io
import wave
from pathlib import Path

import orjson
from django.conf import settings
from websockets.exceptions import WebSocketException

from voiceagents import realtime
from voiceagents.model_catalog import DEFAULT_REALTIME_MODEL

SAMPLE_RATE = 24000
SENTENCE = "Hello! Thanks for calling. I'm happy to help you today. What can I do for you?"
TIMEOUT_S = 30


class PreviewFailed(Exception):
    pass


def preview_path(voice: str) -> Path:
    return Path(settings.VAR_DIR) / "voice-previews" / f"{voice}.wav"


def wav_bytes(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(pcm)
    return out.getvalue()


async def speak(voice: str) -> bytes:
    """The sentence in `voice`, as 16-bit PCM at 24 kHz, from one Realtime response."""
    ws = await realtime.connect(
        settings.OPENAI_BASE_URL,
        settings.OPENAI_API_KEY,
        DEFAULT_REALTIME_MODEL,
        settings.OPENAI_CONNECT_TIMEOUT_S,
    )
    async with ws:
        session = {
            "type": "realtime",
            "model": DEFAULT_REALTIME_MODEL,
            "output_modalities": ["audio"],
            "instructions": "You read sentences aloud, exactly as given, warmly.",
            "audio": {"output": {"format": realtime.BROWSER_AUDIO.realtime, "voice": voice}},
        }
        await ws.send(orjson.dumps({"type": "session.update", "session": session}).decode())
        say = {"instructions": f"Say exactly: {SENTENCE}", "tool_choice": "none"}
        await ws.send(orjson.dumps({"type": "response.create", "response": say}).decode())
        audio = bytearray()
        async for raw in ws:
            event = orjson.loads(raw)
            if event["type"] == "response.output_audio.delta":
                audio += base64.b64decode(event["delta"])
            elif event["type"] == "error":
                raise PreviewFailed(event["error"].get("message") or event["error"].get("code"))
            elif event["type"] == "response.done":
                break
    if not audio:
        raise PreviewFailed("the response had no audio")
    return bytes(audio)


def preview(voice: str) -> Path:
    """The stored preview of `voice`, made first if there is none."""
    path = preview_path(voice)
    if path.exists():
        return path
    try:
        pcm = asyncio.run(asyncio.wait_for(speak(voice), TIMEOUT_S))
    except (OSError, TimeoutError, WebSocketException) as exc:
        raise PreviewFailed(f"OpenAI could not be reached ({type(exc).__name__})") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_bytes(wav_bytes(pcm))
    partial.replace(path)  # never a half-written preview for the next request
    return path
