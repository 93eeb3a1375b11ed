"""Structured logs: every line carries the call sid of the call it concerns.

The media consumer sets `current_call_sid` once per connection; asyncio tasks it starts
inherit the value, so logs from the bridge, tools and database helpers are tagged too.
"""

import contextvars
import logging

import orjson

current_call_sid: contextvars.ContextVar[str] = contextvars.ContextVar("call_sid", default="-")


class CallSidFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.call_sid = current_call_sid.get()
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
