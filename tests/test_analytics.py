"""The analytics page's figures, computed in SQL: per agent and overall, over a period."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from calls.analytics import analytics, percentile
from calls.call_records import finalize_call
from calls.models import Call
from tests.factories import make_agent, make_call, make_turn

pytestmark = pytest.mark.django_db


@pytest.fixture
def bakery_calls():
    """Ten answered calls of 10..100 s (first words at 100..1000 ms), one failed, one
    unanswered, one old; and one call of another agent."""
    bakery = make_agent(name="Bakery", model="gpt-realtime-mini")
    other = make_agent(name="Florist")
    now = timezone.now()
    for n in range(1, 11):
        make_call(
            f"CA{n:032x}",
            agent=bakery,
            answered_at=now,
            ended_at=now,
            duration_s=10.0 * n,
            completion_reason="caller_hangup",
            status=Call.Status.COMPLETED,
            input_audio_tokens=600,
            output_audio_tokens=600,
            total_tokens=1200,
            tool_calls=2 if n == 1 else 0,
            tool_failures=1 if n == 1 else 0,
            first_words_ms=100 * n,
            barge_ins=1 if n <= 3 else 0,
        )
    make_call(
        "CA" + "f" * 32, agent=bakery, status=Call.Status.FAILED, completion_reason="openai_error"
    )
    make_call(
        "CA" + "e" * 32, agent=bakery, completion_reason="no_answer", direction="outbound-api"
    )
    old = make_call("CA" + "d" * 32, agent=bakery, answered_at=now, duration_s=999.0)
    Call.objects.filter(pk=old.pk).update(started_at=now - timedelta(days=40))
    make_call("CA" + "c" * 32, agent=other, answered_at=now, duration_s=5.0)
    return bakery


def test_the_figures_of_one_agent(bakery_calls):
    figures = analytics(30, bakery_calls)

    assert (figures.calls, figures.answered, figures.failed) == (12, 10, 1)
    assert figures.average_duration_s == 55.0
    assert figures.p95_duration_s == 100.0
    assert figures.average_first_words_ms == 550.0
    assert figures.p95_first_words_ms == 1000
    assert figures.barge_ins == 3
    assert (figures.tool_calls, figures.tool_failures) == (2, 1)
    assert figures.tokens == 12_000
    # gpt-realtime-mini: $10 and $20 per million audio tokens in and out.
    assert figures.cost_usd == Decimal("0.18")
    assert dict(figures.reasons) == {"Caller hung up": 10, "OpenAI error": 1, "Not answered": 1}
    (today,) = figures.per_day
    assert (today["calls"], today["answered"], today["failed"]) == (12, 10, 1)


def test_overall_and_longer_periods_count_every_agent_and_older_calls(bakery_calls):
    assert analytics(30).calls == 13
    assert analytics(90, bakery_calls).calls == 13


def test_percentile_is_the_nearest_rank():
    agent = make_agent()
    for n in range(1, 21):
        make_call(f"CA{n:032x}", agent=agent, duration_s=float(n))

    calls = Call.objects.all()
    assert percentile(calls, "duration_s", 0.95) == 19.0
    assert percentile(calls, "duration_s", 0.5) == 10.0
    assert percentile(Call.objects.none(), "duration_s", 0.95) is None


def test_the_page_shows_the_figures_to_staff_who_may_see_calls(bakery_calls):
    staff = get_user_model().objects.create_user("s", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_call"))
    client = Client()
    client.force_login(staff)

    page = client.get(f"/analytics/?agent={bakery_calls.pk}&days=7").content.decode()

    assert "Bakery · last 7 days" in page
    assert "12 (10 answered, 1 failed)" in page
    assert "average 55 s, 95th percentile 100 s" in page
    assert 'id="chart-data"' in page and "chart.umd.min" in page


def test_a_call_keeps_its_first_word_latency_and_barge_ins_when_it_ends():
    call = make_call(agent=make_agent())
    make_turn(call, 640, "Hello, bakery.")
    make_turn(call, 2000, "When do you open?", speaker="caller")
    make_turn(call, 3100, "We open at", interrupted=True)
    make_turn(call, 5200, "Seven.", interrupted=True)

    finalize_call(call.pk, "caller_hangup", "", "", {})

    call.refresh_from_db()
    assert (call.first_words_ms, call.barge_ins) == (640, 2)
