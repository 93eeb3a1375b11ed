"""The calls part of the API (voiceagents/rest_api.py routes to it, behind a bearer
token): calls with their turns and usage, and placing an outbound call."""

import orjson
from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404

from calls.models import Call, PhoneNumber
from calls.outbound import CallNotPlaced, place_call
from calls.outcomes import USAGE_FIELDS
from calls.phone import is_e164
from transcripts.search import CallFilterForm, filter_calls
from voiceagents.models import Agent

MAX_PAGE_SIZE = 200


def call_summary(call: Call) -> dict:
    return {
        "sid": call.sid,
        "direction": call.direction,
        "from": call.from_number,
        "to": call.to_number,
        "agent": call.agent.name if call.agent else None,
        "status": call.status,
        "started_at": call.started_at,
        "answered_at": call.answered_at,
        "ended_at": call.ended_at,
        "duration_s": call.duration_s,
        "completion_reason": call.completion_reason,
        "error_code": call.error_code,
        "error_message": call.error_message,
        "openai_errors": {"count": call.openai_error_count, "last": call.openai_last_error},
        "usage": {name: getattr(call, name) for name in USAGE_FIELDS},
    }


def post_call_detail(call: Call) -> dict:
    """The recording, the post-call transcript (the newest completed run), summary and
    outcome; nulls while they are not there (or never will be)."""
    from transcripts.selectors import current_recording, current_transcript

    recording = current_recording(call)
    transcript = current_transcript(call)
    summary = getattr(call, "summary", None)
    return {
        "recording": None
        if recording is None
        else {
            "sid": recording.sid,
            "status": recording.state,
            "channels": recording.channels,
            "duration_s": recording.duration_s,
        },
        "transcript": None
        if transcript is None
        else {
            "status": transcript.status,
            "mode": transcript.mode,
            "model": transcript.model,
            "method": transcript.method,
            "agent_speaker": transcript.agent_label,
            "caller_name": transcript.caller_name or None,
            "lines": [
                {
                    "speaker": segment["speaker"],
                    "name": segment.get("name", ""),
                    "start_s": segment["start"],
                    "end_s": segment["end"],
                    "text": segment["text"],
                }
                for segment in transcript.segments
            ],
        },
        "summary": (summary.summary or None) if summary else None,
        "outcome": summary.outcome if summary else None,
    }


def call_detail(call: Call, with_transcripts: bool = True) -> dict:
    """Without the read-transcripts scope: the call's facts, and what was said left out."""
    if not with_transcripts:
        return call_summary(call) | {
            "recording": None,
            "transcript": None,
            "summary": None,
            "outcome": None,
            "turns": None,
        }
    return (
        call_summary(call)
        | post_call_detail(call)
        | {
            "turns": [
                {
                    "speaker": turn.speaker,
                    "text": turn.text,
                    "started_ms": turn.started_ms,
                    "interrupted": turn.interrupted,
                    "item_id": turn.item_id,
                }
                for turn in call.turns.all()
            ]
        }
    )


def _bounded_int(raw: str | None, default: int, upper: int) -> int | None:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 0 <= value <= upper else None


def place_call_from_api(request: HttpRequest) -> JsonResponse:
    """{"to": "+1555…", "agent": <id or name>, "from": "+1555…" (optional: the agent's
    first number), "context": {"name": …, "notes": …}} → 201 with the call."""
    try:
        body = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        return JsonResponse({"error": "the body must be a JSON object"}, status=400)
    request_problem, agent, from_number = outbound_request_problem(body)
    if request_problem:
        return JsonResponse({"error": request_problem}, status=400)
    context = {
        k: str(v)[:2000] for k, v in (body.get("context") or {}).items() if k in ("name", "notes")
    }
    try:
        call = place_call(agent, body["to"], from_number, context)
    except CallNotPlaced as exc:
        return JsonResponse({"error": f"Twilio did not place the call: {exc}"}, status=502)
    return JsonResponse(call_summary(call) | {"context": call.context}, status=201)


def outbound_request_problem(body) -> tuple[str, Agent | None, PhoneNumber | None]:
    if not isinstance(body, dict):
        return "the body must be a JSON object", None, None
    if not is_e164(body.get("to") if isinstance(body.get("to"), str) else ""):
        return "to: an E.164 number such as +14155550123 is required", None, None
    if not isinstance(body.get("context", {}), dict):
        return 'context: must be an object such as {"name": "Maria"}', None, None
    ref = body.get("agent")
    agents = Agent.objects.filter(archived_at__isnull=True)
    if isinstance(ref, int) and not isinstance(ref, bool):
        agent = agents.filter(pk=ref).first()
    elif isinstance(ref, str) and ref:
        agent = agents.filter(name=ref).first()
    else:
        return "agent: the agent's id or name is required", None, None
    if agent is None:
        return f"agent: no active agent {ref!r}", None, None
    numbers = agent.phone_numbers.all()
    wanted = body.get("from")
    from_number = numbers.filter(number=wanted).first() if wanted else numbers.first()
    if from_number is None:
        return (
            f"from: {wanted!r} is not one of {agent.name}'s numbers"
            if wanted
            else f"from: {agent.name} has no phone number to call from",
            None,
            None,
        )
    return "", agent, from_number


def list_calls(request: HttpRequest) -> JsonResponse:
    limit = _bounded_int(request.GET.get("limit"), 50, MAX_PAGE_SIZE)
    offset = _bounded_int(request.GET.get("offset"), 0, 10**9)
    if limit is None or offset is None:
        return JsonResponse(
            {"error": f"limit must be 0-{MAX_PAGE_SIZE} and offset a non-negative integer"},
            status=400,
        )
    # The console's call filters, by the same names: q (words said, a name or a number),
    # agent (id), status, direction, completion_reason, outcome (key=value), date_from/to.
    filters = CallFilterForm(request.GET)
    if not filters.is_valid():
        problems = "; ".join(f"{k}: {' '.join(v)}" for k, v in filters.errors.items())
        return JsonResponse({"error": problems}, status=400)
    calls = filter_calls(filters)
    page = calls[offset : offset + limit]
    return JsonResponse(
        {"count": calls.count(), "results": [call_summary(c) for c in page]},
    )


def call_detail_view(request: HttpRequest, sid: str) -> JsonResponse:
    call = get_object_or_404(Call.objects.select_related("agent"), sid=sid)
    return JsonResponse(call_detail(call, request.auth.allows("read_transcripts")))
