"""The app as deployed: DEBUG=false, collected static files served by WhiteNoise, health
probes over loopback, other hosts refused, JSON logs."""

import os
import re
import subprocess
import sys

import httpx
import orjson
import pytest

from tests.live import ROOT, DaphneProcess, database_url_of_test_db

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": "production-like-secret-for-tests",
    "OPENAI_API_KEY": "sk-production-like",
    "TWILIO_AUTH_TOKEN": "twilio-production-like",
    "PUBLIC_BASE_URL": "https://voice.example.com",
    "LOG_FORMAT": "json",
}


@pytest.fixture(scope="module")
def production_app(django_db_setup, django_db_blocker, tmp_path_factory):
    env = {
        **PRODUCTION_ENV,
        "DATABASE_URL": database_url_of_test_db(),
        "STATIC_ROOT": str(tmp_path_factory.mktemp("static")),
    }
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert collected.returncode == 0, collected.stderr
    app = DaphneProcess(env, ROOT / "var" / "test-production.log")
    yield app
    app.stop()


def test_health_probe_over_loopback_is_answered(production_app):
    response = httpx.get(production_app.base_url + "/healthz")

    assert response.status_code == 200
    assert response.json()["database"] == "ok"


def test_requests_for_other_hosts_are_refused(production_app):
    response = httpx.get(production_app.base_url + "/healthz", headers={"Host": "evil.example"})

    assert response.status_code == 400


def test_collected_static_files_are_served_with_long_caching(production_app):
    login = httpx.get(production_app.base_url + "/admin/login/")
    assert login.status_code == 200
    # The manifest storage puts a content hash in every static URL.
    stylesheet = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login.text)
    assert stylesheet, login.text[:500]

    css = httpx.get(production_app.base_url + stylesheet.group(1))

    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert "max-age=315360000" in css.headers["cache-control"]


def test_logs_are_json_lines(production_app):
    httpx.get(production_app.base_url + "/no-such-page")

    lines = [line for line in production_app.log().splitlines() if line.startswith("{")]
    assert lines, production_app.log()[-2000:]
    for line in lines:
        entry = orjson.loads(line)
        assert {"time", "level", "logger", "call_sid", "message"} <= entry.keys()
