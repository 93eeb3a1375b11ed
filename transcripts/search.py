"""Finding calls: by words said (post-call transcript or live turns), caller name or
number, agent, outcome, date and status. Each call has one search document (CallSearch),
written when its post-call work ends; PostgreSQL answers word searches from its stored
tsvector under a GIN index, SQLite (the embedded default) with LIKE."""

import json
import re
from datetime import datetime, time

from django import forms
from django.contrib.postgres.search import SearchQuery, SearchVector
from django.db import connection
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils import timezone

from calls.models import Call
from calls.outcomes import CompletionReason
from transcripts.models import CallSearch, Transcript
from voiceagents.models import Agent

TEXT_SEARCH_CONFIG = "english"
PHONE_NUMBER = re.compile(r"\+?[\d\s().-]{3,}")


class CallFilterForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(attrs={"placeholder": "words said, a name or a number"}),
        help_text="Words said, the caller's name or number, or the agent's name.",
    )
    agent = forms.ModelChoiceField(Agent.objects.all(), required=False, empty_label="Any agent")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Call.Status.choices])
    direction = forms.ChoiceField(
        required=False,
        choices=[
            ("", "Any direction"),
            ("inbound", "Inbound"),
            ("outbound", "Outbound"),
            ("browser", "Browser test calls"),
        ],
    )
    completion_reason = forms.ChoiceField(
        required=False,
        label="Ended because",
        choices=[("", "Any reason"), *CompletionReason.choices],
    )
    outcome = forms.CharField(
        required=False,
        max_length=200,
        help_text="key=value from the agent's outcome, e.g. appointment_booked=true",
        widget=forms.TextInput(attrs={"placeholder": "appointment_booked=true"}),
    )
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean_outcome(self) -> tuple[str, object] | None:
        raw = self.cleaned_data["outcome"].strip()
        if not raw:
            return None
        key, sep, value = raw.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "").isalnum():
            raise forms.ValidationError("Use key=value, e.g. appointment_booked=true.")
        try:
            parsed = json.loads(value.strip())
        except ValueError:
            parsed = value.strip()  # a bare word is a string
        return key, parsed

    def clean(self):
        data = super().clean()
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            self.add_error("date_to", "The end date is before the start date.")
        return data


def mentioning(q: str) -> Q:
    """Calls whose search document has `q`: said in the call, the caller's first name or
    the agent's name. PostgreSQL: web-search syntax ("two words", "exact phrase", -not)
    on the stored tsvector; SQLite: the text contains it."""
    if connection.vendor == "postgresql":
        query = SearchQuery(q, config=TEXT_SEARCH_CONFIG, search_type="websearch")
        return Q(search__document=query)
    return Q(search__text__icontains=q)


def document_text(call: Call) -> str:
    from transcripts.selectors import current_transcript

    transcript = current_transcript(call)
    parts = [
        transcript.caller_name if transcript else "",
        call.agent.name if call.agent else "",
        transcript.text if transcript else "",
        "\n".join(call.turns.values_list("text", flat=True)),
    ]
    return "\n".join(part for part in parts if part)


def index_call(call: Call) -> None:
    """Write the call's search document (after its post-call work, or its end)."""
    CallSearch.objects.update_or_create(call=call, defaults={"text": document_text(call)})
    if connection.vendor == "postgresql":
        CallSearch.objects.filter(call=call).update(
            document=SearchVector("text", config=TEXT_SEARCH_CONFIG)
        )


def filter_calls(form: CallFilterForm) -> QuerySet[Call]:
    named = Transcript.objects.filter(call=OuterRef("pk"), status=Transcript.Status.COMPLETED)
    calls = (
        Call.objects.select_related("agent")
        .annotate(caller_name=Subquery(named.order_by("-finished_at").values("caller_name")[:1]))
        .order_by("-started_at", "-id")
    )
    if not form.is_valid():
        return calls.none()
    data = form.cleaned_data
    if q := data["q"].strip():
        if PHONE_NUMBER.fullmatch(q):
            # A number is looked up as a number: no text search of every transcript.
            digits = re.sub(r"\D", "", q)
            calls = calls.filter(Q(from_number__contains=digits) | Q(to_number__contains=digits))
        else:
            calls = calls.filter(mentioning(q))
    if data["agent"]:
        calls = calls.filter(agent=data["agent"])
    if data["status"]:
        calls = calls.filter(status=data["status"])
    if data["direction"]:
        calls = calls.filter(direction__startswith=data["direction"])  # outbound-api, -dial
    if data["completion_reason"]:
        calls = calls.filter(completion_reason=data["completion_reason"])
    if data["outcome"]:
        key, value = data["outcome"]
        calls = calls.filter(**{f"summary__outcome__{key}": value})
    zone = timezone.get_current_timezone()
    if data["date_from"]:
        calls = calls.filter(started_at__gte=datetime.combine(data["date_from"], time.min, zone))
    if data["date_to"]:
        calls = calls.filter(started_at__lte=datetime.combine(data["date_to"], time.max, zone))
    return calls
