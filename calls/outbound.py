"""Outbound calls: the agent phones someone.

The Call row is made first (its sid a placeholder), so Twilio's requests about the call
always find it: `calls.create` (twilio's REST client, at TWILIO_API_BASE_URL) gets our
answer URL and status callback, both naming the row. When the person answers, Twilio
asks `/twilio/outbound-answer` for TwiML and gets the same recording and media stream
as an inbound call (calls/webhooks.py); its status callbacks end a call that never
reached anyone (no-answer, busy, failed, canceled) without an OpenAI session. With the
agent's answering-machine option on, Twilio tells the answer URL who answered."""

import logging
import uuid
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from calls.models import Call, PhoneNumber
from voiceagents.models import Agent, MachineDetection

log = logging.getLogger(__name__)
PENDING_SID_PREFIX = "pending-"
TWILIO_TIMEOUT_S = 10  # per REST request; twilio's own default is to wait for ever
# What Twilio reports through the status callback; `completed` comes for every call.
STATUS_EVENTS = ["initiated", "ringing", "answered", "completed"]


class CallNotPlaced(Exception):
    """Twilio refused to place the call (or could not be reached); the message says why."""


def twilio_client() -> Client:
    client = Client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        http_client=TwilioHttpClient(timeout=TWILIO_TIMEOUT_S),
    )
    # Every Twilio REST request goes to the configured base (the fake in tests).
    client.api.base_url = settings.TWILIO_API_BASE_URL
    return client


def call_url(path: str, call: Call) -> str:
    return f"{settings.PUBLIC_BASE_URL}{path}?{urlencode({'call': call.pk})}"


def place_call(
    agent: Agent, to_number: str, from_number: PhoneNumber, context: dict, placed_by=None
) -> Call:
    """Ask Twilio to call `to_number` from one of our numbers; the agent talks when the
    person answers. Raises CallNotPlaced (the Call row is then kept, ended as failed)."""
    from calls.call_records import finalize_call
    from calls.outcomes import CompletionReason

    call = Call.objects.create(
        sid=PENDING_SID_PREFIX + uuid.uuid4().hex,
        account_sid=settings.TWILIO_ACCOUNT_SID,
        direction="outbound-api",
        from_number=from_number.number,
        to_number=to_number,
        agent=agent,
        agent_version=agent.current_version,
        recording_requested=agent.record_calls,
        placed_by=placed_by if placed_by is not None and placed_by.is_authenticated else None,
        context=context,
    )
    options = {
        "to": to_number,
        "from_": from_number.number,
        "url": call_url("/twilio/outbound-answer", call),
        "method": "POST",
        "status_callback": call_url("/twilio/call-status", call),
        "status_callback_method": "POST",
        "status_callback_event": STATUS_EVENTS,
    }
    if agent.machine_detection == MachineDetection.HANG_UP:
        options["machine_detection"] = "Enable"  # quickest: the first words decide
    elif agent.machine_detection == MachineDetection.LEAVE_MESSAGE:
        options["machine_detection"] = "DetectMessageEnd"  # waits for the beep
    try:
        created = twilio_client().calls.create(**options)
    except (TwilioRestException, TwilioException, OSError) as exc:
        message = getattr(exc, "msg", None) or str(exc)
        log.warning("outbound call to %s not placed: %s", to_number, message)
        finalize_call(call.pk, CompletionReason.CALL_FAILED, "twilio_refused", message, {})
        raise CallNotPlaced(message) from exc
    with transaction.atomic():
        # The answer webhook may have set the sid already (Twilio was quick).
        Call.objects.filter(pk=call.pk, sid__startswith=PENDING_SID_PREFIX).update(sid=created.sid)
    call.refresh_from_db()
    log.info("call %s placed to %s by agent %s", call.sid, to_number, agent)
    return call
