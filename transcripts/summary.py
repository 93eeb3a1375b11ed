"""A short summary of each call and the agent's structured outcome, extracted in one
structured-output call and checked against the agent's own schema."""

import logging
from decimal import Decimal

from django.conf import settings

from calls.models import Call
from transcripts import openai_api
from transcripts.models import CallSummary, Transcript
from transcripts.outcome_schema import outcome_errors, strict_schema
from transcripts.pricing import text_cost

log = logging.getLogger(__name__)

SCHEMA_NAME = "call_summary"
INSTRUCTIONS = (
    "You summarise phone calls between an AI phone agent and a caller for the staff who "
    "review them. Write a summary of two or three sentences: why the caller called, what "
    "was done or agreed, and anything left open. Fill in the outcome fields from what was "
    "said in the call only; use null where the call does not say."
)
TRANSCRIPT_CHARS = 60_000  # about 15k tokens: longer calls are summarised from their start


def live_transcript_text(call: Call) -> str:
    lines = []
    for turn in call.turns.exclude(speaker="tool"):
        who = (call.agent.name if call.agent else "Agent") if turn.speaker == "agent" else "Caller"
        seconds = turn.started_ms // 1000
        lines.append(f"[{seconds // 60:02d}:{seconds % 60:02d}] {who}: {turn.text}")
    return "\n".join(lines)


def summary_schema(outcome_schema: dict) -> dict:
    properties = {"summary": {"type": "string"}}
    if outcome_schema:
        properties["outcome"] = strict_schema(outcome_schema)
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


def summarise(call: Call, transcript: Transcript | None) -> CallSummary:
    """Summary and outcome from the post-call transcript, or from the live turns when there
    is none. Stored even on failure, with the error, so the call page can show it."""
    source, text = ("recording", transcript.text) if transcript else ("live", "")
    if not text:
        source, text = "live", live_transcript_text(call)
    outcome_schema = (call.agent.outcome_schema if call.agent else {}) or {}
    row, _ = CallSummary.objects.get_or_create(call=call, defaults={"source": source})
    row.source, row.transcript, row.model = source, transcript, settings.SUMMARY_MODEL
    row.error = row.outcome_error = ""
    if not text.strip():
        row.summary, row.outcome = "", None
        row.error = "Nothing was said on this call."
        row.save()
        return row
    agent_name = call.agent.name if call.agent else "Agent"
    user_text = (
        f"Agent: {agent_name}\nCaller number: {call.from_number}\n\nTranscript:\n"
        + text[:TRANSCRIPT_CHARS]
    )
    with openai_api.client() as http:
        answer = openai_api.structured(
            http,
            settings.SUMMARY_MODEL,
            INSTRUCTIONS,
            user_text,
            SCHEMA_NAME,
            summary_schema(outcome_schema),
        )
    value = answer.value if isinstance(answer.value, dict) else {}
    row.summary = str(value.get("summary") or "").strip()
    row.input_tokens, row.output_tokens = answer.input_tokens, answer.output_tokens
    row.cost_usd = text_cost(answer.model, answer.input_tokens, answer.output_tokens).quantize(
        Decimal("0.000001")
    )
    row.outcome = None
    if outcome_schema:
        outcome = value.get("outcome")
        if isinstance(outcome, dict):
            # Optional fields come back as null from the strict form: drop them.
            required = set(outcome_schema.get("required") or [])
            outcome = {k: v for k, v in outcome.items() if v is not None or k in required}
        problems = outcome_errors(outcome_schema, outcome)
        if problems:
            row.outcome_error = "The extracted outcome does not fit the schema: " + "; ".join(
                problems
            )
            log.warning("call %s: %s", call.sid, row.outcome_error)
        else:
            row.outcome = outcome
    row.save()
    return row
