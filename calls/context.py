"""What the agent is told about the person on the line, added to its instructions when
the stream opens: for an outbound call, that we called them and the context staff gave
(name, notes); for any call, what earlier calls between this agent and this number were
about (their summaries, else their last turns), so the greeting can use the name."""

from django.db.models import F, Q, Window
from django.db.models.functions import RowNumber

from calls.models import Call, Turn

EARLIER_CALLS = 3
TURNS_WITHOUT_SUMMARY = 4


def other_party(call: Call) -> str:
    return call.to_number if call.direction.startswith("outbound") else call.from_number


def context_instructions(call: Call) -> str:
    lines = []
    if call.direction.startswith("outbound"):
        lines.append("This is an outbound call: you phoned this person; they did not call you.")
    name = str(call.context.get("name") or "").strip()
    notes = str(call.context.get("notes") or "").strip()
    if name:
        lines.append(f"The person's name: {name}.")
    if notes:
        lines.append(f"Notes from staff about this call: {notes}")
    party = other_party(call)
    earlier = list(
        Call.objects.filter(agent_id=call.agent_id, ended_at__isnull=False)
        .filter(
            Q(from_number=party, direction="inbound")
            | Q(to_number=party, direction__startswith="outbound")
        )
        .exclude(pk=call.pk)
        .select_related("summary")
        .only("started_at", "summary__summary")
        .order_by("-started_at")[:EARLIER_CALLS]
    )
    if earlier:
        said = last_turns([c.pk for c in earlier if not summary_of(c)])
        lines.append("Earlier calls with this person (most recent first):")
        for previous in earlier:
            about = summary_of(previous) or said.get(previous.pk) or "(nothing was said)"
            lines.append(f"- {previous.started_at:%Y-%m-%d}: {about}")
    return "\n".join(lines)


def summary_of(call: Call) -> str:
    summary = getattr(call, "summary", None)
    return summary.summary if summary is not None else ""


def last_turns(call_pks: list[int]) -> dict[int, str]:
    """The last few turns of each call, oldest first, in one query however many calls:
    this runs as every call's stream opens."""
    if not call_pks:
        return {}
    newest_first = Window(
        RowNumber(), partition_by=F("call_id"), order_by=(F("started_ms").desc(), F("id").desc())
    )
    rows = (
        Turn.objects.filter(call_id__in=call_pks)
        .annotate(recency=newest_first)
        .filter(recency__lte=TURNS_WITHOUT_SUMMARY)
        .order_by("call_id", "started_ms", "id")
        .values_list("call_id", "speaker", "text")
    )
    said: dict[int, list[str]] = {}
    for call_pk, speaker, text in rows:
        said.setdefault(call_pk, []).append(f"{speaker}: {text}")
    return {pk: " / ".join(turns) for pk, turns in said.items()}
