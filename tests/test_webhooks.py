"""Twilio's HTTP webhooks: signature checks, the TwiML that connects a media stream, and
the apology after a stream that ended through our fault."""

import logging
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest

from calls.models import Call
from calls.outcomes import CompletionReason
from calls.stream_tokens import read_stream_token
from tests.factories import (
    ACCOUNT_SID,
    AGENT_NUMBER,
    AUTH_TOKEN,
    CALLER_NUMBER,
    PUBLIC_BASE_URL,
    make_agent,
    make_call,
    make_number,
    sign,
    signed_post,
    voice_params,
)
from tests.live import free_port

pytestmark = pytest.mark.django_db

CALL_SID = "CA" + "b" * 32


@pytest.fixture(autouse=True)
def twilio_settings(settings):
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    return settings


@pytest.fixture
def agent():
    agent = make_agent(name="Reception")
    make_number(agent, AGENT_NUMBER)
    return agent


def post_voice(client, params, **kw):
    return signed_post(client, "/twilio/voice", params, **kw)


def parse_twiml(response) -> ET.Element:
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    root = ET.fromstring(response.content)
    assert root.tag == "Response"
    return root


# --- Signatures -------------------------------------------------------------------------


def test_valid_signature_is_accepted(client, agent):
    response = post_voice(client, voice_params(CALL_SID))

    assert response.status_code == 200
    assert Call.objects.filter(sid=CALL_SID).exists()


def test_missing_signature_is_refused_and_makes_no_call(client, agent):
    response = client.post("/twilio/voice", voice_params(CALL_SID))

    assert response.status_code == 403
    assert not Call.objects.exists()


@pytest.mark.parametrize(
    "tamper",
    ["wrong_token", "changed_param", "garbage"],
)
def test_bad_signature_is_refused_and_makes_no_call(client, agent, tamper):
    params = voice_params(CALL_SID)
    url = PUBLIC_BASE_URL + "/twilio/voice"
    signature = {
        "wrong_token": sign(url, params, auth_token="not-the-auth-token"),
        # Signed for one caller, sent claiming another.
        "changed_param": sign(url, params | {"From": "+15550000000"}),
        "garbage": "bm90IGEgc2lnbmF0dXJl",
    }[tamper]

    response = client.post("/twilio/voice", params, headers={"X-Twilio-Signature": signature})

    assert response.status_code == 403
    assert not Call.objects.exists()


def test_signature_over_public_url_accepted_behind_proxy(client, agent):
    # The test client requests http://testserver/twilio/voice, as a TLS-terminating proxy
    # would forward it; Twilio signed https://voice.example.com/twilio/voice.
    response = post_voice(client, voice_params(CALL_SID))

    assert response.wsgi_request.build_absolute_uri().startswith("http://testserver/")
    assert response.status_code == 200


def test_signature_over_internal_url_is_refused(client, agent):
    response = post_voice(
        client, voice_params(CALL_SID), signed_url="http://testserver/twilio/voice"
    )

    assert response.status_code == 403
    assert not Call.objects.exists()


def test_signature_follows_public_base_url_setting(client, agent, settings):
    settings.PUBLIC_BASE_URL = "https://other.example.org"
    # Signed for the old public URL: no longer the URL Twilio would have requested.
    refused = post_voice(client, voice_params(CALL_SID))
    accepted = post_voice(
        client, voice_params(CALL_SID), public_base_url="https://other.example.org"
    )

    assert refused.status_code == 403
    assert accepted.status_code == 200


SHA256_SETTINGS = {
    "X-Twilio-Webhooks-Signature-Settings": "key=webhooks_sk_1,algorithm=HMAC_SHA256"
}


SHARED_KEY_SECRET = "shared-key-secret-not-the-auth-token"


def test_shared_key_signature_is_checked_with_the_shared_key_secret(client, agent, settings):
    # With the settings header Twilio signs with the SharedKey's secret, not the auth token.
    settings.TWILIO_WEBHOOK_SHARED_KEY_SECRET = SHARED_KEY_SECRET
    response = post_voice(
        client,
        voice_params(CALL_SID),
        auth_token=SHARED_KEY_SECRET,
        algorithm="HMAC_SHA256",
        headers=SHA256_SETTINGS,
    )

    assert response.status_code == 200
    assert Call.objects.filter(sid=CALL_SID).exists()


def test_shared_key_header_with_an_auth_token_signature_is_refused(client, agent, settings):
    settings.TWILIO_WEBHOOK_SHARED_KEY_SECRET = SHARED_KEY_SECRET
    response = post_voice(
        client, voice_params(CALL_SID), algorithm="HMAC_SHA256", headers=SHA256_SETTINGS
    )

    assert response.status_code == 403
    assert not Call.objects.exists()


