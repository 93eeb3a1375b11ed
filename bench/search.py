"""Call search at scale: seeds N calls (default 100,000) with post-call transcripts,
summaries with outcomes and ten live turns each (1,000,000 turns), then times the call
list page (the query, the count for paging, and the rendered page) for typical searches.

    python -m bench.search                     # PostgreSQL from var/test-services.env
    python -m bench.search --sqlite            # the embedded default
    python -m bench.search --calls 20000       # fewer calls

It uses a database of its own (`voiceagents_bench` on the test PostgreSQL server, or
var/bench-search.sqlite3) and keeps it between runs: seeding is skipped when it already
holds the calls asked for.
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Common words, and a long tail of rarer ones (as speech has): a word of the tail turns
# up in about one call in a hundred.
WORDS = ["bread", "order", "tomorrow", "delivery", "price", "appointment", "question"]
RARE_WORDS = [
    a + b
    for a in ("sour", "rye", "spelt", "oat", "corn", "bran", "malt", "seed", "bun", "loaf")
    for b in ("dough", "crust", "crumb", "roll", "cake", "bake", "twist", "ring", "knot", "pie")
]
NAMES = ["Maria", "John", "Aisha", "Wei", "Lucas", "Emma", "Olga", "Tom", "Sara", "Omar"]


def use_database(sqlite: bool, turns_per_call: int) -> None:
    """A database of the benchmark's own, kept between runs (seeding takes minutes); one
    per number of turns per call, and apart from the call benchmark's, which starts afresh."""
    name = f"voiceagents_search_{turns_per_call}t"
    if sqlite:
        os.environ["DATABASE_URL"] = f"sqlite:///{ROOT / 'var' / (name + '.sqlite3')}"
        return
    env_file = ROOT / "var" / "test-services.env"
    urls = dict(
        line.removeprefix("export ").split("=", 1)
        for line in env_file.read_text().splitlines()
        if "=" in line
    )
    server = urls["TEST_DATABASE_URL"].rsplit("/", 1)[0]
    import psycopg

    with psycopg.connect(server + "/postgres", autocommit=True) as connection:
        exists = connection.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
        ).fetchone()
        if not exists:
            connection.execute(f"CREATE DATABASE {name}")
    os.environ["DATABASE_URL"] = f"{server}/{name}"


def sentence(rng: random.Random, n: int) -> str:
    words = [rng.choice(RARE_WORDS) if rng.random() < 0.05 else rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def seed(count: int, turns_per_call: int) -> None:
    from django.utils import timezone

    from calls.models import Call, Turn
    from transcripts.models import CallSearch, CallSummary, Transcript
    from voiceagents.models import Agent

    have = Call.objects.count()
    if have >= count:
        print(f"{have} calls already there", file=sys.stderr)
        return
    rng = random.Random(have)
    agents = [Agent.objects.get_or_create(name=name)[0] for name in ("Bakery", "Dentist", "Garage")]
    now = timezone.now()
    batch = 2000
    started = time.monotonic()
    for first in range(have, count, batch):
        calls = [
            Call(
                sid=f"CA{i:032x}",
                from_number=f"+1555{rng.randrange(10**7):07d}",
                to_number="+15550100000",
                agent=rng.choice(agents),
                status="completed",
                started_at=now - timedelta(minutes=i),
                ended_at=now - timedelta(minutes=i) + timedelta(seconds=90),
                duration_s=90.0,
                completion_reason="caller_hangup",
            )
            for i in range(first, min(count, first + batch))
        ]
        Call.objects.bulk_create(calls)
        turns, transcripts, summaries, said = [], [], [], {}
        for call in calls:
            name = rng.choice(NAMES)
            lines = [sentence(rng, rng.randint(6, 14)) for _ in range(turns_per_call)]
            said[call.sid] = lines
            for index, text in enumerate(lines):
                turns.append(
                    Turn(
                        call=call,
                        speaker="agent" if index % 2 == 0 else "caller",
                        text=text,
                        started_ms=index * 5000,
                    )
                )
            transcripts.append(
                Transcript(
                    call=call,
                    mode="diarized",
                    status="completed",
                    caller_name=name,
                    finished_at=now,
                    method="channel",
                    text="\n".join(f"[00:0{i}] {name}: {line}" for i, line in enumerate(lines)),
                )
            )
            summaries.append(
                CallSummary(
                    call=call,
                    source="recording",
                    summary=lines[0],
                    outcome={"order_placed": rng.random() < 0.3},
                )
            )
        Turn.objects.bulk_create(turns)
        Transcript.objects.bulk_create(transcripts)
        CallSummary.objects.bulk_create(summaries)
        # The search documents, as transcripts.search.index_call writes them, in bulk.
        CallSearch.objects.bulk_create(
            CallSearch(
                call=call,
                text="\n".join([t.caller_name, call.agent.name, t.text, *said[call.sid]]),
            )
            for call, t in zip(calls, transcripts, strict=True)
        )
        print(
            f"seeded {first + len(calls)} calls ({time.monotonic() - started:.0f} s)",
            file=sys.stderr,
        )
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "UPDATE transcripts_callsearch SET document = to_tsvector('english', text)"
            )
            cursor.execute("ANALYZE")


