"""The beat task that ends calls whose media stream never connected."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from calls.models import Call
from calls.tasks import finalise_unconnected_calls

pytestmark = pytest.mark.django_db


def make_call(sid: str, age_s: float, **fields) -> Call:
    return Call.objects.create(
        sid=sid, started_at=timezone.now() - timedelta(seconds=age_s), **fields
    )


def test_a_call_whose_stream_never_connected_is_ended_after_the_bound():
    limit = settings.UNCONNECTED_CALL_TIMEOUT_S
    stuck = make_call("CA" + "1" * 32, limit + 60)
    fresh = make_call("CA" + "2" * 32, limit - 60)
    connected = make_call(
        "CA" + "3" * 32,
        limit + 60,
        status=Call.Status.IN_PROGRESS,
        stream_connected_at=timezone.now() - timedelta(seconds=limit),
    )

    assert finalise_unconnected_calls() == 1

    stuck.refresh_from_db()
    assert (stuck.status, stuck.completion_reason) == ("failed", "never_connected")
    assert stuck.error_code == "stream_never_connected"
    assert stuck.ended_at is not None
    for untouched in (fresh, connected):
        untouched.refresh_from_db()
        assert untouched.ended_at is None and untouched.completion_reason == ""
    assert finalise_unconnected_calls() == 0  # once only


def test_the_task_is_on_the_beat_schedule():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "calls.tasks.finalise_unconnected_calls" in tasks
