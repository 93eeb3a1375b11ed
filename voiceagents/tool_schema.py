"""Checking a tool before it runs: its URL and schema when it is saved (so a call never
meets them), and the model's arguments against the schema before anything is sent (an
invalid call gets an error output the model can correct, not a request)."""

import re
from urllib.parse import parse_qsl, urlsplit

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, best_match


def argument_problem(arguments: str, schema: dict | None) -> str | None:
    """Why these arguments do not fit the schema, or None when they do."""
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return "arguments are not valid JSON"
    if not schema:
        return None
    error = best_match(Draft202012Validator(schema).iter_errors(args))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path) or "arguments"
    return f"{where}: {error.message}"


MAX_SCHEMA_DEPTH = 32  # nesting of a tool's parameters; real tools need a handful


def _depth(value, level: int = 0) -> int:
    if level > MAX_SCHEMA_DEPTH:
        return level
    children = (
        value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    )
    return max((_depth(child, level + 1) for child in children), default=level)


def schema_problem(schema) -> str | None:
    """Why a tool's parameters schema cannot be used, checked when the tool is saved (so a
    call never meets it): too deeply nested to serialise, or not a valid JSON Schema."""
    if _depth(schema) > MAX_SCHEMA_DEPTH:
        return f"The schema is nested more than {MAX_SCHEMA_DEPTH} levels deep."
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"Not a valid JSON Schema: {exc.message}"
    return None


SECRET_LOOKING = re.compile(r"key|token|secret|pass|pwd|auth|sig|credential|session", re.I)


def url_secret_problem(url: str) -> str | None:
    """Secrets do not belong in a tool's URL, where logs, proxies and the admin show them."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.username or parts.password:
        return "Put credentials in a header, not in the URL (user:password@ is refused)."
    secret_names = [name for name, _ in parse_qsl(parts.query) if SECRET_LOOKING.search(name)]
    if secret_names:
        return (
            f"The query parameter {secret_names[0]!r} looks like a secret: put it in a header "
            "instead of the URL."
        )
    return None
