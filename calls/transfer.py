"""Handing a live call to a person: Twilio's REST API replaces the call's TwiML (our
media stream) with <Dial> to the destination. Twilio stops the stream, and the call is
theirs from then on."""

import logging

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.twiml.voice_response import Dial, VoiceResponse

from calls.outbound import twilio_client

log = logging.getLogger(__name__)


def dial_twiml(destination: str) -> str:
    response = VoiceResponse()
    dial = Dial()
    if destination.startswith(("sip:", "sips:")):
        dial.sip(destination)
    else:
        dial.number(destination)
    response.append(dial)
    return str(response)


def transfer_call(call_sid: str, destination: str) -> str | None:
    """None once Twilio has taken the new TwiML; else why not, for the model."""
    try:
        twilio_client().calls(call_sid).update(twiml=dial_twiml(destination))
    except TwilioRestException as exc:
        return f"Twilio refused it ({exc.status}: {exc.msg})"
    except (TwilioException, OSError) as exc:
        return f"Twilio could not be reached ({type(exc).__name__})"
    log.info("call %s transferred to %s", call_sid, destination)
    return None
