"""Checking that a webhook request really comes from Twilio."""

import functools
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponseForbidden, QueryDict
from twilio.request_validator import (
    SIGNATURE_SETTINGS_HEADER,
    RequestValidator,
    get_signature_algorithm,
)

log = logging.getLogger(__name__)


def public_url(request: HttpRequest) -> str:
    """The URL Twilio requested: behind a proxy our own view of scheme/host is wrong, so it
    is rebuilt from PUBLIC_BASE_URL. The query string is part of it."""
    return settings.PUBLIC_BASE_URL + request.get_full_path()


def webhook_params(request: HttpRequest) -> QueryDict:
    """The webhook's fields: the form body of a POST, the query string of a GET (a number's
    voice URL may be configured either way)."""
    return request.GET if request.method == "GET" else request.POST


def signing_key(signature_settings: str) -> str | None:
    """The auth token, or the SharedKey secret when Twilio says it signed with one; None
    when it did and no SharedKey secret is configured."""
    if not signature_settings:
        return settings.TWILIO_AUTH_TOKEN
    return settings.TWILIO_WEBHOOK_SHARED_KEY_SECRET or None


def is_signed_by_twilio(
    url: str, params: QueryDict | dict, signature: str, signature_settings: str
) -> bool:
    """For a GET (and the media WebSocket handshake) `params` is empty and the signature
    covers the URL with its query string."""
    if not signature:
        return False
    key = signing_key(signature_settings)
    if key is None:
        log.error(
            "Twilio signed a request with a SharedKey (%s: %s) but "
            "TWILIO_WEBHOOK_SHARED_KEY_SECRET is not set; refusing it",
            SIGNATURE_SETTINGS_HEADER,
            signature_settings,
        )
        return False
    algorithm = get_signature_algorithm(signature_settings)
    return RequestValidator(key).validate(url, params, signature, algorithm)


def request_is_signed_by_twilio(request: HttpRequest) -> bool:
    params = request.POST if request.method == "POST" else {}
    return is_signed_by_twilio(
        public_url(request),
        params,
        request.headers.get("X-Twilio-Signature", ""),
        request.headers.get(SIGNATURE_SETTINGS_HEADER, ""),
    )


def twilio_signature_required(view):
    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args, **kwargs):
        if not request_is_signed_by_twilio(request):
            log.warning(
                "rejected unsigned or badly signed Twilio request to %s (CallSid=%r)",
                request.path,
                webhook_params(request).get("CallSid", "-")[:64],  # unauthenticated input
            )
            return HttpResponseForbidden("Invalid Twilio signature")
        return view(request, *args, **kwargs)

    return wrapped
