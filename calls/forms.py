"""Twilio's webhook form fields, checked before anything is stored."""

from django import forms

from calls.models import Call

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
