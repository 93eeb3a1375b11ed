from django import template

from transcripts.formatting import clock as clock_text

register = template.Library()


@register.filter
def clock(seconds) -> str:
    """mm:ss from the start of the call, as the transcripts label their lines."""
    try:
        return clock_text(float(seconds))
    except (TypeError, ValueError):
        return ""


@register.filter
def ms_clock(milliseconds) -> str:
    try:
        return clock_text(float(milliseconds) / 1000)
    except (TypeError, ValueError):
        return ""
