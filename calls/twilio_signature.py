"""Checking that a webhook request really comes from Twilio."""

import functools
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponseForbidden
from twilio.request_validator import RequestValidator, get_signature_algorithm

log = logging.getLogger(__name__)


def public_url(request: HttpRequest) -> str:
    """The URL Twilio requested: behind a proxy our own view of scheme/host is wrong, so it
    is rebuilt from PUBLIC_BASE_URL."""
    return settings.PUBLIC_BASE_URL + request.get_full_path()


def is_signed_by_twilio(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    algorithm = get_signature_algorithm(
        request.headers.get("X-Twilio-Webhooks-Signature-Settings", "")
    )
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    return validator.validate(public_url(request), request.POST, signature, algorithm)


def twilio_signature_required(view):
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not is_signed_by_twilio(request):
            log.warning(
                "rejected unsigned or badly signed Twilio request to %s (CallSid=%s)",
                request.path,
                request.POST.get("CallSid", "-"),
            )
            return HttpResponseForbidden("Invalid Twilio signature")
        return view(request, *args, **kwargs)

    return wrapped
