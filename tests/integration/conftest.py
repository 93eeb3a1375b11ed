"""Fixtures that run the real app: Daphne in a subprocess on the test database, the fake
OpenAI Realtime server on loopback, and helpers to configure agents and place calls."""

import asyncio
import time
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from calls.models import Call, PhoneNumber, Turn
from tests.fakes.realtime_server import FakeRealtimeServer, FakeSession, RealtimeScript, Reply
from tests.fakes.twilio_caller import FakeTwilioCall
from tests.live import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_OPENAI_KEY,
    TEST_WEBHOOK_SHARED_KEY,
    BackgroundLoop,
    DaphneProcess,
    database_url_of_test_db,
)
from voiceagents.models import Agent, Tool

AGENT_NUMBER = "+15550002222"


@pytest.fixture(scope="session")
def background_loop():
    loop = BackgroundLoop()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def realtime_server(background_loop):
    server = FakeRealtimeServer(RealtimeScript(api_key=TEST_OPENAI_KEY))
    background_loop.run(server.start())
    yield server
    background_loop.run(server.stop())


def start_app(
    extra_env: dict[str, str], name: str, process: type[DaphneProcess] = DaphneProcess
) -> DaphneProcess:
    # VAR_DIR (default ROOT/var) also holds the SQLite test database: one per checkout.
    log_dir = Path(settings.VAR_DIR)
    log_dir.mkdir(exist_ok=True)
    return process(
        {"DATABASE_URL": database_url_of_test_db(), **extra_env}, log_dir / f"test-{name}.log"
    )


def app_server_env(realtime_server: FakeRealtimeServer) -> dict[str, str]:
    return {
        "OPENAI_BASE_URL": realtime_server.base_url,
        "OPENAI_SESSION_ROLLOVER_S": "3600",
        "TWILIO_WEBHOOK_SHARED_KEY_SECRET": TEST_WEBHOOK_SHARED_KEY[1],
        "TOOL_EGRESS_ALLOW": "127.0.0.0/8",  # the tests' tool servers
    }


@pytest.fixture(scope="session")
def app_server(django_db_setup, django_db_blocker, realtime_server):
    app = start_app(app_server_env(realtime_server), "daphne")
    yield app
    app.stop()


@pytest.fixture
def serving_app(app_server) -> DaphneProcess:
    """The app the callers of `caller_for` dial; a test module may serve them otherwise."""
    return app_server


@pytest.fixture
def realtime(realtime_server):
    """The fake Realtime server, with this test's sessions and violations separated out."""
    first_session = len(realtime_server.sessions)
    first_violation = len(realtime_server.violations)
    realtime_server.scripts.clear()
    realtime_server.script_for_next_connection = None
    realtime_server.test_sessions = lambda: realtime_server.sessions[first_session:]
    yield realtime_server
    realtime_server.scripts.clear()
    new_violations = realtime_server.violations[first_violation:]
    assert new_violations == [], f"the app broke the Realtime protocol: {new_violations}"


def script(**fields) -> RealtimeScript:
    return RealtimeScript(**{"api_key": TEST_OPENAI_KEY, **fields})


@pytest.fixture
def agent(transactional_db):
    agent = Agent.objects.create(
        name="Front desk",
        instructions="You answer the phone for a bakery. Be brief.",
        greeting="Hello, you have reached the bakery.",
    )
    end_call = Tool.objects.create(
        name="end_call",
        description="Hang up after saying goodbye.",
        kind=Tool.Kind.END_CALL,
        parameters={"type": "object", "properties": {}},
    )
    agent.tools.add(end_call)
    PhoneNumber.objects.create(number=AGENT_NUMBER, agent=agent)
    return agent


def make_caller(app: DaphneProcess, **kwargs) -> FakeTwilioCall:
    return FakeTwilioCall(
        app.base_url,
        auth_token=TEST_AUTH_TOKEN,
        account_sid=TEST_ACCOUNT_SID,
        to_number=kwargs.pop("to_number", AGENT_NUMBER),
        **kwargs,
    )


