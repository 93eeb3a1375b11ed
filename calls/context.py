"""What the agent is told about the person on the line, added to its instructions when
the stream opens: for an outbound call, that we called them and the context staff gave
(name, notes); for any call, what earlier calls between this agent and this number were
about (their summaries, else their last turns), so the greeting can use the name."""

from django.db.models import Q

from calls.models import Call

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
        .order_by("-started_at")[:EARLIER_CALLS]
    )
    if earlier:
        lines.append("Earlier calls with this person (most recent first):")
        for previous in earlier:
            lines.append(f"- {previous.started_at:%Y-%m-%d}: {what_it_was_about(previous)}")
    return "\n".join(lines)


def what_it_was_about(call: Call) -> str:
    summary = getattr(call, "summary", None)
    if summary is not None and summary.summary:
        return summary.summary
    turns = list(call.turns.order_by("-started_ms")[:TURNS_WITHOUT_SUMMARY])[::-1]
    return " / ".join(f"{t.speaker}: {t.text}" for t in turns) or "(nothing was said)"