def time_page(client, query: str, repeats: int, page: str = "/calls/") -> tuple[float, float, int]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        response = client.get(page + query)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    if page != "/calls/":
        return (
            statistics.median(sorted(times)),
            sorted(times)[max(0, int(len(times) * 0.95) - 1)],
            0,
        )
    count = int(response.content.decode().split('<p class="count">')[1].split(" ")[0])
    times.sort()
    return statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)], count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument(
        "--turns-per-call", type=int, default=10, help="live turns seeded per call (1,000,000)"
    )
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "voiceagents.settings")
    os.environ.setdefault("DEBUG", "true")  # development secrets: nothing here is deployed
    os.environ["LOG_LEVEL"] = "WARNING"
    use_database(args.sqlite, args.turns_per_call)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    call_command("migrate", verbosity=0)
    seed(args.calls, args.turns_per_call)
    user = get_user_model().objects.filter(username="bench").first() or (
        get_user_model().objects.create_superuser("bench", "bench@example.com", None)
    )
    client = Client()
    client.force_login(user)
    client.defaults["HTTP_HOST"] = "127.0.0.1"
    searches = [
        ("newest calls, no filter", ""),
        ("a rare word said", "?q=speltknot"),
        ("two rare words said", "?q=ryecrumb+oatpie"),
        ("a common word said", "?q=bread"),
        ("caller's first name", "?q=Aisha"),
        ("caller's number", "?q=5551234"),
        ("outcome", "?outcome=order_placed%3Dtrue"),
        (
            "agent + last 7 days",
            "?agent=2&date_from="
            + (django.utils.timezone.now() - timedelta(days=7)).date().isoformat(),
        ),
        ("page 100 of the list", "?page=100"),
    ]
    vendor = connection.vendor
    print(
        f"\n{vendor}, {args.calls} calls, {args.calls * args.turns_per_call} turns, "
        f"{args.repeats} requests each "
        "(the page: query, count for paging, template):\n"
    )
    print("| search | matches | p50 ms | p95 ms |")
    print("|---|---|---|---|")
    for label, query in searches:
        time_page(client, query, 2)  # warm the caches
        p50, p95, count = time_page(client, query, args.repeats)
        print(f"| {label} | {count} | {p50:.1f} | {p95:.1f} |")
    print("\nThe analytics page (every figure an SQL aggregate):\n")
    print("| analytics | p50 ms | p95 ms |")
    print("|---|---|---|")
    for label, query in [
        ("all agents, 7 days", "?days=7"),
        ("all agents, 90 days", "?days=90"),
        ("one agent, 30 days", "?agent=2&days=30"),
    ]:
        time_page(client, query, 2, "/analytics/")
        p50, p95, _ = time_page(client, query, args.repeats, "/analytics/")
        print(f"| {label} | {p50:.1f} | {p95:.1f} |")


if __name__ == "__main__":
    main()
