"""How the agents are doing, per agent or overall, over the last N days: every figure
an SQL aggregate over the calls table (indexed by start time and by agent), so the page
stays fast at 100,000 calls. Percentiles are read with one ordered, offset query each,
which PostgreSQL and SQLite answer alike."""

import math
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import Avg, Count, F, Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from calls.models import Call
from calls.outcomes import USAGE_FIELDS
from voiceagents.model_catalog import realtime_cost

PERIODS = (7, 30, 90)


@dataclass
class Analytics:
    days: int
    calls: int = 0
    answered: int = 0
    failed: int = 0
    average_duration_s: float | None = None
    p95_duration_s: float | None = None
    average_first_words_ms: float | None = None
    p95_first_words_ms: float | None = None
    barge_ins: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    reasons: list[tuple[str, int]] = field(default_factory=list)
    per_day: list[dict] = field(default_factory=list)  # day, calls, answered, failed, cost

    @property
    def cost_per_call_usd(self) -> Decimal | None:
        return (self.cost_usd / self.calls) if self.calls else None


def calls_in(days: int, agent=None) -> QuerySet[Call]:
    since = timezone.now() - timedelta(days=days)
    calls = Call.objects.filter(started_at__gte=since)
    return calls.filter(agent=agent) if agent is not None else calls


def percentile(values: QuerySet, name: str, fraction: float) -> float | None:
    """The value `fraction` of the way up `values` ordered by `name` (nearest rank)."""
    present = values.exclude(**{f"{name}__isnull": True})
    count = present.count()
    if not count:
        return None
    rank = max(0, min(count - 1, math.ceil(fraction * count) - 1))
    return present.order_by(name).values_list(name, flat=True)[rank]


def analytics(days: int, agent=None) -> Analytics:
    calls = calls_in(days, agent)
    result = Analytics(days=days)
    totals = calls.aggregate(
        calls=Count("id"),
        answered=Count("id", filter=Q(answered_at__isnull=False)),
        failed=Count("id", filter=Q(status=Call.Status.FAILED)),
        average_duration_s=Avg("duration_s", filter=Q(answered_at__isnull=False)),
        tool_calls=Sum("tool_calls"),
        tool_failures=Sum("tool_failures"),
        tokens=Sum("total_tokens"),
        average_first_words_ms=Avg("first_words_ms"),
        barge_ins=Sum("barge_ins"),
    )
    result.calls, result.answered, result.failed = (
        totals["calls"],
        totals["answered"],
        totals["failed"],
    )
    result.average_duration_s = totals["average_duration_s"]
    result.tool_calls = totals["tool_calls"] or 0
    result.tool_failures = totals["tool_failures"] or 0
    result.tokens = totals["tokens"] or 0
    result.p95_duration_s = percentile(calls.filter(answered_at__isnull=False), "duration_s", 0.95)

    result.average_first_words_ms = totals["average_first_words_ms"]
    result.p95_first_words_ms = percentile(calls, "first_words_ms", 0.95)
    result.barge_ins = totals["barge_ins"] or 0

    result.reasons = [
        (Call(completion_reason=row["completion_reason"]).get_completion_reason_display(), row["n"])
        for row in calls.exclude(completion_reason="")
        .values("completion_reason")
        .annotate(n=Count("id"))
        .order_by("-n")
    ]
    result.per_day, result.cost_usd = per_day(calls)
    return result


def per_day(calls: QuerySet[Call]) -> tuple[list[dict], Decimal]:
    """Calls, answered, failed and Realtime cost per day in the current time zone; the
    cost from each day's tokens per model, at the list prices of voiceagents.model_catalog."""
    zone = timezone.get_current_timezone()
    rows = (
        calls.annotate(day=TruncDate("started_at", tzinfo=zone), model=F("agent__model"))
        .values("day", "model")
        .annotate(
            n=Count("id"),
            answered=Count("id", filter=Q(answered_at__isnull=False)),
            failed=Count("id", filter=Q(status=Call.Status.FAILED)),
            **{name: Sum(name) for name in USAGE_FIELDS},
        )
        .order_by("day")
    )
    days: dict = {}
    total = Decimal(0)
    for row in rows:
        empty = {"day": row["day"], "calls": 0, "answered": 0, "failed": 0, "cost": Decimal(0)}
        day = days.setdefault(row["day"], empty)
        day["calls"] += row["n"]
        day["answered"] += row["answered"]
        day["failed"] += row["failed"]
        usage = {name: row[name] or 0 for name in USAGE_FIELDS}
        cost = realtime_cost(row["model"] or "", usage) or Decimal(0)
        day["cost"] += cost
        total += cost
    return list(days.values()), total
