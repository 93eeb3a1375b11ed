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
    assert set(services) == {"db", "redis", "migrate", "web", "worker", "beat", "proxy"}
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
    assert web["expose"] == ["8000"]
    assert web["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert "voiceagents.web_server" in (ROOT / "Dockerfile").read_text()


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


def test_the_proxy_is_the_only_published_port_and_the_app_trusts_one_proxy(compose):
    services = compose["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    assert services["proxy"]["ports"] == ["80:80", "443:443"]
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in services["proxy"]["volumes"]
    assert "env_file" not in services["proxy"]  # it needs the public URL, no secret
    assert services["proxy"]["environment"]["PUBLIC_BASE_URL"].startswith("${PUBLIC_BASE_URL:?")
    for name in ("migrate", "web", "worker", "beat"):
        assert services[name]["environment"]["TRUSTED_PROXY_COUNT"] == "1", name


def test_the_caddyfile_serves_the_public_url_and_forwards_to_every_web_replica():
    """Caddy's own reading of deploy/Caddyfile (`caddy adapt`), as docker-compose runs it;
    tests/integration/test_proxy.py runs the same file for real."""
    import json
    import os
    import shutil
    import subprocess

    caddy = shutil.which("caddy")
    assert caddy, "caddy is not installed (scripts/test-services installs Debian's)"
    adapted = subprocess.run(
        [caddy, "adapt", "--adapter", "caddyfile", "--config", str(ROOT / "deploy/Caddyfile")],
        env={**os.environ, "PUBLIC_BASE_URL": "https://voice.example.com"},
        capture_output=True,
        text=True,
        check=True,
    )
    config = json.loads(adapted.stdout)["apps"]["http"]
    assert (config["http_port"], config["https_port"]) == (80, 443)
    (server,) = config["servers"].values()
    assert server["listen"] == [":443"]
    route = server["routes"][0]
    assert route["match"] == [{"host": ["voice.example.com"]}]
    handlers = [h for r in route["handle"][0]["routes"] for h in r["handle"]]
    by_name = {h["handler"]: h for h in handlers}
    assert by_name["request_body"]["max_size"] == 1024 * 1024
    refusal = by_name["static_response"]
    assert (refusal["status_code"], refusal["close"]) == (413, True)
    proxy = by_name["reverse_proxy"]
    assert proxy["dynamic_upstreams"] == {
        "source": "a",
        "name": "web",
        "port": "8000",
        "refresh": 5_000_000_000,
    }
    assert "trusted_proxies" not in proxy  # so Caddy sets X-Forwarded-For itself
