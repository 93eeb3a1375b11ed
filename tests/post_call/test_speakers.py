"""Who is the agent: the channels decide, the model fills gaps, disagreements are kept;
then the lines are merged and labelled with names."""

import pytest

from transcripts.audio import AGENT_CHANNEL, CALLER_CHANNEL
from transcripts.formatting import clock, labelled_text, merge_consecutive
from transcripts.speakers import (
    ModelAnswer,
    clean_first_name,
    decide,
    identification_request,
)


def seg(label, start, end, channel, text="words"):
    return {"label": label, "start": start, "end": end, "channel": channel, "text": text}


CALL = [
    seg("A", 0.0, 3.0, AGENT_CHANNEL, "Hello, bakery."),
    seg("B", 3.5, 5.0, CALLER_CHANNEL, "Hi, this is Maria."),
    seg("A", 5.5, 8.0, AGENT_CHANNEL, "How can I help?"),
    seg("B", 8.5, 9.0, None, "Bread."),  # crosstalk: no clear channel
]


def test_channels_decide_when_the_model_agrees():
    decision = decide(CALL, ModelAnswer("A", "Maria"), AGENT_CHANNEL)
    assert (decision.agent_label, decision.method) == ("A", "channel")
    assert decision.roles == {"A": "agent", "B": "caller"}
    assert decision.disagreement == ""


def test_a_model_naming_the_wrong_label_is_corrected_by_the_channels():
    decision = decide(CALL, ModelAnswer("B", None), AGENT_CHANNEL)
    assert decision.agent_label == "A"
    assert decision.method == "channel"
    assert decision.roles == {"A": "agent", "B": "caller"}
    assert "B" in decision.disagreement and "caller" in decision.disagreement


def test_the_model_decides_when_no_channel_is_clear():
    mono = [dict(s, channel=None) for s in CALL]
    decision = decide(mono, ModelAnswer("B", None), AGENT_CHANNEL)
    assert (decision.agent_label, decision.method) == ("B", "model")
    assert decision.roles == {"A": "caller", "B": "agent"}


def test_nothing_decides_without_channels_or_model():
    mono = [dict(s, channel=None) for s in CALL]
    decision = decide(mono, None, AGENT_CHANNEL)
    assert (decision.agent_label, decision.method, decision.roles) == ("", "none", {})


def test_a_model_answer_outside_the_labels_is_ignored():
    mono = [dict(s, channel=None) for s in CALL]
    assert decide(mono, ModelAnswer("Z", None), AGENT_CHANNEL).method == "none"


def test_only_the_caller_side_clear_still_finds_the_agent():
    only_caller = [dict(s, channel=s["channel"] if s["label"] == "B" else None) for s in CALL]
    decision = decide(only_caller, None, AGENT_CHANNEL)
    assert (decision.agent_label, decision.method) == ("A", "channel")


def test_agent_on_the_first_channel_is_followed():
    swapped = [
        dict(
            s,
            channel={AGENT_CHANNEL: CALLER_CHANNEL, CALLER_CHANNEL: AGENT_CHANNEL}.get(
                s["channel"]
            ),
        )
        for s in CALL
    ]
    assert decide(swapped, None, CALLER_CHANNEL).agent_label == "A"


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("maria", "Maria"),
        ("  José García ", "José"),
        (None, None),
        ("", None),
        ("42", None),
        ("O'Neil", "O'Neil"),
    ],
)
def test_caller_first_name_is_cleaned(raw, name):
    assert clean_first_name(raw) == name


def test_identification_request_lists_labels_in_a_strict_schema():
    text, schema = identification_request(CALL, "Bakery", "You answer for a bakery.")
    assert "[00:03.5] B: Hi, this is Maria." in text
    assert "Agent name: Bakery" in text
    assert schema["properties"]["agent_speaker"]["enum"] == ["A", "B"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])


def test_consecutive_lines_of_one_speaker_are_merged_and_labelled():
    segments = [
        {
            "label": "A",
            "speaker": "agent",
            "start": 0.0,
            "end": 1.0,
            "text": "Hello.",
            "channel": 2,
        },
        {
            "label": "A",
            "speaker": "agent",
            "start": 1.2,
            "end": 2.0,
            "text": "Bakery.",
            "channel": 2,
        },
        {
            "label": "B",
            "speaker": "caller",
            "start": 65.0,
            "end": 66.0,
            "text": "Hi.",
            "channel": 1,
        },
    ]
    merged = merge_consecutive(segments)
    assert [(m["start"], m["end"], m["text"]) for m in merged] == [
        (0.0, 2.0, "Hello. Bakery."),
        (65.0, 66.0, "Hi."),
    ]
    merged[0]["name"], merged[1]["name"] = "Bakery", "Maria"
    assert labelled_text(merged) == "[00:00] Bakery: Hello. Bakery.\n[01:05] Maria: Hi."
    assert clock(65.25, tenths=True) == "01:05.2"
