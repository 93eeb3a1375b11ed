"""Downloading a recording from Twilio's REST API into our own storage."""

import logging
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.core.files.base import ContentFile
from django.utils import timezone

from transcripts.audio import AudioError, read_wav
from transcripts.models import Recording

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 60.0


@dataclass
class FetchOutcome:
    stored: bool = False
    retry_in_s: float | None = None  # try again after this long
    error: str = ""  # final failure when neither stored nor retrying


def media_url(recording: Recording) -> str:
    """Built from our configured API base, never from the callback's RecordingUrl: a
    forged or mistaken URL cannot make us fetch (and send credentials) elsewhere."""
    account = recording.account_sid or settings.TWILIO_ACCOUNT_SID
    return (
        f"{settings.TWILIO_API_BASE_URL}/2010-04-01/Accounts/{account}"
        f"/Recordings/{recording.sid}.wav"
    )


def resource_url(recording: Recording) -> str:
    return media_url(recording).removesuffix(".wav") + ".json"


def auth(recording: Recording) -> tuple[str, str]:
    # The callback that named this account was signed with our auth token.
    return (settings.TWILIO_ACCOUNT_SID or recording.account_sid, settings.TWILIO_AUTH_TOKEN)


def backoff_s(attempt: int, first_s: float) -> float:
    return min(MAX_BACKOFF_S, first_s * 2 ** max(0, attempt - 1))


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "")
    return float(raw) if raw.isdigit() else None


def fetch(recording: Recording) -> FetchOutcome:
    """One download attempt. 404 (not ready yet), 429 and 5xx are retried with exponential
    backoff until RECORDING_FETCH_MAX_S after the callback; anything else is final."""
    recording.download_attempts += 1
    attempt = recording.download_attempts
    give_up_at = recording.created_at.timestamp() + settings.RECORDING_FETCH_MAX_S
    problem, retry_after = "", None
    try:
        with httpx.Client(timeout=60.0, trust_env=False, follow_redirects=True) as http:
            response = http.get(
                media_url(recording), params={"RequestedChannels": 2}, auth=auth(recording)
            )
    except httpx.HTTPError as exc:
        problem, retryable = f"download failed: {exc!r}", True
    else:
        if response.status_code == 200:
            return _store(recording, response.content)
        retryable = response.status_code in (404, 429) or response.status_code >= 500
        retry_after = _retry_after(response)
        problem = f"Twilio answered HTTP {response.status_code}: {response.text[:200]}"
    recording.error = problem
    if retryable:
        wait = max(backoff_s(attempt, settings.RECORDING_FETCH_FIRST_RETRY_S), retry_after or 0)
        if timezone.now().timestamp() + wait <= give_up_at:
            recording.save(update_fields=["download_attempts", "error"])
            log.info(
                "recording %s: attempt %d: %s; again in %.1fs",
                recording.sid,
                attempt,
                problem,
                wait,
            )
            return FetchOutcome(retry_in_s=wait)
        problem = (
            f"gave up after {attempt} attempts over {settings.RECORDING_FETCH_MAX_S:.0f}s: "
            + problem
        )
    recording.state = Recording.State.FAILED
    recording.error = problem
    recording.save(update_fields=["download_attempts", "error", "state"])
    log.error("recording %s: %s", recording.sid, problem)
    return FetchOutcome(error=problem)


def _store(recording: Recording, data: bytes) -> FetchOutcome:
    try:
        decoded = read_wav(data)
    except AudioError as exc:
        recording.state = Recording.State.FAILED
        recording.error = f"Twilio's file is not usable audio: {exc}"
        recording.save(update_fields=["download_attempts", "error", "state"])
        return FetchOutcome(error=recording.error)
    recording.file.save(f"{recording.sid}.wav", ContentFile(data), save=False)
    recording.size_bytes = len(data)
    recording.channels = decoded.channels
    recording.duration_s = round(decoded.duration_s, 3)
    recording.state = Recording.State.STORED
    recording.stored_at = timezone.now()
    recording.error = ""
    recording.save()
    return FetchOutcome(stored=True)


def delete_from_twilio(recording: Recording) -> None:
    """Once stored here, the copy at Twilio can go (TWILIO_DELETE_RECORDINGS). A failure
    is logged and kept on the row; our copy is safe either way."""
    try:
        with httpx.Client(timeout=30.0, trust_env=False) as http:
            response = http.delete(resource_url(recording), auth=auth(recording))
    except httpx.HTTPError as exc:
        recording.error = f"could not delete the recording at Twilio: {exc!r}"
    else:
        if response.status_code in (204, 404):
            recording.deleted_from_twilio_at = timezone.now()
        else:
            recording.error = f"Twilio refused the deletion: HTTP {response.status_code}"
    recording.save(update_fields=["deleted_from_twilio_at", "error"])
