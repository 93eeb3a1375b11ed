"""Security headers: a strict CSP and a Permissions-Policy on the console's pages, no
caching of pages and API answers that carry what callers said."""

import pytest

from tests.factories import make_api_token, make_call

pytestmark = pytest.mark.django_db


def test_console_pages_get_a_strict_csp_and_are_never_cached(admin_client):
    call = make_call()
    response = admin_client.get(f"/calls/{call.sid}/")

    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert "microphone=(self)" in response["Permissions-Policy"]
    assert "no-store" in response["Cache-Control"]


def test_api_answers_are_never_cached(client):
    _, raw = make_api_token()
    response = client.get("/api/calls/", headers={"Authorization": f"Bearer {raw}"})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]


def test_the_admin_keeps_djangos_own_headers(admin_client):
    response = admin_client.get("/admin/")

    assert response.status_code == 200
    assert "Content-Security-Policy" not in response
    assert "Permissions-Policy" in response