def test_shared_key_signature_without_a_configured_secret_is_refused_clearly(
    client, agent, settings, caplog
):
    settings.TWILIO_WEBHOOK_SHARED_KEY_SECRET = ""
    response = post_voice(
        client,
        voice_params(CALL_SID),
        auth_token=SHARED_KEY_SECRET,
        algorithm="HMAC_SHA256",
        headers=SHA256_SETTINGS,
    )

    assert response.status_code == 403
    assert "TWILIO_WEBHOOK_SHARED_KEY_SECRET is not set" in caplog.text
    assert not Call.objects.exists()


def test_sha1_signature_refused_when_header_announces_sha256(client, agent, settings):
    settings.TWILIO_WEBHOOK_SHARED_KEY_SECRET = SHARED_KEY_SECRET
    response = post_voice(
        client, voice_params(CALL_SID), auth_token=SHARED_KEY_SECRET, headers=SHA256_SETTINGS
    )

    assert response.status_code == 403


def get_voice(client, params, *, signed_url=None):
    """A voice URL configured as GET: the fields in the query string, the signature over
    the whole URL and no body."""
    query = urlencode(params)
    url = signed_url or f"{PUBLIC_BASE_URL}/twilio/voice?{query}"
    signature = sign(url, {})
    return client.get(f"/twilio/voice?{query}", headers={"X-Twilio-Signature": signature})


def test_a_voice_url_configured_as_get_connects_the_call(client, agent):
    root = parse_twiml(get_voice(client, voice_params(CALL_SID)))

    assert [child.tag for child in root] == ["Start", "Connect"]
    assert Call.objects.get(sid=CALL_SID).from_number == CALLER_NUMBER


def test_a_get_signed_without_its_query_string_is_refused(client, agent):
    response = get_voice(
        client, voice_params(CALL_SID), signed_url=f"{PUBLIC_BASE_URL}/twilio/voice"
    )

    assert response.status_code == 403
    assert not Call.objects.exists()


def test_sha256_signature_refused_without_settings_header(client, agent):
    response = post_voice(client, voice_params(CALL_SID), algorithm="HMAC_SHA256")

    assert response.status_code == 403


def test_unsupported_signature_algorithm_is_refused(client, agent):
    response = post_voice(
        client,
        voice_params(CALL_SID),
        headers={"X-Twilio-Webhooks-Signature-Settings": "key=k,algorithm=HMAC_MD5"},
    )

    assert response.status_code == 403
    assert not Call.objects.exists()


# --- The voice webhook ------------------------------------------------------------------


def test_twiml_connects_a_stream_with_a_token_for_the_call(client, agent):
    root = parse_twiml(post_voice(client, voice_params(CALL_SID)))

    # <Start><Recording> comes first (tests/post_call/test_recording_callback.py).
    assert [child.tag for child in root] == ["Start", "Connect"]
    connect = root[1]
    assert connect.get("action") == PUBLIC_BASE_URL + "/twilio/stream-ended"
    assert [child.tag for child in connect] == ["Stream"]
    stream = connect[0]
    prefix = "wss://voice.example.com/twilio/stream/"
    assert stream.get("url").startswith(prefix)
    path_token = stream.get("url").removeprefix(prefix)
    assert path_token
    assert "?" not in stream.get("url")  # Twilio drops query strings of stream URLs
    parameters = stream.findall("Parameter")
    assert [(p.get("name"), p.get("value")) for p in parameters] == [("token", path_token)]
    assert read_stream_token(path_token) == CALL_SID


def test_stream_url_uses_ws_for_an_http_public_base_url(client, agent, settings):
    settings.PUBLIC_BASE_URL = "http://localhost:8000"
    root = parse_twiml(
        post_voice(client, voice_params(CALL_SID), public_base_url="http://localhost:8000")
    )

    stream = root.find("Connect/Stream")
    assert stream.get("url").startswith("ws://localhost:8000/twilio/stream/")
    assert root.find("Connect").get("action") == "http://localhost:8000/twilio/stream-ended"


def test_call_row_records_the_webhook(client, agent):
    post_voice(client, voice_params(CALL_SID))

    call = Call.objects.get(sid=CALL_SID)
    assert call.from_number == CALLER_NUMBER
    assert call.to_number == AGENT_NUMBER
    assert call.agent == agent
    assert call.direction == "inbound"
    assert call.account_sid == ACCOUNT_SID
    assert call.status == Call.Status.RINGING
    assert call.stream_connected_at is None
    assert call.ended_at is None


