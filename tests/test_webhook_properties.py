"""Random (but correctly signed) webhook posts: the app answers with TwiML or a 400, never
a server error, and one Twilio CallSid never makes two calls."""

import xml.etree.ElementTree as ET

import pytest
from django.test import Client
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from calls.models import Call
from tests.factories import (
    AGENT_NUMBER,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    make_agent,
    make_number,
    signed_post,
    voice_params,
)

# Values Twilio could send, and values a broken or hostile sender could: empty, unicode,
# control characters (not NUL, which no form encoding carries), very long.
field_values = st.one_of(
    st.text(
        st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=50,
    ),
    st.sampled_from(["", AGENT_NUMBER, "+15550009999", "client:alice", "sip:x@y", "inbound"]),
    st.text(alphabet="0123456789abcdef", min_size=1000, max_size=3000),
)
twilio_fields = st.sampled_from(
    ["CallSid", "AccountSid", "From", "To", "CallStatus", "Direction", "ApiVersion", "Caller"]
)
form_overrides = st.dictionaries(twilio_fields | st.text(max_size=12), field_values, max_size=8)
call_sids = st.sampled_from(["CA" + "1" * 32, "CA" + "2" * 32, "", "not-a-sid", "CA" + "f" * 300])
paths = st.sampled_from(["/twilio/voice", "/twilio/stream-ended"])


@pytest.fixture(autouse=True)
def answering_agent(db, settings):
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    make_number(make_agent(name="Reception"), AGENT_NUMBER)


@hypothesis_settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(path=paths, call_sid=call_sids, overrides=form_overrides, drop=st.sets(twilio_fields))
def test_signed_random_forms_get_twiml_or_a_clear_refusal(path, call_sid, overrides, drop):
    # Examples share one test transaction, so calls made by earlier examples stay.
    params = {k: v for k, v in (voice_params(call_sid) | overrides).items() if k not in drop}
    calls_before = set(Call.objects.values_list("sid", flat=True))

    response = signed_post(Client(), path, params)

    assert response.status_code in {200, 400}, response.content[:200]
    if response.status_code == 200:
        root = ET.fromstring(response.content)
        assert root.tag == "Response"
        assert {child.tag for child in root} <= {"Start", "Connect", "Say", "Hangup"}
    new_calls = set(Call.objects.values_list("sid", flat=True)) - calls_before
    assert len(new_calls) <= 1
    assert new_calls <= {params.get("CallSid")}
