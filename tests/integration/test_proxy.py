"""deploy/Caddyfile, the proxy of docker-compose.yml, run for real: Caddy (Debian's
package) in front of the app in production mode with TRUSTED_PROXY_COUNT=1, over TLS
from Caddy's own local authority. What it must do: carry a whole call (webhook and media
stream WebSocket), make a forged X-Forwarded-For useless, stop large bodies, add HSTS
once, and send http:// to https://."""

import os
import shutil
import ssl
import subprocess
import time

import httpx
import pytest

from tests.fakes.realtime_server import Reply
from tests.integration.conftest import AGENT_NUMBER, load_call, script, wait_for_end
from tests.live import (
    ROOT,
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_OPENAI_KEY,
    DaphneProcess,
    database_url_of_test_db,
    free_port,
)

RATE_LIMIT_API_PER_MIN = 5


class CaddyProxy:
    def __init__(self, upstream_port: int, https_port: int, work) -> None:
        caddy = shutil.which("caddy")
        if caddy is None:
            pytest.fail("caddy is not installed (scripts/test-services installs Debian's)")
        self.https_port = https_port
        self.http_port = free_port()
        self.base_url = f"https://127.0.0.1:{https_port}"
        self.log_path = ROOT / "var" / "test-caddy.log"
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(work),
            "XDG_DATA_HOME": str(work / "data"),
            "XDG_CONFIG_HOME": str(work / "config"),
            "PUBLIC_BASE_URL": self.base_url,
            "CADDY_HTTP_PORT": str(self.http_port),
            "CADDY_HTTPS_PORT": str(https_port),
            "WEB_HOST": "127.0.0.1",
            "WEB_PORT": str(upstream_port),
        }
        self.log_file = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [caddy, "run", "--adapter", "caddyfile", "--config", str(ROOT / "deploy/Caddyfile")],
            env=env,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
        )
        self.root_certificate = (
            work / "data" / "caddy" / "pki" / "authorities" / "local" / "root.crt"
        )
        self.trust = self._wait_ready()

    def _wait_ready(self) -> ssl.SSLContext:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"caddy exited:\n{self.log_path.read_text()}")
            if self.root_certificate.exists():
                trust = ssl.create_default_context(cafile=str(self.root_certificate))
                try:
                    httpx.get(self.base_url + "/healthz", verify=trust, timeout=2)
                    return trust
                except httpx.HTTPError:
                    pass
            time.sleep(0.2)
        raise RuntimeError(f"caddy did not become ready:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log_file.close()


@pytest.fixture(scope="module")
def proxied(django_db_setup, django_db_blocker, realtime_server, tmp_path_factory):
    """(Daphne, Caddy): the app announces Caddy's https address as its public URL."""
    https_port = free_port()
    app = DaphneProcess(
        {
            "DEBUG": "false",
            "SECRET_KEY": "production-like-secret-for-tests",
            "OPENAI_API_KEY": TEST_OPENAI_KEY,
            "OPENAI_BASE_URL": realtime_server.base_url,
            "TWILIO_AUTH_TOKEN": TEST_AUTH_TOKEN,
            "PUBLIC_BASE_URL": f"https://127.0.0.1:{https_port}",
            "TRUSTED_PROXY_COUNT": "1",  # what docker-compose.yml sets behind the proxy
            "RATE_LIMIT_API_PER_MIN": str(RATE_LIMIT_API_PER_MIN),
            # Above the proxy's 1 MiB, so the body test shows the proxy's own limit.
            "MAX_REQUEST_BODY_BYTES": str(8 * 1024 * 1024),
            "DATABASE_URL": database_url_of_test_db(),
        },
        ROOT / "var" / "test-proxied-daphne.log",
    )
    proxy = CaddyProxy(app.port, https_port, tmp_path_factory.mktemp("caddy"))
    yield app, proxy
    proxy.stop()
    app.stop()


async def test_a_whole_call_goes_through_the_proxy(proxied, agent, realtime):
    from tests.fakes.twilio_caller import FakeTwilioCall

    _, proxy = proxied
    realtime.script_for_next_connection = script(
        replies=[Reply(text="Hello, bakery.", audio_ms=600), Reply(function_call=("end_call", {}))],
        caller_transcripts=["Bye."],
    )
    call = FakeTwilioCall(
        proxy.base_url,
        auth_token=TEST_AUTH_TOKEN,
        account_sid=TEST_ACCOUNT_SID,
        to_number=AGENT_NUMBER,
        tls_trust=proxy.trust,
    )

    assert (await call.dial()).status_code == 200
    assert call.stream_url.startswith(f"wss://127.0.0.1:{proxy.https_port}/twilio/stream/")
    await call.connect_stream()  # the WebSocket upgrade, through Caddy
    await call.wait_for(lambda: len(call.heard_audio) >= 600 * 8, timeout=10)
    await call.speak_and_wait(500)
    await call.wait_closed(timeout=15)

    stored = await wait_for_end(call.call_sid)
    _, turns = await load_call(call.call_sid)
    assert stored.completion_reason == "agent_hangup"
    assert [t.speaker for t in turns][:2] == ["agent", "caller"]
    assert call.violations == []


def test_a_forged_forwarded_for_does_not_dodge_the_rate_limit(proxied):
    app, proxy = proxied
    statuses = [
        httpx.get(
            proxy.base_url + "/api/calls/",
            headers={"X-Forwarded-For": f"203.0.113.{n}"},
            verify=proxy.trust,
        ).status_code
        for n in range(RATE_LIMIT_API_PER_MIN + 1)
    ]

    assert statuses[-1] == 429, statuses  # Caddy's X-Forwarded-For names the real client
    # Why only the proxy may be published: straight to the app, each forged address
    # would count as a new client.
    direct = [
        httpx.get(
            app.base_url + "/api/calls/", headers={"X-Forwarded-For": f"198.51.100.{n}"}
        ).status_code
        for n in range(RATE_LIMIT_API_PER_MIN + 1)
    ]
    assert 429 not in direct, direct


def test_a_large_body_stops_at_the_proxy(proxied):
    _, proxy = proxied

    response = httpx.post(
        proxy.base_url + "/twilio/voice",
        content=b"a" * (2 * 1024 * 1024),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        verify=proxy.trust,
    )

    assert response.status_code == 413  # from Caddy: the app's own limit is 8 MiB here
    assert "the limit is 1048576 bytes" in response.text
    under = httpx.post(
        proxy.base_url + "/twilio/voice",
        data={"CallSid": "CA" + "0" * 32, "padding": "b" * 500_000},
        verify=proxy.trust,
    )
    assert under.status_code == 403  # passed through: the app refused the missing signature


def test_hsts_is_sent_once_and_http_redirects_to_https(proxied):
    _, proxy = proxied

    response = httpx.get(proxy.base_url + "/healthz", verify=proxy.trust)
    plain = httpx.get(f"http://127.0.0.1:{proxy.http_port}/healthz")

    assert response.status_code == 200
    assert response.headers.get_list("strict-transport-security") == [
        "max-age=31536000; includeSubDomains"
    ]
    assert plain.status_code in (301, 308)
    assert plain.headers["location"].startswith("https://127.0.0.1")