@pytest.fixture
def caller_for(serving_app):
    """Make fake Twilio callers; every one must end without protocol violations."""
    made: list[FakeTwilioCall] = []

    def make(**kwargs) -> FakeTwilioCall:
        call = make_caller(serving_app, **kwargs)
        made.append(call)
        return call

    yield make
    wait_until_the_app_finalised([call.call_sid for call in made])
    for call in made:
        assert call.violations == [], f"the app broke the Media Streams protocol: {call.violations}"


def wait_until_the_app_finalised(sids: list[str], within_s: float = 10.0) -> None:
    """Before the test database is emptied: calls whose stream connected are being
    finalised by the app process, and emptying tables under its writes deadlocks on
    PostgreSQL."""
    deadline = time.monotonic() + within_s
    while (
        time.monotonic() < deadline
        and Call.objects.filter(
            sid__in=sids, stream_connected_at__isnull=False, ended_at__isnull=True
        ).exists()
    ):
        time.sleep(0.05)


# --- Helpers shared by the fault, concurrency and tool tests -----------------------------


@database_sync_to_async
def load_call(sid: str) -> tuple[Call, list[Turn]]:
    call = Call.objects.get(sid=sid)
    return call, list(call.turns.all())


async def wait_for_end(sid: str, within_s: float = 10.0) -> Call:
    """The call row once the app has finalised it."""
    deadline = asyncio.get_running_loop().time() + within_s
    while asyncio.get_running_loop().time() < deadline:
        call, _ = await load_call(sid)
        if call.ended_at is not None:
            return call
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {sid} was not finalised within {within_s}s")


async def wait_for_turns(sid: str, count: int, within_s: float = 10.0) -> list[Turn]:
    """The call's stored turns once there are at least `count` of them."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        _, turns = await load_call(sid)
        if len(turns) >= count:
            return turns
        if asyncio.get_running_loop().time() >= deadline:
            raise AssertionError(f"call {sid} stored {len(turns)} turns, not {count}: {turns}")
        await asyncio.sleep(0.05)


def log_lines(app: DaphneProcess, sid: str, containing: str) -> list[str]:
    """The app's log lines about one call that contain a phrase."""
    return [line for line in app.log().splitlines() if sid in line and containing in line]


def spoken(turns: list[Turn]) -> list[tuple[str, str]]:
    return [(t.speaker, t.text) for t in turns]


class HealthyCall:
    """A plain call placed next to a faulty one: greeting, one question and answer, then
    the caller hangs up. `finish()` checks it ended as if nothing else had happened."""

    GREETING = "Hello, bakery here."
    QUESTION = "Do you have rye bread?"
    ANSWER = "Yes, fresh every morning."

    def __init__(self, realtime: FakeRealtimeServer, caller_for) -> None:
        self.realtime = realtime
        self.call: FakeTwilioCall = caller_for()
        self.session: FakeSession | None = None

    async def start(self) -> None:
        """Dial and connect; returns once this call's OpenAI session exists, so the next
        connection's script is the faulty call's."""
        first = len(self.realtime.sessions)
        self.realtime.script_for_next_connection = script(
            replies=[
                Reply(text=self.GREETING, audio_ms=300),
                Reply(text=self.ANSWER, audio_ms=300),
            ],
            caller_transcripts=[self.QUESTION],
        )
        await self.call.dial()
        await self.call.connect_stream()
        await self.realtime.wait_for(lambda: len(self.realtime.sessions) > first, timeout=5)
        self.session = self.realtime.sessions[first]

    async def finish(self) -> Call:
        call = self.call
        await call.wait_for(lambda: len(call.heard_audio) >= 300 * 8, timeout=10)
        await asyncio.sleep(0.2)  # a pause after the greeting, as callers do
        await call.speak_and_wait(400)
        turns = await wait_for_turns(call.call_sid, 3)
        assert spoken(turns) == [
            ("agent", self.GREETING),
            ("caller", self.QUESTION),
            ("agent", self.ANSWER),
        ]
        await call.hangup()
        stored = await wait_for_end(call.call_sid)
        assert (stored.completion_reason, stored.status) == ("caller_hangup", "completed")
        assert stored.error_code == ""
        _, turns = await load_call(call.call_sid)
        assert [t.interrupted for t in turns] == [False, False, False]
        assert self.session is not None
        assert bytes(self.session.input_audio) == bytes(
            call.sent_audio[: len(self.session.input_audio)]
        )
        return stored
