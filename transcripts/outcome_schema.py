"""Agents' outcome schemas: checked when saved, made strict for OpenAI's structured
outputs, and used to validate what the model extracted."""

from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

MAX_DEPTH = 8  # OpenAI's structured outputs accept at most 10 levels of nesting


def _depth(schema: Any, level: int = 0) -> int:
    if isinstance(schema, dict):
        return max([level, *(_depth(v, level + 1) for v in schema.values())])
    if isinstance(schema, list):
        return max([level, *(_depth(v, level + 1) for v in schema)])
    return level


def outcome_schema_errors(schema: Any) -> list[str]:
    """What is wrong with an agent's outcome schema (empty when it is usable)."""
    if not isinstance(schema, dict):
        return ["The outcome schema must be a JSON object."]
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [f"Not a valid JSON Schema: {exc.message}"]
    if schema.get("type") != "object" or not isinstance(schema.get("properties"), dict):
        return ['The outcome schema must be {"type": "object", "properties": {…}}.']
    if not schema["properties"]:
        return ["The outcome schema needs at least one property."]
    if _depth(schema) > MAX_DEPTH * 2:
        return [f"The outcome schema nests too deeply (at most {MAX_DEPTH} levels)."]
    return []


def strict_schema(schema: dict) -> dict:
    """The same schema in OpenAI's strict form: every object closed and every property
    required (optional ones become nullable, so the model can still leave them out)."""
    if not isinstance(schema, dict):
        return schema
    result = {k: v for k, v in schema.items()}
    for key in ("items", "additionalItems"):
        if isinstance(result.get(key), dict):
            result[key] = strict_schema(result[key])
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(result.get(key), list):
            result[key] = [strict_schema(s) for s in result[key]]
    if result.get("type") == "object" or "properties" in result:
        properties = result.get("properties") or {}
        required = set(result.get("required") or [])
        strict_properties = {}
        for name, sub in properties.items():
            sub = strict_schema(sub)
            if name not in required:
                sub = _nullable(sub)
            strict_properties[name] = sub
        result["properties"] = strict_properties
        result["required"] = list(properties)
        result["additionalProperties"] = False
    return result


def _nullable(schema: dict) -> dict:
    kind = schema.get("type")
    if isinstance(kind, str) and kind != "null":
        return schema | {"type": [kind, "null"]}
    if isinstance(kind, list) and "null" not in kind:
        return schema | {"type": [*kind, "null"]}
    if kind is None:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def outcome_errors(schema: dict, outcome: Any) -> list[str]:
    """Where an extracted outcome does not fit the agent's schema."""
    validator = Draft202012Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(outcome)
    ]
