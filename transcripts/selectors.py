"""Read-side questions about a call's post-call work, shared by pages, API and tasks."""

from calls.models import Call
from transcripts.models import Recording, Transcript


def current_transcript(call: Call) -> Transcript | None:
    """The newest completed transcript: a failed or running re-run never hides it."""
    return (
        call.transcripts.filter(status=Transcript.Status.COMPLETED)
        .order_by("-finished_at", "-id")
        .first()
    )


def latest_transcript_run(call: Call) -> Transcript | None:
    return call.transcripts.order_by("-started_at", "-id").first()


def current_recording(call: Call) -> Recording | None:
    """The recording the transcript is made from: a stored one first, else the newest."""
    recordings = list(call.recordings.all())
    stored = [r for r in recordings if r.state == Recording.State.STORED]
    return (stored or recordings or [None])[0]
