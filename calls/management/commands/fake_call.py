"""Place a simulated phone call into a running app, with no Twilio or OpenAI account, and
follow it past hangup to its post-call transcript.

It starts the fake OpenAI server (Realtime WebSocket and REST on one port) and the fake
Twilio REST API — the app must have been started with OPENAI_BASE_URL and
TWILIO_API_BASE_URL pointing at them (`scripts/run --fakes` does that) — makes sure a
demo agent answers the number, then plays Twilio: signed webhook, media stream in real
time, caller speech, a barge-in and a hang-up; then the recording callback, as Twilio
sends it once the call's dual-channel recording is stored. It waits for the app's
Celery worker to download and transcribe the recording, prints the labelled transcript,
summary and outcome, and last the stored call as the read API returns it. It exits
non-zero, saying what failed, when any step does.
"""

import asyncio
import logging
import time

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calls.api import call_detail
from calls.models import Call, PhoneNumber
from voiceagents.models import Agent, Tool

DEMO_NUMBER = "+15550100000"
DEMO_ACCOUNT_SID = "AC" + "0" * 32
GREETING = "Hello, you have reached the bakery. How can I help?"
QUESTION = "Hi, this is Maria. When are you open?"
ANSWER = (
    "We open at eight in the morning and close at six in the evening, every day except "
    "public holidays."
)
FOLLOW_UP = "Sorry, one more thing, do you deliver?"
DELIVERY = "Yes, we deliver within five miles of the shop."
DEMO_OUTCOME_SCHEMA = {
    "type": "object",
    "properties": {
        "question_answered": {"type": "boolean", "description": "Did the agent answer?"},
        "topic": {"type": "string", "description": "What the caller asked about."},
    },
    "required": ["question_answered"],
}


def ensure_demo_agent(number: str) -> Agent:
    phone = PhoneNumber.objects.select_related("agent").filter(number=number).first()
    if phone is not None:
        return phone.agent
    agent = Agent.objects.create(
        name="Demo bakery",
        instructions="You answer the phone for a small bakery. Be brief and friendly.",
        greeting=GREETING,
        outcome_schema=DEMO_OUTCOME_SCHEMA,
    )
    end_call, _ = Tool.objects.get_or_create(
        name="end_call",
        defaults={
            "description": "Hang up once the caller is done, after saying goodbye.",
            "kind": Tool.Kind.END_CALL,
            "parameters": {"type": "object", "properties": {}},
        },
    )
    agent.tools.add(end_call)
    PhoneNumber.objects.create(number=number, agent=agent, label="fake_call demo")
    return agent