def test_number_routes_to_its_own_agent(client, agent):
    other = make_agent(name="Sales")
    make_number(other, "+15550003333")

    post_voice(client, voice_params(CALL_SID, to="+15550003333"))

    assert Call.objects.get(sid=CALL_SID).agent == other


def test_retried_webhook_makes_one_call(client, agent):
    first = post_voice(client, voice_params(CALL_SID))
    second = post_voice(client, voice_params(CALL_SID))

    assert first.status_code == second.status_code == 200
    assert Call.objects.filter(sid=CALL_SID).count() == 1
    # Both answers carry a working token for the same call.
    for response in (first, second):
        token = parse_twiml(response).find("Connect/Stream/Parameter").get("value")
        assert read_stream_token(token) == CALL_SID


def test_unknown_number_says_sorry_and_hangs_up(client, agent, caplog, settings):
    settings.UNKNOWN_NUMBER_TEXT = "Nobody here."
    with caplog.at_level(logging.WARNING, logger="calls.webhooks"):
        root = parse_twiml(post_voice(client, voice_params(CALL_SID, to="+15557770000")))

    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root.find("Say").text == "Nobody here."
    assert root.find("Connect") is None
    assert not Call.objects.exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("+15557770000" in r.getMessage() for r in warnings)


def test_other_methods_are_not_allowed(client, agent):
    response = client.put("/twilio/voice", voice_params(CALL_SID))

    assert response.status_code == 405
    assert not Call.objects.exists()


def test_missing_call_sid_is_a_bad_request(client, agent):
    params = voice_params(CALL_SID)
    del params["CallSid"]

    response = post_voice(client, params)

    assert response.status_code == 400
    assert not Call.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("CallSid", "CA123"),
        ("CallSid", "CA" + "b" * 300),
        ("AccountSid", "nope"),
        ("To", "9" * 300),
    ],
)
def test_malformed_fields_are_refused_naming_the_field(client, agent, field, value):
    response = post_voice(client, voice_params(CALL_SID) | {field: value})

    assert response.status_code == 400
    assert field in response.content.decode()
    assert not Call.objects.exists()


def test_sip_and_client_callers_are_answered(client, agent):
    sip_caller = "sip:reception-desk-42@acme-corp.sip.us1.twilio.com;transport=tls"

    response = post_voice(client, voice_params(CALL_SID, From=sip_caller))

    assert parse_twiml(response).find("Connect") is not None
    assert Call.objects.get(sid=CALL_SID).from_number == sip_caller


# --- After the stream ended -------------------------------------------------------------


def post_stream_ended(client, call_sid):
    return signed_post(
        client,
        "/twilio/stream-ended",
        {"CallSid": call_sid, "AccountSid": ACCOUNT_SID, "CallStatus": "in-progress"},
    )


@pytest.mark.parametrize(
    "reason",
    [CompletionReason.NORMAL, CompletionReason.CALLER_HANGUP, CompletionReason.AGENT_HANGUP],
)
def test_stream_ended_normally_hangs_up(client, agent, reason):
    make_call(CALL_SID, agent=agent, completion_reason=reason)

    root = parse_twiml(post_stream_ended(client, CALL_SID))

    assert [child.tag for child in root] == ["Hangup"]


@pytest.mark.parametrize(
    "reason",
    [
        CompletionReason.OPENAI_ERROR,
        CompletionReason.OPENAI_CONNECTION_FAILED,
        CompletionReason.SERVER_ERROR,
    ],
)
def test_stream_ended_by_a_fault_apologises(client, agent, settings, reason):
    settings.APOLOGY_TEXT = "We are sorry, goodbye."
    make_call(CALL_SID, agent=agent, completion_reason=reason)

    root = parse_twiml(post_stream_ended(client, CALL_SID))

    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root.find("Say").text == "We are sorry, goodbye."


def test_stream_ended_for_an_unknown_call_hangs_up(client):
    root = parse_twiml(post_stream_ended(client, "CA" + "f" * 32))

    assert [child.tag for child in root] == ["Hangup"]


def test_stream_ended_unsigned_is_refused(client, agent):
    make_call(CALL_SID, agent=agent, completion_reason=CompletionReason.OPENAI_ERROR)

    response = client.post("/twilio/stream-ended", {"CallSid": CALL_SID})

    assert response.status_code == 403
    assert b"<Say" not in response.content


# --- Redis down -------------------------------------------------------------------------


def test_with_the_rate_limit_cache_down_the_caller_still_gets_the_agent(
    client, agent, settings, caplog
):
    """The rate limiter fails open when Redis is unreachable (logged); /healthz reports it."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }
    response = post_voice(client, voice_params(CALL_SID))

    root = parse_twiml(response)
    assert root.find("Connect/Stream") is not None
    assert "rate limits not applied: the cache is unreachable" in caplog.text
