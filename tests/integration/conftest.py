"""Fixtures that run the real app: Daphne in a subprocess on the test database, the fake
OpenAI Realtime server on loopback, and helpers to configure agents and place calls."""

from pathlib import Path

import pytest

from calls.models import PhoneNumber
from tests.fakes.realtime_server import FakeRealtimeServer, RealtimeScript
from tests.fakes.twilio_caller import FakeTwilioCall
from tests.live import (
    ROOT,
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_OPENAI_KEY,
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


def start_app(extra_env: dict[str, str], name: str) -> DaphneProcess:
    log_dir = Path(ROOT, "var")
    log_dir.mkdir(exist_ok=True)
    return DaphneProcess(
        {"DATABASE_URL": database_url_of_test_db(), **extra_env}, log_dir / f"test-{name}.log"
    )


@pytest.fixture(scope="session")
def app_server(django_db_setup, django_db_blocker, realtime_server):
    app = start_app(
        {"OPENAI_BASE_URL": realtime_server.base_url, "OPENAI_SESSION_ROLLOVER_S": "3600"},
        "daphne",
    )
    yield app
    app.stop()


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
    return RealtimeScript(api_key=TEST_OPENAI_KEY, **fields)


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
def caller_for(app_server):
    """Make fake Twilio callers; every one must end without protocol violations."""
    made: list[FakeTwilioCall] = []

    def make(**kwargs) -> FakeTwilioCall:
        call = make_caller(app_server, **kwargs)
        made.append(call)
        return call

    yield make
    for call in made:
        assert call.violations == [], f"the app broke the Media Streams protocol: {call.violations}"
