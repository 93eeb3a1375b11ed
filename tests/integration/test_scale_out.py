"""Scale-out: two Daphne processes sharing one PostgreSQL database and one Redis. A call's
media stream is held by process A; a staff member whose requests land on process B
follows its live transcript and ends it, and the hang-up reaches A through the Redis
channel layer. Also /healthz's Redis check, both ways."""

import asyncio
import os
import re

import httpx
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from calls.models import Call
from tests.fakes.realtime_server import Reply
from tests.integration.conftest import make_caller, script, start_app
from tests.live import ROOT, DaphneProcess, database_url_of_test_db, free_port, require_services

pytestmark = [pytest.mark.redis, pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

GREETING = "Hello, you have reached the bakery."
QUESTION = "Do you deliver on Sundays?"
ANSWER = "Yes, before noon."
STAFF_PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def two_apps(request, django_db_setup, django_db_blocker, realtime_server):
    """Process A and process B: same database, same Redis, same OpenAI (fake)."""
    require_services(request.node)
    env = {
        "REDIS_URL": os.environ["TEST_REDIS_URL"],
        "OPENAI_BASE_URL": realtime_server.base_url,
        # Several tests log in within a minute, and other runs may share this Redis.
        "RATE_LIMIT_LOGIN_PER_MIN": "0",
    }
    app_a = start_app(env, "scale-out-a")
    try:
        app_b = start_app(env, "scale-out-b")
    except BaseException:
        app_a.stop()
        raise
    yield app_a, app_b
    app_b.stop()
    app_a.stop()


@database_sync_to_async
def make_staff_user(username: str) -> None:
    user = get_user_model().objects.create_user(username, password=STAFF_PASSWORD, is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_call", "hang_up_call"])
    )


@database_sync_to_async
def load_call(sid: str) -> tuple[Call, list[str]]:
    call = Call.objects.get(sid=sid)
    return call, [turn.text for turn in call.turns.all()]


async def call_once_ended(sid: str, within_s: float = 15.0) -> tuple[Call, list[str]]:
    for _ in range(int(within_s / 0.05)):
        call, said = await load_call(sid)
        if call.ended_at is not None:
            return call, said
        await asyncio.sleep(0.05)
    raise AssertionError(f"call {sid} was not finalised within {within_s}s")


def csrf_token_in(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, html[:1000]
    return found.group(1)


async def log_in(http: httpx.AsyncClient, username: str) -> None:
    """Through the admin's login form, as a person would."""
    form = await http.get("/admin/login/?next=/calls/")
    response = await http.post(
        "/admin/login/?next=/calls/",
        data={
            "username": username,
            "password": STAFF_PASSWORD,
            "csrfmiddlewaretoken": csrf_token_in(form.text),
            "next": "/calls/",
        },
    )
    assert response.status_code == 302, response.text[:1000]
    assert response.headers["location"] == "/calls/"


async def test_staff_on_one_process_follow_and_end_a_call_held_by_another(
    two_apps, agent, realtime
):
    app_a, app_b = two_apps
    realtime.script_for_next_connection = script(
        replies=[Reply(text=GREETING, audio_ms=400), Reply(text=ANSWER, audio_ms=400)],
        caller_transcripts=[QUESTION],
    )
    call = make_caller(app_a)
    assert (await call.dial()).status_code == 200
    assert call.stream_url.startswith(app_a.base_url.replace("http", "ws"))
    await call.connect_stream()
    await call.wait_for(lambda: len(call.heard_audio) >= 400 * 8, timeout=10)
    await call.speak_and_wait(500)

    await make_staff_user("reviewer")
    async with httpx.AsyncClient(base_url=app_b.base_url, timeout=10) as staff:
        await log_in(staff, "reviewer")

        # B has no socket for this call; the turns A stored reach B through the database.
        listed = await staff.get("/calls/")
        assert call.call_sid in listed.text
        transcript = ""
        for _ in range(100):
            transcript = (await staff.get(f"/calls/{call.call_sid}/turns")).text
            if ANSWER in transcript:
                break
            await asyncio.sleep(0.1)
        assert GREETING in transcript and QUESTION in transcript and ANSWER in transcript
        assert 'data-ended="false"' in transcript

        detail = await staff.get(f"/calls/{call.call_sid}/")
        assert "End call" in detail.text
        hang_up_url = f"/calls/{call.call_sid}/hang-up"

        # The button's form is CSRF-protected: a forged POST without the token is refused.
        forged = await staff.post(hang_up_url)
        assert forged.status_code == 403
        assert not call.closed_by_app

        pressed = await staff.post(
            hang_up_url, data={"csrfmiddlewaretoken": csrf_token_in(detail.text)}
        )
        assert pressed.status_code == 302
        assert pressed.headers["location"] == f"/calls/{call.call_sid}/"

        # A, which holds the stream, ends the call.
        await call.wait_closed(timeout=15)
        assert call.closed_by_app
        assert call.violations == []
        stored, said = await call_once_ended(call.call_sid)
        assert stored.completion_reason == "staff_hangup"
        assert stored.status == "completed"

        ended_page = await staff.get(f"/calls/{call.call_sid}/")
        assert "Ended by staff" in ended_page.text
        assert "End call" not in ended_page.text

    assert f"call {call.call_sid}: ended by staff (reviewer)" in app_a.log()
    assert f"call {call.call_sid}: hang-up requested by reviewer" in app_b.log()
    assert "ended by staff" not in app_b.log()
    assert said[:3] == [GREETING, QUESTION, ANSWER]


def test_healthz_reports_redis_when_it_answers(two_apps):
    for app in two_apps:
        response = httpx.get(app.base_url + "/healthz")

        assert response.status_code == 200
        assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_healthz_fails_when_redis_is_unreachable(request, django_db_setup, realtime_server):
    require_services(request.node)
    nobody_listens = f"redis://127.0.0.1:{free_port()}/0"
    app = DaphneProcess(
        {
            "DATABASE_URL": database_url_of_test_db(),
            "REDIS_URL": nobody_listens,
            "OPENAI_BASE_URL": realtime_server.base_url,
        },
        ROOT / "var" / "test-redis-unreachable.log",
        require_healthy=False,
    )
    try:
        response = httpx.get(app.base_url + "/healthz", timeout=10)
    finally:
        app.stop()

    assert response.status_code == 503
    assert response.json() == {
        "status": "error",
        "database": "ok",
        "redis": "error: ConnectionError",
    }
