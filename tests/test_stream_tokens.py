"""Stream tokens tie a media stream to its call: signed, expiring, and claimable once."""

import time

import pytest
from django.core import signing
from django.utils import timezone

from calls.call_records import claim_stream
from calls.models import Call
from calls.stream_tokens import SALT, make_stream_token, read_stream_token
from tests.factories import make_agent, make_call, make_tool
from voiceagents.realtime import AgentConfig

CALL_SID = "CA" + "c" * 32


def test_token_round_trip():
    assert read_stream_token(make_stream_token(CALL_SID)) == CALL_SID


def test_tokens_of_different_calls_differ():
    other = "CA" + "d" * 32

    assert read_stream_token(make_stream_token(other)) == other
    assert make_stream_token(other) != make_stream_token(CALL_SID)


def flip(char: str) -> str:
    return "B" if char != "B" else "C"


@pytest.mark.parametrize("position", [0, 5, -1, -5])
def test_forged_token_is_refused(position):
    token = make_stream_token(CALL_SID)
    forged = list(token)
    forged[position] = flip(forged[position])

    assert read_stream_token("".join(forged)) is None


def test_token_signed_with_another_key_is_refused():
    token = signing.dumps(CALL_SID, salt=SALT, key="someone-elses-secret")

    assert read_stream_token(token) is None


def test_token_with_another_salt_is_refused():
    # A value signed for some other purpose in this app is no stream token.
    token = signing.dumps(CALL_SID, salt="some.other.purpose")

    assert read_stream_token(token) is None


def test_token_naming_a_non_string_is_refused():
    assert read_stream_token(signing.dumps(["CA1"], salt=SALT)) is None


@pytest.mark.parametrize("junk", ["", "x", "a:b:c", "../../etc/passwd"])
def test_junk_is_refused(junk):
    assert read_stream_token(junk) is None


def test_token_expires_after_max_age(settings, monkeypatch):
    settings.STREAM_TOKEN_MAX_AGE_S = 120
    issued_at = time.time()
    token = make_stream_token(CALL_SID)

    # django.core.signing reads the clock through the time module.
    monkeypatch.setattr(signing.time, "time", lambda: issued_at + 110)
    assert read_stream_token(token) == CALL_SID
    monkeypatch.setattr(signing.time, "time", lambda: issued_at + 130)
    assert read_stream_token(token) is None


def test_token_expires_with_zero_max_age(settings):
    settings.STREAM_TOKEN_MAX_AGE_S = 0
    token = make_stream_token(CALL_SID)

    time.sleep(1.1)

    assert read_stream_token(token) is None


# --- Claiming the stream of a call (single use) -----------------------------------------


@pytest.mark.django_db
def test_claim_stream_succeeds_once():
    tool = make_tool(name="end_call", kind="end_call", url="")
    agent = make_agent(name="Reception", voice="cedar", tools=[tool])
    call = make_call(CALL_SID, agent=agent)

    claimed = claim_stream(CALL_SID)

    assert claimed is not None
    call_pk, config = claimed
    assert call_pk == call.pk
    assert isinstance(config, AgentConfig)
    assert (config.name, config.voice) == ("Reception", "cedar")
    assert [t.name for t in config.tools] == ["end_call"]
    call.refresh_from_db()
    assert call.stream_connected_at is not None
    assert call.status == Call.Status.IN_PROGRESS

    connected_at = call.stream_connected_at
    assert claim_stream(CALL_SID) is None
    call.refresh_from_db()
    assert call.stream_connected_at == connected_at


@pytest.mark.django_db
def test_claim_stream_of_unknown_call_is_refused():
    make_call(CALL_SID, agent=make_agent())

    assert claim_stream("CA" + "0" * 32) is None
    assert Call.objects.get(sid=CALL_SID).stream_connected_at is None


@pytest.mark.django_db
def test_claim_stream_of_call_without_agent_is_refused():
    make_call(CALL_SID, agent=None)

    assert claim_stream(CALL_SID) is None


@pytest.mark.django_db
def test_claim_stream_of_ended_call_is_refused():
    make_call(CALL_SID, agent=make_agent(), ended_at=timezone.now())

    assert claim_stream(CALL_SID) is None
