"""Twilio's requests about the outbound calls we place (calls/outbound.py), all
signature-checked. Both name our Call row in their URL (`?call=<pk>`, signed with the
rest of the URL), since Twilio may ask before `calls.create` has even returned the sid.

  /twilio/outbound-answer  the person (or a machine) answered: connect the agent, or
                           hang up / leave the voicemail message on a machine
  /twilio/call-status      how the call went; a call that never reached anyone ends
                           here with Twilio's reason, without an OpenAI session
"""

import functools
import logging

from django import forms
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.twiml.voice_response import VoiceResponse

from calls.call_records import finalize_call
from calls.forms import SID_PATTERN
from calls.models import Call
from calls.outbound import PENDING_SID_PREFIX
from calls.outcomes import CompletionReason
from calls.twilio_signature import twilio_signature_required, webhook_params
from calls.webhooks import connect_to_agent, twiml
from voiceagents.log_context import current_call_sid
from voiceagents.models import MachineDetection

log = logging.getLogger(__name__)

MACHINE_ANSWERS = {"machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other"}
ANSWERED_BY = sorted(MACHINE_ANSWERS | {"human", "fax", "unknown"})
# Twilio's final call statuses that mean nobody was reached.
UNREACHED = {
    "busy": CompletionReason.BUSY,
    "no-answer": CompletionReason.NO_ANSWER,
    "failed": CompletionReason.CALL_FAILED,
    "canceled": CompletionReason.CANCELED,
}
CALL_STATUSES = ["queued", "initiated", "ringing", "in-progress", "completed", *UNREACHED]


class OutboundCallForm(forms.Form):
    CallSid = forms.RegexField(regex=SID_PATTERN.format(prefix="CA"))
    CallStatus = forms.ChoiceField(choices=[(s, s) for s in CALL_STATUSES], required=False)
    AnsweredBy = forms.ChoiceField(
        choices=[("", ""), *((a, a) for a in ANSWERED_BY)], required=False
    )

    def error_text(self) -> str:
        return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in self.errors.items())


def the_call(request: HttpRequest) -> tuple[Call | None, OutboundCallForm, HttpResponse | None]:
    """The Call named in the URL, with its sid filled in from Twilio's request; or the
    answer to give when the request does not fit."""
    form = OutboundCallForm(webhook_params(request))
    if not form.is_valid():
        log.warning("refused outbound-call request: %s", form.error_text())
        return None, form, HttpResponse(form.error_text(), status=400, content_type="text/plain")
    call = get_object_or_404(Call.objects.select_related("agent"), pk=request.GET.get("call") or 0)
    sid = form.cleaned_data["CallSid"]
    if call.sid.startswith(PENDING_SID_PREFIX):
        Call.objects.filter(pk=call.pk, sid=call.sid).update(sid=sid)
        call.sid = sid
    elif call.sid != sid:
        log.warning("outbound-call request for call %s names another sid %s", call.pk, sid)
        return None, form, HttpResponse("CallSid: not this call", status=400)
    current_call_sid.set(sid)
    return call, form, None


def about_our_call(view):
    """A signed POST from Twilio about one of our outbound calls: the view gets the call
    and the checked form, or Twilio gets the refusal."""

    @csrf_exempt
    @require_POST
    @twilio_signature_required
    @functools.wraps(view)
    def wrapped(request: HttpRequest) -> HttpResponse:
        call, form, refusal = the_call(request)
        return refusal if refusal is not None else view(request, call, form)

    return wrapped


@about_our_call
def outbound_answer(request: HttpRequest, call: Call, form: OutboundCallForm) -> HttpResponse:
    answered_by = form.cleaned_data["AnsweredBy"]
    response = VoiceResponse()
    if answered_by:
        Call.objects.filter(pk=call.pk).update(answered_by=answered_by)
    agent = call.agent
    if agent is None or call.ended_at is not None:
        response.hangup()
        return twiml(response)
    if answered_by in MACHINE_ANSWERS or answered_by == "fax":
        if agent.machine_detection == MachineDetection.LEAVE_MESSAGE and answered_by != "fax":
            response.say(agent.voicemail_message)
            reason = CompletionReason.VOICEMAIL_LEFT
        else:
            reason = CompletionReason.MACHINE_HANGUP
        response.hangup()
        log.info("call %s reached %s: %s", call.sid, answered_by, reason)
        finalize_call(call.pk, reason, answered_by, "", {})
        return twiml(response)
    log.info("call %s answered (%s): connecting agent %s", call.sid, answered_by or "-", agent)
    return twiml(connect_to_agent(response, call.sid, agent.record_calls))


@about_our_call
def call_status(request: HttpRequest, call: Call, form: OutboundCallForm) -> HttpResponse:
    status = form.cleaned_data["CallStatus"]
    log.info("call %s: Twilio status %s", call.sid, status or "-")
    if status in UNREACHED:
        finalize_call(call.pk, UNREACHED[status], status, "", {})
    elif status == "completed" and call.stream_connected_at is None:
        # Answered, but our stream never opened (a machine is finalised already).
        finalize_call(call.pk, CompletionReason.NEVER_CONNECTED, "stream_never_opened", "", {})
    return HttpResponse(status=204)
