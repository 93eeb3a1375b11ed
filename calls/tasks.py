"""Periodic upkeep of call records (Celery beat)."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from calls.call_records import finalize_call
from calls.models import Call
from calls.outcomes import CompletionReason

log = logging.getLogger(__name__)


@shared_task
def finalise_unconnected_calls() -> int:
    """A call whose webhook was answered but whose media stream never connected (the caller
    hung up first, Twilio could not reach the stream URL, the token expired) would stay
    `ringing` for ever: end it once its stream token can no longer be used."""
    cutoff = timezone.now() - timedelta(seconds=settings.UNCONNECTED_CALL_TIMEOUT_S)
    stuck = list(
        Call.objects.filter(
            status=Call.Status.RINGING,
            stream_connected_at__isnull=True,
            ended_at__isnull=True,
            started_at__lt=cutoff,
        ).values_list("pk", flat=True)[:1000]
    )
    for call_pk in stuck:
        finalize_call(
            call_pk,
            CompletionReason.NEVER_CONNECTED,
            "stream_never_connected",
            f"No media stream within {settings.UNCONNECTED_CALL_TIMEOUT_S:g} s of the webhook.",
            {},
        )
    if stuck:
        log.warning("finalised %d calls whose media stream never connected", len(stuck))
    return len(stuck)
