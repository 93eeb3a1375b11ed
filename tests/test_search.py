"""Searching calls: words said (post-call transcript or live turns), caller name and
number, agent, outcome, date and status. Runs on SQLite (LIKE) in the embedded pass and
on PostgreSQL (full-text search on GIN indexes) in the services pass."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from tests.factories import make_agent, make_call, make_turn
from tests.live import require_services
from transcripts.models import CallSummary, Transcript
from transcripts.search import CallFilterForm, filter_calls, index_call

pytestmark = pytest.mark.django_db


@pytest.fixture
def calls():
    bakery, dentist = make_agent(name="Bakery"), make_agent(name="Dentist")
    now = timezone.now()
    maria = make_call(
        "CA" + "1" * 32,
        agent=bakery,
        from_number="+15551230001",
        started_at=now - timedelta(days=1),
    )
    Transcript.objects.create(
        call=maria,
        mode="diarized",
        status="completed",
        caller_name="Maria",
        text="[00:01] Maria: I would like two sourdough loaves.",
    )
    CallSummary.objects.create(
        call=maria, source="recording", outcome={"order_placed": True, "item": "sourdough"}
    )
    john = make_call(
        "CA" + "2" * 32,
        agent=dentist,
        from_number="+15559870002",
        started_at=now - timedelta(days=10),
        status="failed",
    )
    make_turn(john, 0, "My tooth hurts since yesterday.", speaker="caller")
    CallSummary.objects.create(call=john, source="live", outcome={"order_placed": False})
    failed_run = make_call("CA" + "3" * 32, agent=bakery, started_at=now)
    Transcript.objects.create(
        call=failed_run,
        mode="diarized",
        status="failed",
        text="sourdough in a failed run is not searched",
    )
    for call in (maria, john, failed_run):
        index_call(call)  # as the pipeline does when a call's post-call work ends
    return {"maria": maria, "john": john, "failed_run": failed_run}


def found(**filters) -> list[str]:
    return [call.sid for call in filter_calls(CallFilterForm(filters))]


def test_words_said_in_the_post_call_transcript(calls):
    assert found(q="sourdough") == [calls["maria"].sid]
    assert found(q="loaves") == [calls["maria"].sid]


def test_words_said_in_the_live_turns(calls):
    assert found(q="tooth") == [calls["john"].sid]


def test_caller_name_number_and_agent(calls):
    assert found(q="Maria") == [calls["maria"].sid]
    assert found(q="9870002") == [calls["john"].sid]
    assert found(q="Dentist") == [calls["john"].sid]


def test_outcome_date_status_and_agent_filters(calls):
    assert found(outcome="order_placed=true") == [calls["maria"].sid]
    assert found(outcome="order_placed=false") == [calls["john"].sid]
    assert found(outcome="item=sourdough") == [calls["maria"].sid]
    week_ago = (timezone.now() - timedelta(days=7)).date().isoformat()
    assert calls["john"].sid not in found(date_from=week_ago)
    assert found(date_to=week_ago) == [calls["john"].sid]
    assert found(status="failed") == [calls["john"].sid]
    assert set(found(agent=str(calls["maria"].agent_id))) == {
        calls["maria"].sid,
        calls["failed_run"].sid,
    }


def test_bad_filters_are_explained_not_ignored(calls):
    form = CallFilterForm(
        {"outcome": "no equals sign", "date_from": "2026-02-01", "date_to": "2026-01-01"}
    )
    assert not form.is_valid()
    assert "key=value" in form.errors["outcome"][0]
    assert "before the start" in form.errors["date_to"][0]
    assert list(filter_calls(form)) == []


def test_the_list_page_searches_and_pages_keep_the_filters(client, calls):
    client.force_login(get_user_model().objects.create_superuser("boss", "b@example.com", None))
    page = client.get("/calls/?q=sourdough").content.decode()
    assert calls["maria"].sid in page and calls["john"].sid not in page
    assert "1 call" in page
    assert "<strong>Maria</strong> +15551230001" in page  # the caller's name, once known
    assert 'href="/calls/export.csv?q=sourdough"' in page
    for n in range(60):
        make_call(f"CA{n:032x}", agent=calls["maria"].agent, from_number="+15550000000")
    page = client.get("/calls/?q=5550000000").content.decode()
    assert "Page 1 of 2" in page and "q=5550000000&amp;page=2" in page
    bad = client.get("/calls/?date_from=yesterday").content.decode()
    assert "Enter a valid date" in bad


@pytest.mark.postgres
def test_postgres_word_search_uses_the_stored_document_and_its_index(request, calls):
    """bench/search.py measures the speed; here: the plan can use the GIN index."""
    require_services(request.node)  # the services pass runs it on PostgreSQL
    from calls.models import Call
    from transcripts.search import mentioning

    # On a table this small the planner prefers walking any index over the GIN one, so
    # every other way to reach the rows is switched off: a bitmap scan needs an index
    # condition, which only the GIN index can give. Without it the plan is a (disabled)
    # sequential scan and the assertion fails.
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_indexscan = off")
        cursor.execute("SET enable_indexonlyscan = off")
        try:
            plan = Call.objects.filter(mentioning("sourdough")).explain()
        finally:
            cursor.execute("RESET ALL")
    assert "call_search_document" in plan, plan


def test_index_calls_command_indexes_calls_without_a_document(calls):
    from django.core.management import call_command

    from transcripts.models import CallSearch

    CallSearch.objects.all().delete()
    call_command("index_calls")
    assert CallSearch.objects.count() == 0  # none of the fixture calls has ended
    Call = calls["maria"].__class__
    Call.objects.update(ended_at=timezone.now())
    call_command("index_calls")
    assert found(q="sourdough") == [calls["maria"].sid]
