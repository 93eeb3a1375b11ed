"""POST /twilio/recording: Twilio says a call's recording is ready (or absent, or failed)."""

import logging

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from calls.models import Call
from calls.twilio_signature import twilio_signature_required
from transcripts.forms import RecordingCallbackForm
from transcripts.models import Recording
from voiceagents.log_context import current_call_sid

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
@twilio_signature_required
def recording_status(request: HttpRequest) -> HttpResponse:
    form = RecordingCallbackForm(request.POST)
    if not form.is_valid():
        log.warning("refused recording callback: %s", form.error_text())
        return HttpResponse(form.error_text(), status=400, content_type="text/plain")
    data = form.cleaned_data
    current_call_sid.set(data["CallSid"])
    status = data["RecordingStatus"]
    if status == "in-progress":
        return HttpResponse(status=204)  # we asked for completed and absent only
    call = Call.objects.filter(sid=data["CallSid"]).first()
    if call is None:
        log.warning(
            "recording %s for unknown call %s: ignored", data["RecordingSid"], data["CallSid"]
        )
        return HttpResponse(status=204)  # a 4xx would only make Twilio retry
    completed = status == Recording.TwilioStatus.COMPLETED
    try:
        # The unique sid is the idempotency key: Twilio's retry of this callback fails
        # here instead of starting the work a second time.
        with transaction.atomic():
            recording = Recording.objects.create(
                call=call,
                sid=data["RecordingSid"],
                account_sid=data["AccountSid"],
                twilio_status=status,
                state=Recording.State.PENDING if completed else Recording.State.NONE,
                source_url=data.get("RecordingUrl") or "",
                channels=data.get("RecordingChannels"),
                duration_s=data.get("RecordingDuration"),
                error_code="" if data.get("ErrorCode") in ("", "0", None) else data["ErrorCode"],
                error="" if completed else f"Twilio reported the recording {status}.",
            )
    except IntegrityError:
        log.info("recording %s: repeated %s callback ignored", data["RecordingSid"], status)
        return HttpResponse(status=204)

    from transcripts import tasks

    if completed:
        tasks.process_recording.delay_on_commit(recording.pk)
    else:
        log.warning("call %s: recording %s %s", call.sid, recording.sid, status)
        tasks.after_transcript.delay_on_commit(call.pk, None)
    return HttpResponse(status=204)
