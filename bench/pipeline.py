"""Post-call pipeline benchmark: how long a recording takes from Twilio's callback to its
named transcript, per minute of call, and how many recordings one worker processes a
minute. Real code end to end: a real Celery worker process (solo pool: one process, so
its CPU is the pipeline's) on the embedded broker and a SQLite database of its own,
downloading from the fake Twilio REST API and transcribing against the fake OpenAI.

The fakes answer at once, so the wall times are the pipeline's own work plus the fakes'
(they run in this process, on the same two cores); OpenAI's own processing time comes
on top in production. The worker's CPU seconds per call-minute carry over.

    python -m bench.pipeline                       # 1, 5, 20 and 60-minute calls, then
                                                   # 10 three-minute calls at once
    python -m bench.pipeline --minutes 1,5 --batch 5 --batch-minutes 2
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "sk-bench"
ACCOUNT_SID = "AC" + "b" * 32
AUTH_TOKEN = "bench-auth-token"


def configure(work: Path, fake_openai_url: str, fake_twilio_url: str) -> dict[str, str]:
    env = {
        "DEBUG": "true",
        "VAR_DIR": str(work),
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "CELERY_BROKER_URL": "filesystem://",
        "CELERY_BROKER_DIR": str(work),
        "RECORDINGS_DIR": str(work / "recordings"),
        "OPENAI_BASE_URL": fake_openai_url,
        "OPENAI_API_KEY": API_KEY,
        "TWILIO_API_BASE_URL": fake_twilio_url,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "voiceagents.settings",
    }
    os.environ.update(env)
    return env


def voices(bank) -> dict:
    """A fixed set of utterances that every benchmark call reuses (the bank has room for
    about fifty tones; an hour has hundreds of turns)."""
    return {
        "intro": bank.say("caller", "Hi, this is Maria, I have a question about my order.", 9000),
        "agent": [
            bank.say("agent", f"Agent sentence {i} with some words.", 9000) for i in range(12)
        ],
        "caller": [bank.say("caller", f"Caller sentence {i} with words.", 9000) for i in range(12)],
    }


def conversation(tones: dict, minutes: float, seed: int):
    """A call of `minutes`: turns of 3–9 s alternating between agent and caller with
    short pauses, the caller giving her name in her first turn. Returns the WAV and the
    number of turns."""
    import random

    from tests.post_call.synth import dual_wav

    rng = random.Random(seed)
    caller, agent = [], []
    t, turn = 0.5, 0
    end = minutes * 60 - 1.0
    while t < end:
        who = "agent" if turn % 2 == 0 else "caller"
        length = min(rng.uniform(3.0, 9.0), end - t)
        if length < 1.0:
            break
        freq = tones["intro"] if turn == 1 else rng.choice(tones[who])
        (agent if who == "agent" else caller).append((t, t + length, freq))
        t += length + rng.uniform(0.4, 1.2)
        turn += 1
    return dual_wav(minutes * 60, caller, agent, bleed=0.03), turn


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def enqueue(api, wav: bytes, index: int) -> int:
    from django.utils import timezone

    from calls.models import Call
    from transcripts.models import Recording
    from transcripts.tasks import process_recording
    from voiceagents.models import Agent

    agent = Agent.objects.get_or_create(
        name="Bench bakery",
        defaults={
            "instructions": "You answer for a bakery.",
            "outcome_schema": {
                "type": "object",
                "properties": {"order_placed": {"type": "boolean"}},
                "required": ["order_placed"],
            },
        },
    )[0]
    call = Call.objects.create(
        sid=f"CA{index:032x}",
        agent=agent,
        recording_requested=True,
        answered_at=timezone.now(),
        ended_at=timezone.now(),
    )
    recording = Recording.objects.create(
        call=call, sid=f"RE{index:032x}", account_sid=ACCOUNT_SID, twilio_status="completed"
    )
    api.add_recording(recording.sid, wav, call.sid, account_sid=ACCOUNT_SID)
    process_recording.delay(recording.pk)
    return call.pk


def wait_done(call_ids: list[int], timeout_s: float) -> dict[int, float]:
    """When each call's summary (the pipeline's last step) was written."""
    from transcripts.models import CallSummary, Transcript

    done: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(call_ids):
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(done)} of {len(call_ids)} finished in {timeout_s}s")
        finished = CallSummary.objects.filter(call_id__in=call_ids).exclude(summary="", error="")
        for call_id in finished.values_list("call_id", flat=True):
            done.setdefault(call_id, time.monotonic())
        failed = Transcript.objects.filter(call_id__in=call_ids, status="failed")
        if failed.exists():
            raise SystemExit(f"a transcription failed: {failed.first().error}")
        time.sleep(0.05)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", default="1,5,20,60", help="call lengths, one at a time")
    parser.add_argument("--batch", type=int, default=10, help="calls queued at once")
    parser.add_argument("--batch-minutes", type=float, default=3.0)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="pipeline-", dir=ROOT / "var"))
    from tests.fakes.openai_rest import FakeOpenAI
    from tests.fakes.twilio_api import FakeTwilioApi
    from tests.fakes.voices import VoiceBank
    from tests.live import BackgroundLoop, CeleryWorker

    bank = VoiceBank()
    tones = voices(bank)
    loop = BackgroundLoop()
    openai = FakeOpenAI(voice_bank=bank, api_key=API_KEY)
    loop.run(openai.start())
    api = FakeTwilioApi(ACCOUNT_SID, AUTH_TOKEN)
    api.start()
    env = configure(work, openai.base_url, api.base_url)

    import django

    django.setup()
    from django.core.management import call_command

    from transcripts.models import Transcript

    call_command("migrate", verbosity=0)
    worker = CeleryWorker(env, work / "worker.log", pool="solo", concurrency=1)
    print(f"work dir {work}; worker pid {worker.process.pid}", file=sys.stderr)
    rows = []
    try:
        index = 0
        for minutes in [float(m) for m in args.minutes.split(",")]:
            wav, turns = conversation(tones, minutes, seed=index)
            before = proc_cpu_s(worker.process.pid)
            started = time.monotonic()
            index += 1
            call_id = enqueue(api, wav, index)
            done = wait_done([call_id], timeout_s=600 + minutes * 60)
            wall = done[call_id] - started
            cpu = proc_cpu_s(worker.process.pid) - before
            transcript = Transcript.objects.get(call_id=call_id)
            rows.append(
                (
                    f"{minutes:g} min",
                    f"{wall:.2f}",
                    f"{wall / minutes:.2f}",
                    f"{cpu:.2f}",
                    f"{cpu / minutes:.3f}",
                    str(transcript.requests),
                    f"{len(transcript.segments)}/{turns}",
                    transcript.caller_name,
                    ", ".join(f"{k} {v:.2f}" for k, v in transcript.timings.items()),
                )
            )
            print(f"{minutes:g} min done in {wall:.1f}s", file=sys.stderr)
        peak = proc_peak_rss_mb(worker.process.pid)

        wavs = [conversation(tones, args.batch_minutes, seed=100 + i)[0] for i in range(args.batch)]
        before = proc_cpu_s(worker.process.pid)
        started = time.monotonic()
        ids = []
        for wav in wavs:
            index += 1
            ids.append(enqueue(api, wav, index))
        done = wait_done(ids, timeout_s=600)
        elapsed = max(done.values()) - started
        batch_cpu = proc_cpu_s(worker.process.pid) - before
    finally:
        worker.stop()
        api.stop()
        loop.run(openai.stop())
        loop.close()

    print(
        "| call | wall s | wall s/call-min | worker CPU s | CPU s/call-min | requests "
        "| lines/turns | caller | steps (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    per_minute = args.batch / (elapsed / 60)
    print(
        f"\nOne worker process (solo pool), {args.batch} calls of {args.batch_minutes:g} min "
        f"queued at once: all done in {elapsed:.1f} s = {per_minute:.1f} recordings/min "
        f"({per_minute * args.batch_minutes:.0f} call-minutes/min); worker CPU "
        f"{batch_cpu:.1f} s = {batch_cpu / (args.batch * args.batch_minutes):.3f} s per "
        f"call-minute. Worker peak RSS over the run: {peak:.0f} MB."
    )


if __name__ == "__main__":
    main()
