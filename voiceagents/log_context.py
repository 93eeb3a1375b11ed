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


class SecretRedactionFilter(logging.Filter):
    """Keeps credentials out of log output, whoever logs them: the configured secrets
    (a library logging its handshake headers at DEBUG, say) and any bearer token."""

    SECRET_SETTINGS = ("OPENAI_API_KEY", "TWILIO_AUTH_TOKEN", "SECRET_KEY")
    BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        from django.conf import settings  # read late: logging is configured before settings

        message = record.getMessage()
        redacted = self.BEARER.sub(r"\1[redacted]", message)
        for name in self.SECRET_SETTINGS:
            value = getattr(settings, name, "")
            if value and value in redacted:
                redacted = redacted.replace(value, "[redacted]")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


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
