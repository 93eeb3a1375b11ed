"""Entry points Twilio calls over HTTP (all signature-checked)."""

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from twilio.twiml.voice_response import Connect, Start, VoiceResponse

from calls.forms import IncomingCallForm
from calls.models import Call, PhoneNumber
from calls.stream_tokens import make_stream_token
from calls.twilio_signature import twilio_signature_required, webhook_params
from voiceagents.log_context import current_call_sid

log = logging.getLogger(__name__)


def twiml(response: VoiceResponse) -> HttpResponse:
    return HttpResponse(str(response), content_type="text/xml")


def stream_url(token: str) -> str:
    base = settings.PUBLIC_BASE_URL.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return f"{base}/twilio/stream/{token}"


# A number's voice URL may be configured for GET or POST in Twilio's console.
voice_webhook = require_http_methods(["GET", "POST"])


@csrf_exempt
@voice_webhook
@twilio_signature_required
def incoming_call(request: HttpRequest) -> HttpResponse:
    """A call arrives: answer with a bidirectional media stream to the number's agent."""
    form = IncomingCallForm(webhook_params(request))
    if not form.is_valid():
        log.warning("refused voice webhook: %s", form.error_text())
        return HttpResponse(form.error_text(), status=400, content_type="text/plain")
    call_sid, to_number = form.cleaned_data["CallSid"], form.cleaned_data["To"]
    current_call_sid.set(call_sid)
    phone = PhoneNumber.objects.select_related("agent").filter(number=to_number).first()
    response = VoiceResponse()
    if phone is None or phone.agent.archived_at is not None:
        log.warning("call %s to unknown number %s: declined", call_sid, to_number)
        response.say(settings.UNKNOWN_NUMBER_TEXT)
        response.hangup()
        return twiml(response)

    # Twilio retries a webhook that timed out: the same CallSid must not make two calls.
    # One INSERT that skips an existing sid (get_or_create would SELECT first, then insert
    # in a transaction of its own), on every call that rings.
    new_call = Call(
        sid=call_sid,
        account_sid=form.cleaned_data["AccountSid"],
        direction=form.cleaned_data["Direction"] or "inbound",
        from_number=form.cleaned_data["From"],
        to_number=to_number,
        agent=phone.agent,
        agent_version=phone.agent.current_version,
        recording_requested=phone.agent.record_calls,
    )
    Call.objects.bulk_create([new_call], ignore_conflicts=True)
    log.info(
        "call %s from %s answered by agent %s", call_sid, form.cleaned_data["From"], phone.agent
    )
    return twiml(connect_to_agent(response, call_sid, phone.agent.record_calls))


def connect_to_agent(response: VoiceResponse, call_sid: str, record: bool) -> VoiceResponse:
    """The TwiML that hands a call to its agent: the recording (when the agent records
    calls), then the bidirectional media stream with a single-use token."""
    if record:
        response.append(start_recording())
    token = make_stream_token(call_sid)
    connect = Connect(action=settings.PUBLIC_BASE_URL + "/twilio/stream-ended")
    stream = connect.stream(url=stream_url(token))
    stream.parameter(name="token", value=token)
    response.append(connect)
    return response


def start_recording() -> Start:
    """<Start><Recording>: both sides in separate channels (caller first, agent second),
    untrimmed so that segment times match the call's clock. TwiML's default would trim
    silence and shift every timestamp."""
    start = Start()
    start.recording(
        channels="dual",
        trim="do-not-trim",
        track="both",
        recording_status_callback=settings.PUBLIC_BASE_URL + "/twilio/recording",
        recording_status_callback_method="POST",
        recording_status_callback_event="completed absent",
    )
    return start


@csrf_exempt
@voice_webhook
@twilio_signature_required
def stream_ended(request: HttpRequest) -> HttpResponse:
    """Twilio asks what to do once our media stream closed: apologise if it was our fault."""
    from calls.transfer import dial_twiml

    call = Call.objects.filter(sid=webhook_params(request).get("CallSid", "")).first()
    if call is not None and call.transferred_to:
        # Should Twilio still ask (the transfer replaced this TwiML), go on with it.
        return HttpResponse(dial_twiml(call.transferred_to), content_type="text/xml")
    response = VoiceResponse()
    if call is not None and call.ended_with_fault:
        response.say(settings.APOLOGY_TEXT)
    response.hangup()
    return twiml(response)
