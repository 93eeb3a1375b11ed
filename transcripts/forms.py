"""Twilio's recording status callback fields, checked before anything is stored."""

from django import forms

from calls.forms import SID_PATTERN
from transcripts.models import Recording


class RecordingCallbackForm(forms.Form):
    AccountSid = forms.RegexField(regex=SID_PATTERN.format(prefix="AC"))
    CallSid = forms.RegexField(regex=SID_PATTERN.format(prefix="CA"))
    RecordingSid = forms.RegexField(regex=SID_PATTERN.format(prefix="RE"))
    RecordingStatus = forms.ChoiceField(
        choices=[("in-progress", "in-progress"), *Recording.TwilioStatus.choices]
    )
    RecordingUrl = forms.URLField(required=False, max_length=500, assume_scheme="https")
    RecordingDuration = forms.IntegerField(required=False, min_value=-1)
    RecordingChannels = forms.IntegerField(required=False, min_value=1, max_value=2)
    ErrorCode = forms.CharField(required=False, max_length=64)

    def error_text(self) -> str:
        return "; ".join(f"{field}: {' '.join(errors)}" for field, errors in self.errors.items())
