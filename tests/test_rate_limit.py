"""Rate limits on the public endpoints: per client address, per minute, 429 past the limit,
counted behind a trusted proxy by the address the proxy saw."""

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client, override_settings

from voiceagents import rate_limit
from voiceagents.asgi import application
from voiceagents.rate_limit import WebSocketRateLimit

LIMITS = {"twilio": 3, "api": 2, "login": 2}


def statuses(client: Client, method: str, path: str, times: int, **extra) -> list[int]:
    send = getattr(client, method)
    return [send(path, **extra).status_code for _ in range(times)]


@pytest.mark.django_db
@override_settings(RATE_LIMITS=LIMITS)
def test_twilio_webhook_limited_per_address():
    # Unsigned requests are refused (403) until the address is over its limit (429).
    client = Client(REMOTE_ADDR="203.0.113.5")
    assert statuses(client, "post", "/twilio/voice", 5) == [403, 403, 403, 429, 429]

    response = client.post("/twilio/stream-ended")
    assert response.status_code == 429
    assert response["Retry-After"] == "60"
    # Another address has its own count.
    assert Client(REMOTE_ADDR="203.0.113.6").post("/twilio/voice").status_code == 403


@pytest.mark.django_db
@override_settings(RATE_LIMITS=LIMITS)
def test_api_limited_even_with_bad_tokens():
    client = Client(REMOTE_ADDR="198.51.100.7")
    headers = {"HTTP_AUTHORIZATION": "Bearer va_guess"}
    assert statuses(client, "get", "/api/calls/", 4, **headers) == [401, 401, 429, 429]


@pytest.mark.django_db
@override_settings(RATE_LIMITS=LIMITS)
def test_admin_login_attempts_limited_but_the_form_still_shows():
    client = Client(REMOTE_ADDR="198.51.100.8")
    form = {"username": "admin", "password": "guess"}
    assert statuses(client, "post", "/admin/login/", 3, data=form) == [200, 200, 429]
    assert client.get("/admin/login/").status_code == 200


@pytest.mark.django_db
@override_settings(RATE_LIMITS=LIMITS)
def test_a_burst_across_a_window_edge_is_still_limited(monkeypatch):
    # Three requests a second before a minute's edge, then two a second after it:
    # fixed windows would let all five through; the sliding minute refuses the last two.
    clock = {"now": 6_000_059.0}
    monkeypatch.setattr(rate_limit.time, "time", lambda: clock["now"])
    client = Client(REMOTE_ADDR="203.0.113.30")
    before = statuses(client, "post", "/twilio/voice", 3)
    clock["now"] += 2
    assert before + statuses(client, "post", "/twilio/voice", 2) == [403, 403, 403, 429, 429]
    # A minute later the earlier burst no longer counts.
    clock["now"] += 61
    assert client.post("/twilio/voice").status_code == 403


@pytest.mark.django_db
@override_settings(RATE_LIMITS={**LIMITS, "twilio": 0})
def test_zero_turns_a_limit_off():
    client = Client(REMOTE_ADDR="203.0.113.9")
    assert set(statuses(client, "post", "/twilio/voice", 10)) == {403}


@pytest.mark.django_db
@override_settings(RATE_LIMITS=LIMITS, TRUSTED_PROXY_COUNT=1)
def test_behind_a_proxy_the_forwarded_address_counts():
    proxy = Client(REMOTE_ADDR="10.0.0.2")
    one = {"HTTP_X_FORWARDED_FOR": "spoofed, 203.0.113.10"}
    other = {"HTTP_X_FORWARDED_FOR": "203.0.113.11"}
    assert statuses(proxy, "post", "/twilio/voice", 4, **one) == [403, 403, 403, 429]
    # Same proxy, different client: not limited. A spoofed left-hand entry changes nothing.
    assert proxy.post("/twilio/voice", **other).status_code == 403
    again = {"HTTP_X_FORWARDED_FOR": "other-spoof, 203.0.113.10"}
    assert proxy.post("/twilio/voice", **again).status_code == 429


def test_health_probes_are_never_limited(db):
    with override_settings(RATE_LIMITS={"twilio": 1, "api": 1, "login": 1}):
        client = Client(REMOTE_ADDR="127.0.0.1")
        assert set(statuses(client, "get", "/healthz", 5)) == {200}


async def accept_everything(scope, receive, send):
    await receive()
    await send({"type": "websocket.accept"})


@override_settings(RATE_LIMITS=LIMITS)
async def test_media_stream_handshakes_limited_per_address():
    limited = WebSocketRateLimit(accept_everything)

    async def connect(address: str) -> bool:
        communicator = WebsocketCommunicator(limited, "/twilio/stream/x")
        communicator.scope["client"] = (address, 40000)
        connected, _ = await communicator.connect()
        await communicator.disconnect()
        return connected

    assert [await connect("203.0.113.20") for _ in range(4)] == [True, True, True, False]
    assert await connect("203.0.113.21") is True


def test_the_app_limits_its_media_stream():
    assert isinstance(application.application_mapping["websocket"], WebSocketRateLimit)
