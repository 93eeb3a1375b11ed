"""The model choices staff see come from one table (voiceagents.model_catalog); every
entry must be something the Realtime API takes, checked against the fake's schema, which
follows openai-python's types."""

import pytest
from django.core.exceptions import ValidationError

from tests.fakes import realtime_schema
from tests.fakes.realtime_schema import find_problems
from tests.test_bridge import agent_config
from voiceagents.model_catalog import (
    LIVE_TRANSCRIPTION_MODELS,
    REALTIME_MODELS,
    REASONING_EFFORTS,
)
from voiceagents.models import Agent
from voiceagents.realtime import session_update_event


def test_every_realtime_model_offered_is_one_openai_names():
    offered = {m.name for m in REALTIME_MODELS}
    assert offered <= set(realtime_schema.REALTIME_MODELS)
    # The newest ones are all there, marked as reasoning models where they are.
    assert {"gpt-realtime-2", "gpt-realtime-2.1", "gpt-realtime-2.1-mini"} <= offered
    for model in REALTIME_MODELS:
        assert model.reasoning == (model.name in realtime_schema.REASONING_REALTIME_MODELS)
    assert REASONING_EFFORTS == realtime_schema.REASONING_EFFORTS


def test_every_live_transcription_model_offered_is_one_openai_names():
    assert {m.name for m in LIVE_TRANSCRIPTION_MODELS} <= set(realtime_schema.TRANSCRIPTION_MODELS)
    for model in LIVE_TRANSCRIPTION_MODELS:
        takes_hints = model.name in realtime_schema.KEYWORD_TRANSCRIPTION_MODELS
        assert model.keywords_and_languages == takes_hints


@pytest.mark.parametrize("model", REALTIME_MODELS, ids=lambda m: m.name)
def test_each_model_makes_a_session_update_the_api_accepts(model):
    config = agent_config(
        model=model.name, reasoning_effort="low" if model.reasoning else "", idle_timeout_ms=8000
    )
    event = session_update_event(config)
    assert find_problems(event) == []
    assert ("reasoning" in event["session"]) == model.reasoning


@pytest.mark.parametrize("model", LIVE_TRANSCRIPTION_MODELS, ids=lambda m: m.name)
def test_each_transcription_model_with_its_hints_is_accepted(model):
    hints = (
        {"transcription_keywords": ("focaccia",), "transcription_languages": ("en", "es")}
        if model.keywords_and_languages
        else {}
    )
    event = session_update_event(agent_config(input_transcription_model=model.name, **hints))
    assert find_problems(event) == []


def test_the_fake_refuses_what_the_api_would():
    wrong = session_update_event(
        agent_config(
            model="gpt-realtime-1.5",
            reasoning_effort="high",
            input_transcription_model="gpt-4o-transcribe",
            transcription_keywords=("focaccia",),
        )
    )
    params = {p.param for p in find_problems(wrong)}
    assert params == {"session.reasoning", "session.audio.input.transcription.keywords"}
    assert find_problems(session_update_event(agent_config(model="gpt-realtime-9")))


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field_with_error"),
    [
        ({"model": "gpt-realtime-1.5", "reasoning_effort": "high"}, "reasoning_effort"),
        (
            {"input_transcription_model": "gpt-4o-transcribe", "input_transcription_keywords": "x"},
            "input_transcription_keywords",
        ),
        (
            {"input_transcription_model": "gpt-transcribe", "input_transcription_languages": "eng"},
            "input_transcription_languages",
        ),
        ({"turn_detection": "semantic_vad", "idle_timeout_ms": 5000}, "idle_timeout_ms"),
    ],
)
def test_the_agent_form_names_the_field_of_an_invalid_combination(fields, field_with_error):
    agent = Agent(name="Desk", **fields)
    with pytest.raises(ValidationError) as error:
        agent.full_clean()
    assert field_with_error in error.value.message_dict


@pytest.mark.django_db
def test_a_reasoning_model_with_hints_is_a_valid_agent():
    agent = Agent(
        name="Desk",
        model="gpt-realtime-2.1",
        reasoning_effort="medium",
        input_transcription_model="gpt-live-transcribe",
        input_transcription_keywords="focaccia\nciabatta\n",
        input_transcription_languages="en, es",
        idle_timeout_ms=8000,
        max_call_duration_s=600,
    )
    agent.full_clean()
    assert agent.transcription_keywords() == ["focaccia", "ciabatta"]
    assert agent.transcription_languages() == ["en", "es"]
