"""Structured logs: every line carries the call sid of the call it concerns.

The media consumer sets `current_call_sid` once per connection; asyncio tasks it starts
inherit the value, so logs from the bridge, tools and database helpers are tagged too.
"""

import contextvars
import logging
import re

import orjson

current_call_sid: contextvars.ContextVar[str] = contextvars.ContextVar("call_sid", default="-")


class CallSidFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_sid = current_call_sid.get()
        return True


class MessageRewriteFilter(logging.Filter):
    """A filter that rewrites a record's formatted message (`rewrite`), storing the result
    in place of the format string and its arguments when it differs."""

    def rewrite(self, record: logging.LogRecord, message: str) -> str:
        raise NotImplementedError

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        rewritten = self.rewrite(record, message)
        if rewritten != message:
            record.msg, record.args = rewritten, None
        return True


class SecretRedactionFilter(MessageRewriteFilter):
    """Keeps credentials out of log output, whoever logs them: the configured secrets
    (a library logging its handshake headers at DEBUG, say) and any bearer token."""

    SECRET_SETTINGS = ("OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "SECRET_KEY")
    BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)

    def rewrite(self, record: logging.LogRecord, message: str) -> str:
        from django.conf import settings  # read late: logging is configured before settings

        redacted = self.BEARER.sub(r"\1[redacted]", message)
        for name in self.SECRET_SETTINGS:
            value = getattr(settings, name, "")
            if value and value in redacted:
                redacted = redacted.replace(value, "[redacted]")
        return redacted


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")
PHONE_NUMBER = re.compile(r"\+\d{7,15}\b")


def _escape(text: str) -> str:
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _mask(match: re.Match) -> str:
    number = match.group()
    return number[:5] + "*" * (len(number) - 7) + number[-2:]


class OneLineFilter(MessageRewriteFilter):
    """Every record stays one line, whatever it quotes: control characters in the message
    and the call sid (a newline in an unsigned webhook's CallSid, say) are escaped, so a
    request cannot forge log lines. With LOG_MASK_NUMBERS, phone numbers keep only their
    first four and last two digits. Tracebacks are left as they are."""

    def rewrite(self, record: logging.LogRecord, message: str) -> str:
        from django.conf import settings  # read late: logging is configured before settings

        call_sid = getattr(record, "call_sid", None)
        if isinstance(call_sid, str):
            record.call_sid = _escape(call_sid)
        safe = _escape(message)
        if getattr(settings, "LOG_MASK_NUMBERS", False):
            safe = PHONE_NUMBER.sub(_mask, safe)
        return safe


URL_USERINFO = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/@\s\"']*@", re.IGNORECASE)
URL_QUERY = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^\s\"'?#]*)\?[^\s\"'#]*", re.IGNORECASE)


def redact_urls(text: str) -> str:
    """URLs without their userinfo and query string, where credentials end up."""
    return URL_QUERY.sub(r"\1?[redacted]", URL_USERINFO.sub(r"\1[redacted]@", text))


class HttpxUrlFilter(MessageRewriteFilter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST https://…"): an
    agent's tool URL could carry a password or a token in it."""

    def rewrite(self, record: logging.LogRecord, message: str) -> str:
        if record.name.startswith(("httpx", "httpcore")):
            return redact_urls(message)
        return message


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "call_sid": getattr(record, "call_sid", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry).decode()
