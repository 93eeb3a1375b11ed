"""/healthz: the load balancer's probe, reachable without auth."""

from unittest import mock

import pytest
from django.db.utils import OperationalError


@pytest.mark.django_db
def test_healthz_reports_ok(client, settings):
    settings.REDIS_URL = ""

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


@pytest.mark.django_db
def test_healthz_reports_a_broken_database(client, settings):
    settings.REDIS_URL = ""
    broken = mock.MagicMock()
    broken.__enter__.return_value.execute.side_effect = OperationalError("gone")

    with mock.patch("voiceagents.health.connection.cursor", return_value=broken):
        response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "error: OperationalError"}
