"""What the call page shows of the post-call work, and who may see which part."""

from decimal import Decimal

from calls.models import Call
from transcripts.models import CallSummary, WebhookDelivery
from transcripts.selectors import current_recording, current_transcript, latest_transcript_run


def review_context(call: Call, user) -> dict:
    can_view = user.has_perm("transcripts.view_transcript")
    context = {
        "can_view_transcript": can_view,
        "can_listen": user.has_perm("transcripts.listen_recording"),
        "can_rerun": user.has_perm("transcripts.rerun_pipeline"),
        "can_hang_up": user.has_perm("calls.hang_up_call"),
    }
    if not can_view:
        return context
    transcript = current_transcript(call)
    latest = latest_transcript_run(call)
    summary = CallSummary.objects.filter(call=call).first()
    post_call_cost = (transcript.cost_usd if transcript else Decimal(0)) + (
        summary.cost_usd if summary else Decimal(0)
    )
    return context | {
        "recording": current_recording(call),
        "transcript": transcript,
        # A newer run than the shown transcript that failed or is still running.
        "latest_run": latest if latest is not None and latest != transcript else None,
        "summary": summary,
        "outcome_items": sorted((summary.outcome or {}).items()) if summary else [],
        "deliveries": WebhookDelivery.objects.filter(call=call),
        "post_call_cost": post_call_cost,
    }
