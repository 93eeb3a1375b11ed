"""Read API for integrations: calls with their turns and usage, behind a bearer token."""

import functools

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.views.decorators.http import require_GET

from calls.models import Call
from calls.outcomes import USAGE_FIELDS
from voiceagents.models import ApiToken

MAX_PAGE_SIZE = 200


def api_token_required(scope: str):
    """A valid, unexpired bearer token (else 401) whose scopes include `scope` (else 403);
    the view gets the token as `request.api_token`."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs):
            scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
            token = (
                ApiToken.find_active(raw.strip()) if scheme.lower() == "bearer" and raw else None
            )
            if token is None:
                response = JsonResponse(
                    {"error": "a valid, unexpired API token is required"}, status=401
                )
                response["WWW-Authenticate"] = "Bearer"
                return response
            if not token.allows(scope):
                return JsonResponse(
                    {"error": f"this API token does not have the {scope} scope"}, status=403
                )
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
            request.api_token = token
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


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


@require_GET
@api_token_required("read_calls")
def call_list(request: HttpRequest) -> JsonResponse:
    limit = _bounded_int(request.GET.get("limit"), 50, MAX_PAGE_SIZE)
    offset = _bounded_int(request.GET.get("offset"), 0, 10**9)
    if limit is None or offset is None:
        return JsonResponse(
            {"error": f"limit must be 0-{MAX_PAGE_SIZE} and offset a non-negative integer"},
            status=400,
        )
    calls = Call.objects.select_related("agent").order_by("-started_at", "-id")
    page = calls[offset : offset + limit]
    return JsonResponse(
        {"count": calls.count(), "results": [call_summary(c) for c in page]},
    )


@require_GET
@api_token_required("read_calls")
def call_detail_view(request: HttpRequest, sid: str) -> JsonResponse:
    call = get_object_or_404(Call.objects.select_related("agent"), sid=sid)
    return JsonResponse(call_detail(call, request.api_token.allows("read_transcripts")))
