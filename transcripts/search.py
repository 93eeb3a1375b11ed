"""Finding calls: by words said (post-call transcript or live turns), caller name or
number, agent, outcome, date and status. PostgreSQL answers word searches from GIN
full-text indexes (migration 0002); SQLite, the embedded default, scans with LIKE."""

import json
import re
from datetime import datetime, time

from django import forms
from django.contrib.postgres.search import SearchQuery, SearchVectorField
from django.db import connection
from django.db.models import Func, Q, QuerySet
from django.utils import timezone

from calls.models import Call, Turn
from transcripts.models import Transcript
from voiceagents.models import Agent

TEXT_SEARCH_CONFIG = "english"
PHONE_NUMBER = re.compile(r"\+?[\d\s().-]{3,}")


class ToTsvector(Func):
    """to_tsvector('english', column), written exactly as the GIN indexes of migration
    0002 are, so PostgreSQL uses them."""

    function = "to_tsvector"
    template = f"%(function)s('{TEXT_SEARCH_CONFIG}'::regconfig, %(expressions)s)"
    output_field = SearchVectorField()


class CallFilterForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        help_text="Words said, the caller's name or number, or the agent's name.",
    )
    agent = forms.ModelChoiceField(Agent.objects.all(), required=False, empty_label="Any agent")
    status = forms.ChoiceField(required=False, choices=[("", "Any status"), *Call.Status.choices])
    outcome = forms.CharField(
        required=False,
        max_length=200,
        help_text="key=value from the agent's outcome, e.g. appointment_booked=true",
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


def words_said(q: str) -> Q:
    """Calls in which `q` was said, in the post-call transcript or the live turns."""
    if connection.vendor == "postgresql":
        query = SearchQuery(q, config=TEXT_SEARCH_CONFIG, search_type="websearch")
        transcripts = Transcript.objects.annotate(document=ToTsvector("text")).filter(
            document=query, status=Transcript.Status.COMPLETED
        )
        turns = Turn.objects.annotate(document=ToTsvector("text")).filter(document=query)
    else:
        transcripts = Transcript.objects.filter(
            text__icontains=q, status=Transcript.Status.COMPLETED
        )
        turns = Turn.objects.filter(text__icontains=q)
    return Q(pk__in=transcripts.values("call_id")) | Q(pk__in=turns.values("call_id"))


def filter_calls(form: CallFilterForm) -> QuerySet[Call]:
    calls = Call.objects.select_related("agent").order_by("-started_at", "-id")
    if not form.is_valid():
        return calls.none()
    data = form.cleaned_data
    if q := data["q"].strip():
        if PHONE_NUMBER.fullmatch(q):
            # A number is looked up as a number: no text search of every transcript.
            digits = re.sub(r"\D", "", q)
            calls = calls.filter(Q(from_number__contains=digits) | Q(to_number__contains=digits))
        else:
            named = Transcript.objects.filter(caller_name__iexact=q).values("call_id")
            calls = calls.filter(Q(pk__in=named) | Q(agent__name__icontains=q) | words_said(q))
    if data["agent"]:
        calls = calls.filter(agent=data["agent"])
    if data["status"]:
        calls = calls.filter(status=data["status"])
    if data["outcome"]:
        key, value = data["outcome"]
        calls = calls.filter(**{f"summary__outcome__{key}": value})
    zone = timezone.get_current_timezone()
    if data["date_from"]:
        calls = calls.filter(started_at__gte=datetime.combine(data["date_from"], time.min, zone))
    if data["date_to"]:
        calls = calls.filter(started_at__lte=datetime.combine(data["date_to"], time.max, zone))
    return calls
