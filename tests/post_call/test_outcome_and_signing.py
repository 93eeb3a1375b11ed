"""Agents' outcome schemas (checked when saved, made strict for OpenAI) and the signature
of the completion webhook as a receiver verifies it."""

import pytest
from django.core.exceptions import ValidationError

from tests.factories import make_agent
from transcripts import completion_webhook
from transcripts.outcome_schema import outcome_errors, outcome_schema_errors, strict_schema
from voiceagents import signing

BOOKING = {
    "type": "object",
    "properties": {
        "appointment_booked": {"type": "boolean"},
        "reason": {"type": "string"},
        "slots": {
            "type": "array",
            "items": {"type": "object", "properties": {"day": {"type": "string"}}},
        },
    },
    "required": ["appointment_booked"],
}


def test_strict_form_closes_every_object_and_requires_every_property():
    strict = strict_schema(BOOKING)
    assert strict["additionalProperties"] is False
    assert strict["required"] == ["appointment_booked", "reason", "slots"]
    assert strict["properties"]["reason"]["type"] == ["string", "null"]  # optional → nullable
    assert strict["properties"]["appointment_booked"]["type"] == "boolean"
    item = strict["properties"]["slots"]["items"]
    assert item["additionalProperties"] is False and item["required"] == ["day"]
    assert BOOKING["properties"]["reason"] == {"type": "string"}  # the original is untouched


@pytest.mark.parametrize(
    ("schema", "problem"),
    [
        ([], "JSON object"),
        ({"type": "string"}, '"type": "object"'),
        ({"type": "object", "properties": {}}, "at least one property"),
        ({"type": "object", "properties": {"x": {"type": "nonsense"}}}, "Not a valid JSON Schema"),
    ],
)
def test_unusable_outcome_schemas_are_refused_with_a_reason(schema, problem):
    assert problem in " ".join(outcome_schema_errors(schema))


@pytest.mark.django_db
def test_agent_with_a_bad_outcome_schema_does_not_validate():
    agent = make_agent(outcome_schema={"type": "string"})
    with pytest.raises(ValidationError) as info:
        agent.full_clean()
    assert "outcome_schema" in info.value.message_dict
    agent.outcome_schema = BOOKING
    agent.full_clean()


def test_outcome_checked_against_the_agents_schema():
    assert outcome_errors(BOOKING, {"appointment_booked": True}) == []
    problems = outcome_errors(BOOKING, {"appointment_booked": "yes"})
    assert problems and problems[0].startswith("appointment_booked:")


@pytest.mark.django_db
def test_agent_with_a_webhook_url_gets_a_secret():
    agent = make_agent(completion_webhook_url="https://crm.example.com/hook")
    assert agent.completion_webhook_secret.startswith("whsec_")
    assert make_agent().completion_webhook_secret == ""


def test_receiver_verifies_our_signature_and_rejects_tampering_and_replays():
    body = b'{"event": "call.completed"}'
    secret = "whsec_test"
    signature = signing.sign(secret, 1_700_000_000, body)
    ok = signing.verify(secret, body, "1700000000", signature, now=1_700_000_010)
    assert ok
    assert not signing.verify(secret, body + b" ", "1700000000", signature, now=1_700_000_010)
    assert not signing.verify("other", body, "1700000000", signature, now=1_700_000_010)
    # The same request replayed ten minutes later is refused.
    assert not signing.verify(secret, body, "1700000000", signature, now=1_700_000_600)
    assert not signing.verify(secret, body, "not-a-time", signature)


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (None, True),
        (500, True),
        (503, True),
        (429, True),
        (408, True),
        (400, False),
        (401, False),
        (404, False),
        (410, False),
    ],
)
def test_which_answers_are_retried(status, retry):
    assert completion_webhook.is_retryable(status) is retry
