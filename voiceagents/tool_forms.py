"""The console's tool form: what the tool does, its parameters as rows (name, type,
description, required) from which the JSON Schema is generated, or the schema itself as
JSON for what rows cannot say; the URL or the transfer destination; and the headers,
whose values are write-only (stored encrypted)."""

import orjson
from django import forms
from django.forms import formset_factory

from voiceagents.admin import ToolHeaderForm
from voiceagents.models import TOOL_SETTINGS, Tool, ToolHeader

PARAMETER_TYPES = [
    ("string", "text"),
    ("number", "number"),
    ("integer", "whole number"),
    ("boolean", "yes/no"),
]
SIMPLE_TYPES = {value for value, _ in PARAMETER_TYPES}


class ToolForm(forms.ModelForm):
    schema_json = forms.CharField(
        label="Parameters as JSON Schema (for experts)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "class": "code"}),
        help_text="Leave empty to use the rows above. When filled, it is used instead of "
        'them: an object schema, e.g. {"type": "object", "properties": {"order": '
        '{"type": "string"}}, "required": ["order"]}.',
    )

    class Meta:
        model = Tool
        # The parameters are edited as rows or as JSON (schema_json), not as a model field.
        fields = [name for name in TOOL_SETTINGS if name != "parameters"]
        labels = {"url": "URL", "transfer_to": "Transfer to"}
        help_texts = {
            "name": "What the model calls it: letters, digits, _ and -, e.g. lookup_order.",
            "description": "When the model should use it and what it returns: the model "
            "reads this to decide.",
        }
        widgets = {"description": forms.Textarea(attrs={"rows": 3})}

    def __init__(self, *args, rows_schema: dict | None = None, **kwargs):
        """`rows_schema`: the schema made from valid parameter rows, used unless the
        expert field holds one."""
        super().__init__(*args, **kwargs)
        self.rows_schema = rows_schema
        self.fields["kind"].choices = [
            (Tool.Kind.HTTP, "HTTP: send the arguments to a URL, reply with its body"),
            (Tool.Kind.TRANSFER_CALL, "Transfer: put the caller through to a person"),
            (Tool.Kind.END_CALL, "End the call after a goodbye"),
        ]
        self.fields["url"].assume_scheme = "https"
        schema = self.instance.parameters if self.instance.pk else {}
        if schema and not rows_from_schema(schema):
            self.initial["schema_json"] = orjson.dumps(schema, option=orjson.OPT_INDENT_2).decode()

    def _update_errors(self, errors):
        # The model's verdict on the schema (Tool.clean) belongs next to the schema field.
        if hasattr(errors, "error_dict") and "parameters" in errors.error_dict:
            errors.error_dict["schema_json"] = errors.error_dict.pop("parameters")
        super()._update_errors(errors)

    def clean_schema_json(self):
        raw = self.cleaned_data["schema_json"].strip()
        if not raw:
            return None
        try:
            schema = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}") from exc
        if not isinstance(schema, dict):
            raise forms.ValidationError('The schema must be an object with "type": "object".')
        return schema

    def clean(self):
        # Before the model's own checks (Tool.clean, run next), so they judge this schema
        # with the rest; their verdict on it lands next to schema_json.
        data = super().clean()
        schema = data.get("schema_json") or self.rows_schema
        if schema is not None:
            self.instance.parameters = schema
        return data


class ParameterForm(forms.Form):
    name = forms.RegexField(
        regex=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        required=False,
        error_messages={"invalid": "Letters, digits and _, starting with a letter."},
    )
    type = forms.ChoiceField(choices=PARAMETER_TYPES, initial="string", required=False)
    description = forms.CharField(required=False, max_length=500)
    required = forms.BooleanField(required=False)


ParameterRows = formset_factory(ParameterForm, extra=3)


def rows_from_schema(schema: dict) -> list[dict] | None:
    """The rows that say `schema`, or None when rows cannot (nested objects, enums…)."""
    if not schema:
        return []
    if set(schema) - {"type", "properties", "required", "additionalProperties"}:
        return None
    if schema.get("type") != "object":
        return None
    required = set(schema.get("required", []))
    rows = []
    for name, spec in (schema.get("properties") or {}).items():
        if not isinstance(spec, dict) or set(spec) - {"type", "description"}:
            return None
        if spec.get("type") not in SIMPLE_TYPES:
            return None
        rows.append(
            {
                "name": name,
                "type": spec["type"],
                "description": spec.get("description", ""),
                "required": name in required,
            }
        )
    return rows


def schema_from_rows(rows: list[dict]) -> dict:
    properties, required = {}, []
    for row in rows:
        if not row.get("name"):
            continue
        spec = {"type": row.get("type") or "string"}
        if row.get("description"):
            spec["description"] = row["description"]
        properties[row["name"]] = spec
        if row.get("required"):
            required.append(row["name"])
    schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return schema


HeaderRows = forms.inlineformset_factory(
    Tool, ToolHeader, form=ToolHeaderForm, extra=1, can_delete=True
)
