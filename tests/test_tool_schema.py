"""A tool's parameters schema is checked when it is saved: a call never meets one it
cannot use."""

import pytest
from django.core.exceptions import ValidationError

from voiceagents.models import Tool
from voiceagents.tool_schema import MAX_SCHEMA_DEPTH

pytestmark = pytest.mark.django_db  # full_clean checks the name is unique


def tool_with(parameters) -> Tool:
    return Tool(
        name="lookup", description="Look up.", url="https://tools.example/x", parameters=parameters
    )


def nested(levels: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(levels):
        schema = {"type": "object", "properties": {"inner": schema}}
    return schema


def test_a_schema_too_deep_to_serialise_is_refused_when_saved():
    with pytest.raises(ValidationError) as refused:
        tool_with(nested(300)).full_clean()
    assert f"nested more than {MAX_SCHEMA_DEPTH} levels" in str(refused.value)


def test_an_invalid_json_schema_is_refused_with_the_reason():
    with pytest.raises(ValidationError) as refused:
        tool_with({"type": "object", "properties": {"order": {"type": "integr"}}}).full_clean()
    assert "Not a valid JSON Schema" in str(refused.value)


def test_a_sensible_schema_is_accepted():
    tool_with(nested(5)).full_clean()


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("https://bob:pw@tools.example/lookup", "user:password@ is refused"),
        ("https://tools.example/lookup?api_key=abc", "'api_key' looks like a secret"),
        ("https://tools.example/lookup?Token=abc&x=1", "'Token' looks like a secret"),
    ],
)
def test_a_url_carrying_a_secret_is_refused_with_a_clear_message(url, refusal):
    tool = Tool(name="lookup", description="Look up.", url=url)
    with pytest.raises(ValidationError) as refused:
        tool.full_clean()
    assert refusal in str(refused.value.message_dict["url"])


def test_a_url_with_an_ordinary_query_is_accepted():
    Tool(
        name="lookup", description="Look up.", url="https://tools.example/x?region=eu"
    ).full_clean()
