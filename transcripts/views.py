"""Staff review of the post-call work: the recording (streamed with Range support, never
from a public URL), the re-run button, and exports of one call or a filtered list."""

import csv
import logging
import re

import orjson
from django.contrib import messages
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404, redirect
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from calls.api import call_detail as call_as_json
from calls.models import Call
from transcripts.models import Recording
from transcripts.search import CallFilterForm, filter_calls
from transcripts.selectors import current_recording, current_transcript
from voiceagents.access import staff_permission_required

log = logging.getLogger(__name__)
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
CHUNK = 64 * 1024


def _call(sid: str) -> Call:
    return get_object_or_404(Call.objects.select_related("agent"), sid=sid)


@staff_permission_required("calls.view_call", "transcripts.listen_recording")
@require_GET
def recording_audio(request: HttpRequest, sid: str) -> HttpResponse:
    """The stored WAV. Browsers seek in audio with Range requests, so they are honoured."""
    recording = current_recording(_call(sid))
    if recording is None or recording.state != Recording.State.STORED or not recording.file:
        raise Http404("No stored recording for this call.")
    handle = recording.file.open("rb")
    size = recording.file.size
    wanted = RANGE.match(request.headers.get("Range", ""))
    if wanted and (wanted.group(1) or wanted.group(2)):
        first_raw, last_raw = wanted.groups()
        if first_raw:
            first, last = int(first_raw), int(last_raw) if last_raw else size - 1
        else:  # bytes=-N: the last N bytes
            first, last = max(0, size - int(last_raw)), size - 1
        if first >= size or last < first:
            handle.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        last = min(last, size - 1)
        handle.seek(first)
        response = StreamingHttpResponse(
            _read(handle, last - first + 1), status=206, content_type="audio/wav"
        )
        response["Content-Range"] = f"bytes {first}-{last}/{size}"
        response["Content-Length"] = str(last - first + 1)
    else:
        response = FileResponse(handle, content_type="audio/wav")
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "no-store, private"
    response["Content-Disposition"] = f'inline; filename="{recording.sid}.wav"'
    return response


def _read(handle, remaining: int):
    try:
        while remaining > 0:
            data = handle.read(min(CHUNK, remaining))
            if not data:
                break
            remaining -= len(data)
            yield data
    finally:
        handle.close()


@staff_permission_required("calls.view_call", "transcripts.rerun_pipeline")
@require_POST
def rerun(request: HttpRequest, sid: str) -> HttpResponse:
    from transcripts.tasks import rerun_pipeline

    call = _call(sid)
    if call.ended_at is None:
        messages.warning(request, "The call is still going: its recording comes after it ends.")
    else:
        messages.info(request, rerun_pipeline(call, requested_by=request.user.get_username()))
    return redirect("call-detail", sid=call.sid)


def _transcript_text(call: Call) -> str:
    transcript = current_transcript(call)
    if transcript is not None:
        return transcript.text
    agent_name = call.agent.name if call.agent else "Agent"
    lines = []
    for turn in call.turns.all():
        who = {"agent": agent_name, "caller": "Caller"}.get(turn.speaker, "Tool")
        seconds = turn.started_ms // 1000
        lines.append(f"[{seconds // 60:02d}:{seconds % 60:02d}] {who}: {turn.text}")
    return "\n".join(lines)


@staff_permission_required("calls.view_call", "transcripts.view_transcript")
@require_GET
def transcript_text(request: HttpRequest, sid: str) -> HttpResponse:
    """The labelled transcript as plain text (the live one when there is no other)."""
    call = _call(sid)
    response = HttpResponse(_transcript_text(call) + "\n", content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{call.sid}.txt"'
    response["Cache-Control"] = "no-store, private"
    return response


@staff_permission_required("calls.view_call", "transcripts.view_transcript")
@require_GET
def export_json(request: HttpRequest, sid: str) -> HttpResponse:
    call = _call(sid)
    response = HttpResponse(
        orjson.dumps(call_as_json(call), option=orjson.OPT_INDENT_2),
        content_type="application/json",
    )
    response["Content-Disposition"] = f'attachment; filename="{call.sid}.json"'
    response["Cache-Control"] = "no-store, private"
    return response


CSV_COLUMNS = [
    "sid",
    "started_at",
    "from",
    "to",
    "agent",
    "status",
    "duration_s",
    "completion_reason",
    "caller_name",
    "summary",
    "outcome",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


@staff_permission_required("calls.view_call", "transcripts.view_transcript")
@require_GET
def export_csv(request: HttpRequest) -> HttpResponse:
    """The filtered call list, one row per call, streamed so 100,000 rows cost no memory."""
    form = CallFilterForm(request.GET)
    if not form.is_valid():
        return HttpResponse(
            "Bad filter: " + "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items()),
            status=400,
            content_type="text/plain",
        )
    calls = filter_calls(form).select_related("summary").prefetch_related("transcripts")
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow(CSV_COLUMNS)
        for call in calls.iterator(chunk_size=1000):
            summary = getattr(call, "summary", None)
            names = [t.caller_name for t in call.transcripts.all() if t.status == "completed"]
            yield writer.writerow(
                [
                    call.sid,
                    timezone.localtime(call.started_at).isoformat(),
                    call.from_number,
                    call.to_number,
                    call.agent.name if call.agent else "",
                    call.status,
                    call.duration_s if call.duration_s is not None else "",
                    call.completion_reason,
                    names[0] if names else "",
                    summary.summary if summary else "",
                    orjson.dumps(summary.outcome).decode() if summary and summary.outcome else "",
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="calls.csv"'
    response["Cache-Control"] = "no-store, private"
    return response
