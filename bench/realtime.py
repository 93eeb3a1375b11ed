"""The fake OpenAI Realtime server in its own process, instrumented for the benchmark.

`python -m bench.realtime --plan '<plan json>' --out result.json` prints `PORT n`,
serves until SIGTERM, then writes what it timed. Every audio delta carries a stamp in
its first 8 bytes (session index, delta number) so the caller side can tell exactly
when that chunk arrived; its send time is kept here. The app passes deltas through
byte for byte, so the stamp survives.
"""

import argparse
import asyncio
import functools
import gc
import resource
import signal
import struct
import time
from dataclasses import dataclass, field

import orjson

from bench.loop_lag import LoopLag
from bench.scenario import Plan, plan_from_json
from tests.fakes import realtime_server
from tests.fakes.realtime_server import FakeRealtimeServer, FakeSession, _SessionRunner

STAMP = struct.Struct(">II")  # session index, delta number within the session
APPEND_PREFIX = '{"type":"input_audio_buffer.append","audio":"'
APPEND_SAMPLE = 10
RESPONSE_CREATE = '"type":"response.create"'
REPLY_TONE_HZ = 440
_make_reply_audio = realtime_server.reply_audio
RESUME_SCRIPT: realtime_server.RealtimeScript | None = None  # set by serve() from the plan


@functools.cache
def one_tone_per_length(format_type: str, freq: int, ms: int) -> bytes:
    """The fake synthesises a tone per (session, response) in pure Python, which takes
    tens of ms of its loop per reply at benchmark scale; the stamps already make every
    chunk unique, so every reply of a given length is the same tone here."""
    return _make_reply_audio(format_type, REPLY_TONE_HZ, ms)


realtime_server.reply_audio = one_tone_per_length


def read_stamp(chunk: bytes) -> tuple[int, int]:
    return STAMP.unpack_from(chunk)


@dataclass
class TimedSession(FakeSession):
    """A session that also remembers when things were sent (time.monotonic, seconds;
    CLOCK_MONOTONIC is one clock for every process on the machine)."""

    delta_sent_at: list[float] = field(default_factory=list)
    speech_started_at: list[float] = field(default_factory=list)
    response_create_at: list[float] = field(default_factory=list)
    # (when, caller audio bytes received so far), every APPEND_SAMPLE-th append
    appends: list[tuple[float, int]] = field(default_factory=list)
    append_count: int = 0


class TimedRunner(_SessionRunner):
    async def on_message(self, message: str | bytes) -> None:
        # The app's appends all start with this exact prefix; the strict schema check of
        # each 20 ms append is covered by the test suite and would only load the fake.
        if isinstance(message, str) and message.startswith(APPEND_PREFIX):
            await self.on_append(orjson.loads(message))
            session = self.session
            session.append_count += 1
            if session.append_count % APPEND_SAMPLE == 0:
                session.appends.append((time.monotonic(), len(session.input_audio)))
            return
        if isinstance(message, str) and RESPONSE_CREATE in message[:40]:
            self.session.response_create_at.append(time.monotonic())
        await super().on_message(message)

    def _start_response(self, params, by_client=False):
        if RESUME_SCRIPT is not None and self.response_count == 0 and self.items:
            # A session whose first response follows a replayed conversation is the app's
            # reconnect: it plays the plan's second part.
            self.script = RESUME_SCRIPT
        return super()._start_response(params, by_client)

    async def _speech_started(self, start_ms, end_ms, settings) -> None:
        self.session.speech_started_at.append(time.monotonic())
        await super()._speech_started(start_ms, end_ms, settings)

    async def _send_audio_delta(self, response, output, fields, chunk, codec) -> None:
        session = self.session
        stamped = STAMP.pack(session.index, len(session.delta_sent_at)) + chunk[STAMP.size :]
        session.delta_sent_at.append(time.monotonic())
        await super()._send_audio_delta(response, output, fields, stamped, codec)


class TimedRealtimeServer(FakeRealtimeServer):
    session_class = TimedSession
    runner_class = TimedRunner


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def serve(plan: Plan) -> dict:
    global RESUME_SCRIPT
    RESUME_SCRIPT = plan.resume_script()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    for reply in plan.script().replies + (RESUME_SCRIPT.replies if RESUME_SCRIPT else []):
        one_tone_per_length("audio/pcmu", REPLY_TONE_HZ, reply.audio_ms)
    server = TimedRealtimeServer(plan.script())
    await server.start()
    lag = LoopLag()
    lag.start()
    print(f"PORT {server.port}", flush=True)
    await stop.wait()
    lag_summary = lag.stop()
    await server.stop()
    result = {
        "cpu_s": cpu_seconds(),
        "loop_lag": lag_summary,
        "violations": server.violations,
        "sessions": [
            {
                "index": s.index,
                "delta_sent_at": s.delta_sent_at,
                "speech_started_at": s.speech_started_at,
                "response_create_at": s.response_create_at,
                "appends": s.appends,
                "benign_errors": len(s.benign_errors),
            }
            for s in server.sessions
        ],
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--plan", required=True, help="the plan as JSON (bench/scenario.py)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    # As in bench.load: no cyclic GC stalls over the growing record of the session.
    gc.disable()
    result = asyncio.run(serve(plan_from_json(orjson.loads(args.plan))))
    with open(args.out, "wb") as f:
        f.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
