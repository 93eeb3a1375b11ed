"""docker-compose.yml and .env.example describe the production deployment. No machine in
CI runs Docker Compose, so their shape is checked here against what the app reads."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_SOURCE = (ROOT / "voiceagents" / "settings.py").read_text()


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_there_with_a_health_check(compose):
    services = compose["services"]
    assert set(services) == {"db", "redis", "migrate", "web", "worker", "beat"}
    for name in ("db", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name


def test_app_containers_run_in_production_mode_on_postgres_and_redis(compose):
    for name in ("migrate", "web", "worker"):
        service = compose["services"][name]
        env = service["environment"]
        assert env["DEBUG"] == "false"
        assert env["DATABASE_URL"].startswith("postgres://")
        assert env["DATABASE_URL"].split("@")[1].startswith("db:")
        assert env["REDIS_URL"].startswith("redis://redis:")
        assert service["env_file"] == ".env"


def test_web_can_be_scaled_and_waits_for_migrations(compose):
    web = compose["services"]["web"]
    # A fixed host port would stop `docker compose up --scale web=2`.
    assert all(":" not in str(port) for port in web["ports"])
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert "daphne" in (ROOT / "Dockerfile").read_text()


def test_worker_runs_celery_against_the_app(compose):
    command = compose["services"]["worker"]["command"]
    assert command[:5] == ["python", "-m", "celery", "-A", "voiceagents"]
    assert "worker" in command


def test_one_beat_scheduler_and_a_recordings_volume_shared_by_web_and_worker(compose):
    beat = compose["services"]["beat"]
    assert beat["command"][:6] == ["python", "-m", "celery", "-A", "voiceagents", "beat"]
    assert "deploy" not in beat  # never scaled: two schedulers would purge twice
    for name in ("web", "worker"):
        assert "recordings:/app/var/recordings" in compose["services"][name]["volumes"]
    assert "recordings" in compose["volumes"]


def test_env_example_names_only_settings_the_app_reads():
    names = [
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert {"SECRET_KEY", "OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "PUBLIC_BASE_URL"} <= set(names)
    for name in names:
        assert re.search(rf'"{name}"', SETTINGS_SOURCE), f"{name} is not read by settings.py"
