"""Several calls at once in one app process: a fault or a staff hang-up ends one call
and no other, and ten calls in parallel all complete with their own turns."""

import asyncio

import httpx
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.test import Client

from tests.fakes.realtime_server import Reply
from tests.integration.conftest import (
    HealthyCall,
    load_call,
    script,
    spoken,
    wait_for_end,
    wait_for_turns,
)

pytestmark = pytest.mark.django_db(transaction=True)

APOLOGY = settings.APOLOGY_TEXT


async def place(realtime, caller_for, call_script):
    """Dial and connect one call; returns it with its own OpenAI session."""
    first = len(realtime.sessions)
    realtime.script_for_next_connection = call_script
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await realtime.wait_for(lambda: len(realtime.sessions) > first, timeout=5)
    return call, realtime.sessions[first]


async def test_a_fatal_openai_error_in_one_call_leaves_the_other_untouched(
    agent, realtime, caller_for
):
    steady, steady_session = await place(
        realtime,
        caller_for,
        script(
            replies=[
                Reply(text="Bakery, good morning.", audio_ms=300),
                Reply(text="We have rye and spelt today.", audio_ms=1500),
                Reply(function_call=("end_call", {})),
                Reply(text="Bye now.", audio_ms=300),
            ],
            caller_transcripts=["What bread do you have?", "Great, thanks."],
            audio_speed=1.0,
        ),
    )
    failing, failing_session = await place(
        realtime,
        caller_for,
        script(
            replies=[
                Reply(text="Bakery, hello.", audio_ms=300),
                Reply(error=("insufficient_quota", "insufficient_quota")),
            ],
            caller_transcripts=["Can I order a cake?"],
            reply_delay_ms=200,
            first_reply_delay_ms=0,
        ),
    )
    for call in (steady, failing):
        await call.wait_for(lambda call=call: len(call.heard_audio) >= 300 * 8, timeout=10)
    # Both callers ask at the same moment; one answer fails while the other is playing.
    await asyncio.sleep(0.2)
    await asyncio.gather(steady.speak_and_wait(400), failing.speak_and_wait(400))

    await failing.wait_closed(timeout=10)
    assert failing.after_stream_say_texts == [APOLOGY]
    failed = await wait_for_end(failing.call_sid)
    assert (failed.completion_reason, failed.error_code) == ("openai_error", "insufficient_quota")
    assert steady.closed_by_app is False  # still talking
    assert not steady_session.closed

    await wait_for_turns(steady.call_sid, 3)
    await steady.speak_and_wait(400)
    await steady.wait_closed(timeout=15)
    assert steady.after_stream_say_texts == []
    stored, turns = await load_call(steady.call_sid)
    assert (stored.completion_reason, stored.status) == ("agent_hangup", "completed")
    assert spoken(turns) == [
        ("agent", "Bakery, good morning."),
        ("caller", "What bread do you have?"),
        ("agent", "We have rye and spelt today."),
        ("caller", "Great, thanks."),
        ("tool", "end_call({})"),
        ("agent", "Bye now."),
    ]
    _, failed_turns = await load_call(failing.call_sid)
    assert spoken(failed_turns) == [("agent", "Bakery, hello."), ("caller", "Can I order a cake?")]
    # Each call's audio went to its own session only.
    for call, session in ((steady, steady_session), (failing, failing_session)):
        assert bytes(session.input_audio) == bytes(call.sent_audio[: len(session.input_audio)])


async def test_ten_calls_at_once_all_complete(agent, realtime, caller_for):
    calls = [HealthyCall(realtime, caller_for) for _ in range(10)]
    for call in calls:
        await call.start()
    stored = await asyncio.gather(*(call.finish() for call in calls))
    assert [s.completion_reason for s in stored] == ["caller_hangup"] * 10
    assert len({s.sid for s in stored}) == 10
    await realtime.wait_for(lambda: all(call.session.closed for call in calls), timeout=5)


@sync_to_async
def staff_session_cookie() -> str:
    staff = User.objects.create_user("reviewer", password="unused-pw-123", is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_call", "hang_up_call"])
    )
    client = Client()
    client.force_login(staff)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def test_staff_hang_up_ends_only_that_call(agent, realtime, caller_for, app_server):
    keep = HealthyCall(realtime, caller_for)
    await keep.start()
    ended, _ = await place(
        realtime, caller_for, script(replies=[Reply(text="Bakery, hello.", audio_ms=300)])
    )
    await ended.wait_for(lambda: len(ended.heard_audio) >= 300 * 8, timeout=10)
    await wait_for_turns(ended.call_sid, 1)

    cookie = await staff_session_cookie()
    async with httpx.AsyncClient(
        base_url=app_server.base_url, cookies={settings.SESSION_COOKIE_NAME: cookie}
    ) as staff:
        page = await staff.get(f"/calls/{ended.call_sid}/")
        assert page.status_code == 200
        csrf = staff.cookies["csrftoken"]
        response = await staff.post(
            f"/calls/{ended.call_sid}/hang-up", data={"csrfmiddlewaretoken": csrf}
        )
    assert response.status_code == 302

    await ended.wait_closed(timeout=10)
    assert ended.closed_by_app
    assert ended.after_stream_say_texts == []  # not a fault: no apology
    stored, turns = await load_call(ended.call_sid)
    assert (stored.completion_reason, stored.status) == ("staff_hangup", "completed")
    assert spoken(turns) == [("agent", "Bakery, hello.")]
    await keep.finish()
