"""The database the app processes share for a run: created empty, migrated, given one
agent and number, and read back afterwards to check what the app stored per call.

Django is set up in the benchmark process itself, on the same DATABASE_URL as Daphne."""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.scenario import AGENT_NUMBER, SECRET_KEY, TOOL_NAME

BENCH_PG_DATABASE = "voiceagents_bench"


def sqlite_url(var_dir: Path) -> str:
    path = var_dir / "bench.sqlite3"
    for leftover in var_dir.glob("bench.sqlite3*"):
        leftover.unlink()
    return f"sqlite:///{path}"


def fresh_postgres_url(server_url: str) -> str:
    """An empty database on the given PostgreSQL server (dropped and created anew)."""
    import psycopg

    parts = urlsplit(server_url)
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {BENCH_PG_DATABASE} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {BENCH_PG_DATABASE}")
    return urlunsplit(parts._replace(path=f"/{BENCH_PG_DATABASE}"))


def setup_django(database_url: str, var_dir: Path) -> None:
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "voiceagents.settings",
            "DATABASE_URL": database_url,
            "VAR_DIR": str(var_dir),
            "SECRET_KEY": SECRET_KEY,
            "DEBUG": "true",  # as the figures were measured; the settings default is false
        }
    )
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def seed_agent(tool_url: str = "") -> None:
    """The bench bakery's agent and number; with `tool_url`, its order-lookup HTTP tool."""
    from calls.models import PhoneNumber
    from voiceagents.models import Agent, Tool

    if PhoneNumber.objects.filter(number=AGENT_NUMBER).exists():
        return
    agent = Agent.objects.create(
        name="Bench bakery",
        instructions="You answer the phone for a bakery. Be brief.",
        greeting="Hello, you have reached the bench bakery.",
    )
    PhoneNumber.objects.create(number=AGENT_NUMBER, agent=agent)
    if tool_url:
        tool = Tool.objects.create(
            name=TOOL_NAME,
            description="Look up an order by its number.",
            kind=Tool.Kind.HTTP,
            url=tool_url,
            parameters={
                "type": "object",
                "properties": {"order": {"type": "string"}},
                "required": ["order"],
            },
        )
        agent.tools.add(tool)


def staff_session() -> tuple[str, str]:
    """A logged-in staff session (cookie value) and a CSRF token for it, made the way the
    login view would, so the check needs no login form."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import User
    from django.contrib.sessions.backends.db import SessionStore
    from django.middleware.csrf import _get_new_csrf_string

    user, _ = User.objects.get_or_create(
        username="bench-staff", defaults={"is_staff": True, "is_superuser": True}
    )
    user.set_password("bench-only")
    user.save()
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key, _get_new_csrf_string()


def stored_calls(sids: list[str]) -> dict[str, dict]:
    """What the app stored for these calls: how each ended and how many turns it kept."""
    from django.db.models import Count

    from calls.models import Call

    rows = (
        Call.objects.filter(sid__in=sids)
        .annotate(turn_count=Count("turns"))
        .values(
            "sid", "status", "completion_reason", "ended_at", "turn_count", "openai_error_count"
        )
    )
    return {row["sid"]: row for row in rows}
