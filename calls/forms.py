"""Twilio's webhook form fields, checked before anything is stored."""

from django import forms

from calls.models import Call, PhoneNumber
from calls.phone import is_e164

SID_PATTERN = r"^{prefix}[0-9a-fA-F]{{32}}$"


class IncomingCallForm(forms.Form):
    """The fields of Twilio's voice webhook this app uses. Anything else Twilio sends is
    ignored; a value that does not fit is refused with a 400 naming the field."""

    CallSid = forms.RegexField(regex=SID_PATTERN.format(prefix="CA"))
    AccountSid = forms.RegexField(regex=SID_PATTERN.format(prefix="AC"), required=False)
    From = forms.CharField(
        max_length=Call._meta.get_field("from_number").max_length, required=False
    )
    To = forms.CharField(max_length=Call._meta.get_field("to_number").max_length, required=False)
    Direction = forms.CharField(
        max_length=Call._meta.get_field("direction").max_length, required=False
    )

    def error_text(self) -> str:
        return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in self.errors.items())


class PlaceCallForm(forms.Form):
    """Who the agent should phone, from which of its numbers, and what it should know."""

    to = forms.CharField(
        label="Number to call",
        max_length=16,
        help_text="E.164, e.g. +14155550123.",
        widget=forms.TextInput(attrs={"placeholder": "+14155550123", "autocomplete": "off"}),
    )
    from_number = forms.ModelChoiceField(
        queryset=PhoneNumber.objects.none(),
        label="Call from",
        empty_label=None,
        help_text="One of the agent's Twilio numbers: the person sees it as the caller.",
    )
    name = forms.CharField(
        required=False, max_length=100, help_text="The agent can greet them by name."
    )
    notes = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why we are calling; the agent reads this before it speaks.",
    )

    def __init__(self, *args, agent, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["from_number"].queryset = agent.phone_numbers.all()

    def clean_to(self) -> str:
        return e164(self.cleaned_data["to"])

    def context(self) -> dict:
        return {k: self.cleaned_data[k] for k in ("name", "notes") if self.cleaned_data[k]}


def e164(raw: str) -> str:
    number = "".join(raw.split())
    if not is_e164(number):
        raise forms.ValidationError("Use E.164: +, country code and number, e.g. +14155550123.")
    return number


class CallFromListForm(PlaceCallForm):
    """The call list's "Call someone": the agent chosen here, calling from its first number."""

    agent = forms.ModelChoiceField(
        queryset=None, empty_label=None, help_text="Calls from the agent's first number."
    )
    field_order = ["agent", "to", "name", "notes"]

    def __init__(self, *args, **kwargs):
        super(PlaceCallForm, self).__init__(*args, **kwargs)
        from voiceagents.models import Agent

        del self.fields["from_number"]
        self.fields["agent"].queryset = Agent.objects.filter(
            archived_at__isnull=True, phone_numbers__isnull=False
        ).distinct()

    def clean(self):
        data = super().clean()
        if data.get("agent") is not None:
            data["from_number"] = data["agent"].phone_numbers.first()
        return data
