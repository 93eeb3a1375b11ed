"""Is a number ours at Twilio, and does it point at this app? Asked of Twilio's REST API
(IncomingPhoneNumbers) for the phone-number page, so a staff member setting one up sees
what is missing instead of waiting for a call that never comes."""

from django.conf import settings
from twilio.base.exceptions import TwilioException, TwilioRestException

from calls.outbound import twilio_client


def twilio_number_status(number: str) -> str:
    if not (settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN):
        return "Unknown: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN so the app can ask Twilio."
    try:
        found = twilio_client().incoming_phone_numbers.list(phone_number=number, limit=1)
    except TwilioRestException as exc:
        return f"Twilio refused the question ({exc.status}: {exc.msg})."
    except (TwilioException, OSError) as exc:
        return f"Twilio could not be reached ({type(exc).__name__})."
    if not found:
        return f"No: {number} is not a number of Twilio account {settings.TWILIO_ACCOUNT_SID}."
    webhook = f"{settings.PUBLIC_BASE_URL}/twilio/voice"
    if found[0].voice_url != webhook:
        return f"Yes, but its voice webhook is {found[0].voice_url or '(none)'}, not {webhook}."
    return "Yes, and its voice webhook points at this app."
