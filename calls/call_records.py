"""Database work for a live call, called from the media consumer through
`database_sync_to_async`: once at connect, once per turn, once at the end."""

import dataclasses
import logging

from django.db import transaction
from django.db.models import Count, F, Min, Q
from django.utils import timezone

from calls.bridge import SaveTurn
from calls.context import context_instructions
from calls.models import Call, Turn
from calls.outcomes import FAULT_REASONS, USAGE_FIELDS, CompletionReason
from voiceagents.realtime import AgentConfig

log = logging.getLogger(__name__)


def claim_stream(call_sid: str) -> tuple[int, AgentConfig] | None:
    """Mark the call's stream as connected, once: a token can open one stream only.

    Returns the call's primary key and its agent, or None if the call is unknown, has
    already had its stream, or has lost its agent (deleted after the webhook answered);
    such a call is finalised as a server error here, so it is never left in progress.
    """
    # One statement claims the stream; the reads after it need no transaction (and under
    # SQLite one would hold the database's write lock while the context is gathered).
    claimed = Call.objects.filter(
        sid=call_sid, stream_connected_at__isnull=True, ended_at__isnull=True
    ).update(stream_connected_at=timezone.now(), status=Call.Status.IN_PROGRESS)
    if not claimed:
        return None
    call = Call.objects.select_related("agent").get(sid=call_sid)
    if call.agent is None:
        log.error("call %s: its agent was deleted; the stream is refused", call_sid)
        finalize_call(
            call.pk,
            CompletionReason.SERVER_ERROR,
            "agent_missing",
            "The call's agent was deleted before its media stream connected.",
            {},
        )
        return None
    config = AgentConfig.from_agent(call.agent)
    about_the_caller = context_instructions(call)
    if about_the_caller:
        config = dataclasses.replace(
            config, instructions=f"{config.instructions}\n\n{about_the_caller}".strip()
        )
    return call.pk, config


def mark_answered(call_pk: int, stream_sid: str) -> None:
    Call.objects.filter(pk=call_pk).update(stream_sid=stream_sid, answered_at=timezone.now())


def save_turn(call_pk: int, turn: SaveTurn) -> None:
    Turn.objects.create(
        call_id=call_pk,
        speaker=turn.speaker,
        text=turn.text,
        started_ms=max(turn.started_ms, 0),
        interrupted=turn.interrupted,
        item_id=turn.item_id,
    )


def finalize_call(
    call_pk: int,
    reason: str,
    error_code: str,
    error_message: str,
    usage: dict[str, int],
    openai_errors: tuple[int, str] = (0, ""),
) -> None:
    """`openai_errors`: how many OpenAI errors the call met and the last one's code, kept
    even when the call went on past them."""
    with transaction.atomic():
        call = Call.objects.select_for_update().get(pk=call_pk)
        if call.ended_at is not None:
            return
        call.ended_at = timezone.now()
        since = call.answered_at or call.stream_connected_at or call.started_at
        call.duration_s = round((call.ended_at - since).total_seconds(), 3)
        call.completion_reason = reason
        call.error_code = error_code[:100]
        call.error_message = error_message
        call.status = Call.Status.FAILED if reason in FAULT_REASONS else Call.Status.COMPLETED
        for name in USAGE_FIELDS:
            setattr(call, name, getattr(call, name) + usage.get(name, 0))
        call.openai_error_count, call.openai_last_error = openai_errors[0], openai_errors[1][:100]
        spoken = call.turns.filter(speaker="agent").aggregate(
            first=Min("started_ms"), cut=Count("id", filter=Q(interrupted=True))
        )
        call.first_words_ms, call.barge_ins = spoken["first"], spoken["cut"]
        call.save()
        # After commit: the worker must see the finished row (and nothing is sent if the
        # transaction rolls back).
        from transcripts.tasks import call_completed

        call_completed.delay_on_commit(call.pk)


def record_transfer(call_pk: int, destination: str) -> None:
    Call.objects.filter(pk=call_pk).update(transferred_to=destination)


def count_tool_call(call_pk: int, failed: bool) -> None:
    Call.objects.filter(pk=call_pk).update(
        tool_calls=F("tool_calls") + 1, tool_failures=F("tool_failures") + int(failed)
    )
