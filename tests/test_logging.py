"""Log output: the call sid on every line, and no credential ever written out."""

import contextvars
import io
import logging
import logging.config

import httpx
import orjson
import pytest
from django.conf import settings

from tests.fakes.realtime_server import FakeRealtimeServer, RealtimeScript
from voiceagents import realtime
from voiceagents.log_context import JsonFormatter, current_call_sid


@pytest.fixture
def log_output():
    """The app's own console handler (filters and format from settings.LOGGING), writing
    to a buffer, with every logger at DEBUG."""
    config = {**settings.LOGGING, "root": {"handlers": ["console"], "level": "DEBUG"}}
    logging.config.dictConfig(config)
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    buffer = io.StringIO()
    handler.setStream(buffer)
    yield buffer
    logging.config.dictConfig(settings.LOGGING)


async def test_the_openai_key_never_reaches_the_log(log_output):
    # websockets logs every handshake header at DEBUG, Authorization included.
    script = RealtimeScript(api_key=settings.OPENAI_API_KEY)
    async with FakeRealtimeServer(script) as server:
        connection = await realtime.connect(
            server.base_url, settings.OPENAI_API_KEY, "gpt-realtime", open_timeout=5
        )
        await connection.close()

    written = log_output.getvalue()
    assert "> Authorization: Bearer [redacted]" in written
    assert settings.OPENAI_API_KEY not in written


def test_configured_secrets_and_bearer_tokens_are_redacted(log_output):
    log = logging.getLogger("calls.example")
    log.warning("twilio token %s in a message", settings.TWILIO_AUTH_TOKEN)
    log.warning("client sent Authorization: Bearer va_abc123")

    written = log_output.getvalue()
    assert settings.TWILIO_AUTH_TOKEN not in written
    assert "va_abc123" not in written
    assert written.count("[redacted]") == 2


def test_every_line_carries_the_call_sid(log_output):
    log = logging.getLogger("calls.example")

    def during_a_call():
        current_call_sid.set("CA0123")
        log.info("greeting sent")

    # Each connection and request runs in its own context, as asgiref and asyncio give.
    contextvars.Context().run(during_a_call)
    contextvars.Context().run(log.info, "between calls")

    lines = log_output.getvalue().splitlines()
    assert "call=CA0123 greeting sent" in lines[-2]
    assert "call=- between calls" in lines[-1]


def test_json_lines_for_log_shippers(log_output):
    handler = next(h for h in logging.getLogger().handlers if h.name == "console")
    handler.setFormatter(JsonFormatter())
    token = current_call_sid.set("CA0456")
    try:
        logging.getLogger("calls.example").warning("tool %s failed", "lookup")
    finally:
        current_call_sid.reset(token)

    entry = orjson.loads(log_output.getvalue().splitlines()[-1])
    assert entry["call_sid"] == "CA0456"
    assert entry["message"] == "tool lookup failed"
    assert entry["level"] == "WARNING"


def test_a_newline_from_an_unsigned_webhook_cannot_forge_a_log_line(log_output, client, db):
    forged = "CA1\n2026-11-25 03:00:00,000 INFO calls.webhooks call=CA2 call CA2 answered"
    response = client.post("/twilio/voice", {"CallSid": forged, "From": "+15550001111"})
    assert response.status_code == 403

    lines = log_output.getvalue().splitlines()
    assert not any(line.startswith("2026-11-25 03:00:00,000") for line in lines)
    (refusal,) = [line for line in lines if "rejected unsigned" in line]
    assert "CA1" in refusal


def test_control_characters_in_messages_and_call_sids_are_escaped(log_output):
    log = logging.getLogger("calls.example")

    def during_a_call():
        current_call_sid.set("CA9\rforged")
        log.warning("said %s", "line one\nline two\x1b[31m")

    contextvars.copy_context().run(during_a_call)
    (line,) = log_output.getvalue().splitlines()
    assert "call=CA9\\x0dforged" in line
    assert "said line one\\x0aline two\\x1b[31m" in line


def test_phone_numbers_are_masked_when_asked(log_output, settings):
    log = logging.getLogger("calls.example")
    log.info("call from %s to %s", "+15550001111", "+442071838750")
    settings.LOG_MASK_NUMBERS = True
    log.info("call from %s to %s", "+15550001111", "+442071838750")

    plain, masked = log_output.getvalue().splitlines()
    assert "+15550001111" in plain
    assert "call from +1555*****11 to +4420******50" in masked
    assert "0001111" not in masked


async def test_httpx_request_lines_lose_the_urls_userinfo_and_query(log_output):
    """On httpx's real log record: a tool URL's password and token never reach the log."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        await client.post("https://bob:s3cr3t-pw@tools.example/lookup?token=tok-123&x=1")

    written = log_output.getvalue()
    assert "HTTP Request: POST https://[redacted]@tools.example/lookup?[redacted]" in written
    assert "s3cr3t-pw" not in written and "tok-123" not in written