class Command(BaseCommand):
    help = (
        "Simulate a caller phoning the running app against fake OpenAI and Twilio servers, "
        "then follow the call to its post-call transcript."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--app-url", default="http://127.0.0.1:8000", help="where the app listens"
        )
        parser.add_argument("--to", default=DEMO_NUMBER, help="the number called (E.164)")
        parser.add_argument(
            "--from", dest="from_number", default="+15550199999", help="the caller's number"
        )
        parser.add_argument(
            "--openai-port",
            type=int,
            default=8765,
            help="port of the fake OpenAI server (the app's OPENAI_BASE_URL)",
        )
        parser.add_argument(
            "--twilio-port",
            type=int,
            default=8766,
            help="port of the fake Twilio REST API (the app's TWILIO_API_BASE_URL)",
        )
        parser.add_argument(
            "--no-fake-openai",
            action="store_true",
            help="do not start the fake OpenAI server (one is already running)",
        )
        parser.add_argument(
            "--no-recording",
            action="store_true",
            help="stop at hangup: no recording callback, no post-call transcript",
        )
        parser.add_argument(
            "--answer-outbound",
            type=float,
            metavar="SECONDS",
            help="instead of calling: wait this long for the app to place an outbound call "
            "(Call someone on an agent's page, or POST /api/calls/), then answer it as the "
            "person called and talk with the agent",
        )
        parser.add_argument(
            "--transcript-timeout",
            type=float,
            default=120.0,
            help="seconds to wait for the worker's transcript",
        )

    def handle(self, *args, **options):
        # The fakes' own connection logs would drown the story this command tells; the
        # levels are put back after (call_command runs in other processes' loggers too).
        noisy = [logging.getLogger(name) for name in ("websockets", "httpx")]
        levels = [logger.level for logger in noisy]
        for logger in noisy:
            logger.setLevel(logging.WARNING)
        try:
            self.place_and_follow(options)
        finally:
            for logger, level in zip(noisy, levels, strict=True):
                logger.setLevel(level)

    def place_and_follow(self, options) -> None:
        try:
            from tests.fakes.openai_rest import FakeOpenAI
            from tests.fakes.realtime_server import RealtimeScript, Reply
            from tests.fakes.twilio_api import FakeTwilioApi
            from tests.fakes.voices import VoiceBank
        except ImportError as exc:
            raise CommandError(f"the fakes live in tests/fakes: run from the repo ({exc})") from exc

        agent = ensure_demo_agent(options["to"])
        self.stdout.write(f"Calling {options['to']} (agent: {agent.name}) at {options['app_url']}")
        bank = VoiceBank()
        script = RealtimeScript(
            replies=[
                Reply(text=GREETING, audio_ms=1500),
                Reply(text=ANSWER, audio_ms=5000),
                Reply(text=DELIVERY, audio_ms=2000),
            ],
            caller_transcripts=[QUESTION, FOLLOW_UP],
            reply_delay_ms=300,
            api_key=settings.OPENAI_API_KEY,
            voice_bank=bank,
        )
        fakes = {
            "openai": None
            if options["no_fake_openai"]
            else FakeOpenAI(
                script,
                voice_bank=bank,
                api_key=settings.OPENAI_API_KEY,
                port=options["openai_port"],
            ),
            "twilio": None
            if options["no_recording"]
            else FakeTwilioApi(
                settings.TWILIO_ACCOUNT_SID or DEMO_ACCOUNT_SID,
                settings.TWILIO_AUTH_TOKEN,
                port=options["twilio_port"],
            ),
        }
        if options["answer_outbound"] is not None:
            if fakes["twilio"] is None:
                raise CommandError("--answer-outbound needs the fake Twilio REST API")
            # The app may call from any of its numbers: the fake account owns them all.
            fakes["twilio"].numbers = set(PhoneNumber.objects.values_list("number", flat=True))
            sid = asyncio.run(self.answer_outbound(options, bank, fakes))
        else:
            sid = asyncio.run(self.run_call(options, bank, fakes))
        call = Call.objects.select_related("agent").get(sid=sid)
        self.stdout.write("\nThe call as GET /api/calls/<sid>/ returns it:")
        self.stdout.write(orjson.dumps(call_detail(call), option=orjson.OPT_INDENT_2).decode())

    async def run_call(self, options, bank, fakes) -> str:
        from tests.fakes.twilio_api import RecordedCall
        from tests.fakes.twilio_caller import FakeTwilioCall

        openai, twilio = fakes["openai"], fakes["twilio"]
        try:
            if openai is not None:
                await openai.start()
                self.stdout.write(f"Fake OpenAI (Realtime and REST) at {openai.base_url}")
            if twilio is not None:
                twilio.start()
                self.stdout.write(f"Fake Twilio REST API at {twilio.base_url}")
            caller = FakeTwilioCall(
                options["app_url"],
                auth_token=settings.TWILIO_AUTH_TOKEN,
                account_sid=settings.TWILIO_ACCOUNT_SID or DEMO_ACCOUNT_SID,
                from_number=options["from_number"],
                to_number=options["to"],
                public_base_url=settings.PUBLIC_BASE_URL,
            )
            recorded = RecordedCall(caller, twilio) if twilio is not None else None
            await self.talk(caller, recorded, bank, openai)
            problems = caller.violations + (openai.violations if openai else [])
            if problems:
                raise CommandError(f"protocol violations: {problems}")
            if recorded is not None:
                await self.follow_recording(recorded, twilio, options["transcript_timeout"])
            return caller.call_sid
        finally:
            if openai is not None:
                await openai.stop()
            if twilio is not None:
                twilio.stop()

    async def answer_outbound(self, options, bank, fakes) -> str:
        """Twilio's part of an outbound call the app places: ringing, the answer, the
        media stream; the person talks and hangs up."""

        from tests.fakes.twilio_caller import FakeTwilioCall

        openai, twilio = fakes["openai"], fakes["twilio"]
        try:
            if openai is not None:
                await openai.start()
            twilio.start()
            self.stdout.write(
                f"Fake Twilio REST API at {twilio.base_url}; waiting up to "
                f"{options['answer_outbound']:g} s for the app to place a call…"
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + options["answer_outbound"]
            while not twilio.created_calls and loop.time() < deadline:  # noqa: ASYNC110 - another thread fills it
                await asyncio.sleep(0.2)
            if not twilio.created_calls:
                raise CommandError(
                    "no call was placed: press Call someone on an agent's page (the app must "
                    f"run with TWILIO_API_BASE_URL={twilio.base_url}: scripts/run --fakes)"
                )
            created = twilio.created_calls[0]
            self.stdout.write(
                f"The app asked Twilio to call {created['To']} from {created['From']}"
            )
            person = FakeTwilioCall.placed_by_app(
                options["app_url"],
                created,
                auth_token=settings.TWILIO_AUTH_TOKEN,
                account_sid=twilio.account_sid,
                public_base_url=settings.PUBLIC_BASE_URL,
            )
            await person.send_status(created["StatusCallback"], "ringing")
            self.stdout.write("Ringing… the person answers.")
            answer = await person.answer_outbound(
                answered_by="human" if "MachineDetection" in created else None
            )
            if answer.status_code != 200 or not person.stream_url:
                raise CommandError(f"the app did not connect the agent (HTTP {answer.status_code})")
            await person.connect_stream()
            await asyncio.sleep(2.5)
            self.stdout.write(f"Person: '{QUESTION}'")
            await person.speak_and_wait(1200, freq=bank.say("caller", QUESTION, 1200))
            await asyncio.sleep(3.0)
            self.stdout.write("The person hangs up.")
            await person.hangup()
            await person.send_status(created["StatusCallback"], "completed")
            await sync_to_async(self.wait_for_final, thread_sensitive=True)(person.call_sid)
            problems = person.violations + twilio.violations + (openai.violations if openai else [])
            if problems:
                raise CommandError(f"protocol violations: {problems}")
            return person.call_sid
        finally:
            if openai is not None:
                await openai.stop()
            twilio.stop()

    async def talk(self, caller, recorded, bank, openai) -> None:
        answer = await (recorded.dial() if recorded is not None else caller.dial())
        if answer.status_code != 200 or not caller.stream_url:
            raise CommandError(
                f"the app did not answer with a stream (HTTP {answer.status_code}): "
                f"{answer.text[:300]}"
            )
        await caller.connect_stream()
        self.stdout.write("Connected; the agent greets the caller…")
        await asyncio.sleep(2.5)
        if openai is not None and not openai.realtime.sessions:
            if openai.realtime.rejected:
                raise CommandError(
                    f"the fake OpenAI server refused the app (HTTP {openai.realtime.rejected}): "
                    "run this command with the app's OPENAI_API_KEY"
                )
            raise CommandError(
                f"the app opened no session on the fake OpenAI server at {openai.base_url}: "
                "start the app with OPENAI_BASE_URL pointing there (scripts/run --fakes)"
            )
        self.stdout.write(f"Caller: '{QUESTION}'")
        await caller.speak_and_wait(1200, freq=bank.say("caller", QUESTION, 1200))
        await asyncio.sleep(2.5)
        self.stdout.write(f"Caller interrupts the answer: '{FOLLOW_UP}'")
        await caller.speak_and_wait(1000, freq=bank.say("caller", FOLLOW_UP, 1000))
        await asyncio.sleep(3.0)
        self.stdout.write("Caller hangs up.")
        await caller.hangup()
        await sync_to_async(self.wait_for_final, thread_sensitive=True)(caller.call_sid)

    def wait_for_final(self, sid: str, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if Call.objects.filter(sid=sid, ended_at__isnull=False).exists():
                return
            time.sleep(0.1)
        raise CommandError(f"call {sid} was not finalised by the app within {timeout_s}s")

    async def follow_recording(self, recorded, twilio, timeout_s: float) -> None:
        self.stdout.write("Twilio stores the dual-channel recording and sends its callback…")
        response = await recorded.send_callback()
        if response.status_code not in (200, 204):
            raise CommandError(
                f"the recording callback was refused (HTTP {response.status_code}): "
                f"{response.text[:300]}"
            )
        transcript = await sync_to_async(self.wait_for_transcript, thread_sensitive=True)(
            recorded.call.call_sid, twilio, recorded.recording_sid, timeout_s
        )
        await sync_to_async(self.print_transcript, thread_sensitive=True)(transcript)

    def print_transcript(self, transcript) -> None:
        self.stdout.write(
            f"\nTranscript ({transcript.mode}, speakers by {transcript.method}, "
            f"caller: {transcript.caller_name or 'unnamed'}):"
        )
        for line in transcript.text.splitlines():
            self.stdout.write("  " + line)
        summary = getattr(transcript.call, "summary", None)
        if summary is not None:
            self.stdout.write(f"Summary: {summary.summary or summary.error}")
            for key, value in sorted((summary.outcome or {}).items()):
                self.stdout.write(f"Outcome: {key} = {value}")

    def wait_for_transcript(self, sid: str, twilio, recording_sid: str, timeout_s: float):
        from transcripts.models import CallSummary, Recording, Transcript

        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        said = set()
        while time.monotonic() < deadline:
            call = Call.objects.get(sid=sid)
            recording = Recording.objects.filter(sid=recording_sid).first()
            run = Transcript.objects.filter(call=call).order_by("-id").first()
            if run is not None and run.status == Transcript.Status.COMPLETED:
                summary = CallSummary.objects.filter(call=call).first()
                # The summary comes last: keep the fakes up until it is written.
                if summary is not None and (summary.summary or summary.error):
                    return run
            elif run is not None and run.status == Transcript.Status.FAILED:
                raise CommandError(f"the transcription failed: {run.error}")
            if recording is not None and recording.state == Recording.State.FAILED:
                raise CommandError(
                    f"the worker could not download the recording: {recording.error}"
                )
            step = (
                "transcribing"
                if run is not None
                else "downloading"
                if twilio.media_requests(recording_sid)
                else "waiting for the worker"
            )
            if step not in said:
                self.stdout.write(f"Worker: {step}…")
                said.add(step)
            waited = time.monotonic() - started
            if waited > 15 and not twilio.media_requests(recording_sid):
                hint = (
                    "no request reached the fake Twilio API: is the Celery worker running "
                    "(scripts/run starts one), and was the app started with "
                    f"TWILIO_API_BASE_URL={twilio.base_url} (scripts/run --fakes)?"
                )
                raise CommandError(hint)
            time.sleep(0.25)
        raise CommandError(f"no transcript within {timeout_s:.0f}s: is the Celery worker running?")
