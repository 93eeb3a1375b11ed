"""Place a simulated phone call into a running app, with no Twilio or OpenAI account.

It starts the fake OpenAI Realtime server (the app must have been started with
OPENAI_BASE_URL pointing at it, see the README), makes sure a demo agent answers the
number, then plays Twilio: signed webhook, media stream in real time, caller speech,
a barge-in, and a hang-up. It prints the stored call as the read API would return it.
"""

import asyncio

import orjson
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from calls.api import call_detail
from calls.models import Call, PhoneNumber
from voiceagents.models import Agent, Tool

DEMO_NUMBER = "+15550100000"


def ensure_demo_agent(number: str) -> Agent:
    phone = PhoneNumber.objects.select_related("agent").filter(number=number).first()
    if phone is not None:
        return phone.agent
    agent = Agent.objects.create(
        name="Demo bakery",
        instructions="You answer the phone for a small bakery. Be brief and friendly.",
        greeting="Hello, you have reached the bakery. How can I help?",
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
    help = "Simulate a caller phoning the running app, against a fake OpenAI Realtime server."

    def add_arguments(self, parser):
        parser.add_argument("--app-url", default="http://127.0.0.1:8000")
        parser.add_argument("--to", default=DEMO_NUMBER, help="the number called (E.164)")
        parser.add_argument("--from", dest="from_number", default="+15550199999")
        parser.add_argument("--openai-port", type=int, default=8765)
        parser.add_argument(
            "--no-fake-openai",
            action="store_true",
            help="do not start the fake OpenAI server (one is already running)",
        )

    def handle(self, *args, **options):
        try:
            from tests.fakes.realtime_server import FakeRealtimeServer, RealtimeScript, Reply
            from tests.fakes.twilio_caller import FakeTwilioCall
        except ImportError as exc:
            raise CommandError(f"the fakes live in tests/fakes: run from the repo ({exc})") from exc

        agent = ensure_demo_agent(options["to"])
        self.stdout.write(f"Calling {options['to']} (agent: {agent.name}) at {options['app_url']}")
        script = RealtimeScript(
            replies=[
                Reply(text="Hello, you have reached the bakery. How can I help?", audio_ms=1500),
                Reply(
                    text="We open at eight in the morning and close at six in the evening, "
                    "every day except public holidays.",
                    audio_ms=5000,
                ),
                Reply(text="Yes, we deliver within five miles of the shop.", audio_ms=2000),
            ],
            caller_transcripts=["When are you open?", "Sorry, one more thing, do you deliver?"],
            reply_delay_ms=300,
            api_key=settings.OPENAI_API_KEY,
        )
        sid = asyncio.run(self.place_call(options, script, FakeRealtimeServer, FakeTwilioCall))
        call = Call.objects.select_related("agent").get(sid=sid)
        self.stdout.write(orjson.dumps(call_detail(call), option=orjson.OPT_INDENT_2).decode())

    async def place_call(self, options, script, server_class, caller_class) -> str:
        server = None
        if not options["no_fake_openai"]:
            server = server_class(script, port=options["openai_port"])
            await server.start()
            self.stdout.write(f"Fake OpenAI Realtime server at {server.base_url}")
        try:
            caller = caller_class(
                options["app_url"],
                auth_token=settings.TWILIO_AUTH_TOKEN,
                from_number=options["from_number"],
                to_number=options["to"],
                public_base_url=settings.PUBLIC_BASE_URL,
            )
            answer = await caller.dial()
            if answer.status_code != 200 or not caller.stream_url:
                raise CommandError(f"the app did not answer with a stream: {answer.text}")
            await caller.connect_stream()
            self.stdout.write("Connected; the agent greets the caller…")
            await asyncio.sleep(2.5)
            self.stdout.write("Caller: 'When are you open?'")
            await caller.speak_and_wait(1200)
            await asyncio.sleep(2.5)
            self.stdout.write("Caller interrupts the answer…")
            await caller.speak_and_wait(1000)
            await asyncio.sleep(2.5)
            self.stdout.write("Caller hangs up.")
            await caller.hangup()
            await sync_to_async(self.wait_for_final, thread_sensitive=True)(caller.call_sid)
            problems = caller.violations + (server.violations if server else [])
            if problems:
                raise CommandError(f"protocol violations: {problems}")
            return caller.call_sid
        finally:
            if server is not None:
                await server.stop()

    def wait_for_final(self, sid: str, timeout_s: float = 10.0) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if Call.objects.filter(sid=sid, ended_at__isnull=False).exists():
                return
            time.sleep(0.1)
        raise CommandError(f"call {sid} was not finalised by the app within {timeout_s}s")
