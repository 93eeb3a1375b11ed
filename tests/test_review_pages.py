"""Staff review after the call: who may see and do what (per role, for every staff URL),
the call page with its recording, transcripts, summary and webhook attempts, the
recording served with Range support, re-runs and exports."""

from datetime import timedelta
from unittest import mock

import orjson
import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from tests.factories import (
    client_for,
    make_agent,
    make_call,
    make_stored_recording,
    make_transcript,
    make_turn,
    user_with,
)
from transcripts.models import CallSummary, Transcript, WebhookDelivery
from transcripts.search import index_call

pytestmark = pytest.mark.django_db

SID = "CA" + "9" * 32
WAV = b"RIFF" + bytes(range(256)) * 40  # 10 KiB of "audio": only the bytes matter here

# Every staff URL: (method, path, the permissions it needs). A new staff URL without an
# entry here fails test_every_staff_url_is_in_the_table.
STAFF_URLS = {
    "call-list": ("get", "/calls/", {"calls.view_call"}),
    "call-detail": ("get", f"/calls/{SID}/", {"calls.view_call"}),
    "call-turns": ("get", f"/calls/{SID}/turns", {"calls.view_call"}),
    "call-hang-up": ("post", f"/calls/{SID}/hang-up", {"calls.view_call", "calls.hang_up_call"}),
    "call-recording": (
        "get",
        f"/calls/{SID}/recording",
        {"calls.view_call", "transcripts.listen_recording"},
    ),
    "call-rerun": (
        "post",
        f"/calls/{SID}/rerun",
        {"calls.view_call", "transcripts.rerun_pipeline"},
    ),
    "call-transcript-txt": (
        "get",
        f"/calls/{SID}/transcript.txt",
        {"calls.view_call", "transcripts.view_transcript"},
    ),
    "call-export-json": (
        "get",
        f"/calls/{SID}/export.json",
        {"calls.view_call", "transcripts.view_transcript"},
    ),
    "call-place": ("post", "/calls/place", {"voiceagents.view_agent", "calls.place_call"}),
    "calls-export-csv": (
        "get",
        "/calls/export.csv",
        {"calls.view_call", "transcripts.view_transcript"},
    ),
}
NOT_STAFF_PAGES = {
    "healthz",
    "twilio-voice",
    "twilio-stream-ended",
    "twilio-recording",
    "api-calls",
    "api-call",
}


@pytest.fixture
def reviewed_call():
    agent = make_agent(name="Bakery")
    call = make_call(
        SID,
        agent=agent,
        ended_at=timezone.now(),
        answered_at=timezone.now(),
        duration_s=14.0,
        recording_requested=True,
    )
    make_turn(call, 500, "Hello, bakery.")
    make_turn(call, 3500, "Hi, this is Maria.", speaker="caller")
    recording = make_stored_recording(call, WAV, "RE" + "7" * 32, 14.0)
    make_transcript(
        call,
        recording,
        caller_name="Maria",
        cost_usd="0.0014",
        segments=[
            {
                "speaker": "agent",
                "name": "Bakery",
                "label": "agent",
                "start": 0.5,
                "end": 3.0,
                "text": "Hello, you have reached the bakery.",
                "channel": 2,
            },
            {
                "speaker": "caller",
                "name": "Maria",
                "label": "caller",
                "start": 3.5,
                "end": 6.0,
                "text": "Hi, this is Maria. Sourdough please.",
                "channel": 1,
            },
        ],
        text="[00:00] Bakery: Hello, you have reached the bakery.\n"
        "[00:03] Maria: Hi, this is Maria. Sourdough please.",
    )
    CallSummary.objects.create(
        call=call,
        source="recording",
        summary="Maria ordered bread.",
        outcome={"order_placed": True},
        cost_usd="0.0002",
    )
    WebhookDelivery.objects.create(
        call=call,
        event="transcript.ready",
        url="https://x.test/h",
        attempt=1,
        status_code=503,
        error="HTTP 503",
    )
    WebhookDelivery.objects.create(
        call=call,
        event="transcript.ready",
        url="https://x.test/h",
        attempt=2,
        status_code=200,
        ok=True,
    )
    index_call(call)  # as the pipeline does when the post-call work ends
    return call


# --- access, per role -----------------------------------------------------------------


def staff_url_names():
    def walk(patterns):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                if pattern.namespace != "admin":
                    yield from walk(pattern.url_patterns)
            elif isinstance(pattern, URLPattern) and pattern.name:
                yield pattern.name

    return set(walk(get_resolver().url_patterns))


def test_every_call_page_is_in_the_table():
    """The call pages; tests/test_access.py holds every URL of the app."""
    call_pages = {n for n in staff_url_names() - NOT_STAFF_PAGES if n.startswith("call")}
    assert call_pages == set(STAFF_URLS)


@pytest.mark.parametrize("name", sorted(STAFF_URLS))
def test_each_role_gets_what_its_permissions_allow(name, reviewed_call):
    method, path, needed = STAFF_URLS[name]
    send = lambda user: getattr(client_for(user), method)(path)  # noqa: E731

    for stranger in (None, user_with(*needed, staff=False)):
        response = send(stranger)
        assert response.status_code == 302, (name, stranger)
        assert response["Location"].startswith("/admin/login/")
    assert send(user_with()).status_code == 403
    for missing in needed:  # every permission is needed: one short is refused
        assert send(user_with(*(needed - {missing}))).status_code == 403, (name, missing)
    with mock.patch("transcripts.tasks.rerun_pipeline", return_value="ok"):
        for allowed in (user_with(*needed), user_with(superuser=True)):
            assert send(allowed).status_code in (200, 206, 302), (name, allowed)


def test_the_call_page_shows_each_part_only_to_those_allowed(reviewed_call):
    viewer = client_for(user_with("calls.view_call"))
    page = viewer.get(f"/calls/{SID}/").content.decode()
    assert "Hello, bakery." in page  # the live transcript
    assert "Sourdough please" not in page and "recording-player" not in page
    assert "End call" not in page and "Re-run" not in page

    reader = client_for(user_with("calls.view_call", "transcripts.view_transcript"))
    page = reader.get(f"/calls/{SID}/").content.decode()
    assert "Sourdough please" in page and "recording-player" not in page

    everyone = client_for(user_with(superuser=True))
    page = everyone.get(f"/calls/{SID}/").content.decode()
    assert 'id="recording-player"' in page and "Re-run transcript" in page


# --- the call page --------------------------------------------------------------------


@pytest.fixture
def admin_client_() -> Client:
    return client_for(user_with(superuser=True))


def test_call_page_puts_the_named_transcript_beside_the_recording(admin_client_, reviewed_call):
    page = admin_client_.get(f"/calls/{SID}/").content.decode()
    assert 'src="/calls/' + SID + '/recording"' in page
    assert 'data-start="3.500"' in page and 'data-end="6.000"' in page
    assert '<span class="who">Maria</span>' in page
    assert '<span class="who">Bakery</span>' in page
    assert "Call from Maria (+15550009999)" in page
    # Both transcripts, side by side.
    assert "Transcript from the recording" in page and "Live transcript" in page
    assert "Maria ordered bread." in page
    assert "<dt>order_placed</dt><dd>True</dd>" in page
    assert "speakers decided by recording channels" in page
    assert "$0.0016" in page  # post-call cost: transcription + summary
    assert "HTTP 503" in page and "HTTP 200" in page
    assert "js/review.js" in page


def test_a_failed_rerun_shows_beside_the_last_good_transcript(admin_client_, reviewed_call):
    Transcript.objects.create(
        call=reviewed_call,
        mode="diarized",
        status="failed",
        error="gave up after 3 attempts: HTTP 500",
        started_at=timezone.now() + timedelta(seconds=5),
    )
    page = admin_client_.get(f"/calls/{SID}/").content.decode()
    assert "gave up after 3 attempts" in page
    assert "the last good one" in page
    assert "Sourdough please" in page


def test_without_a_post_call_transcript_the_live_one_is_shown(admin_client_):
    call = make_call(SID, agent=make_agent(), ended_at=timezone.now(), recording_requested=True)
    make_turn(call, 0, "Hello there.")
    Transcript.objects.create(call=call, mode="diarized", status="failed", error="HTTP 500")
    page = admin_client_.get(f"/calls/{SID}/").content.decode()
    assert "Hello there." in page and "showing the live transcript" in page
    assert "Waiting for Twilio" in page


# --- the recording --------------------------------------------------------------------


def test_recording_is_streamed_whole_and_by_range_never_cached(admin_client_, reviewed_call):
    whole = admin_client_.get(f"/calls/{SID}/recording")
    assert whole.status_code == 200
    assert b"".join(whole.streaming_content) == WAV
    assert whole["Content-Type"] == "audio/wav"
    assert whole["Accept-Ranges"] == "bytes"
    assert whole["Cache-Control"] == "no-store, private"

    part = admin_client_.get(f"/calls/{SID}/recording", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 100-199/{len(WAV)}"
    assert b"".join(part.streaming_content) == WAV[100:200]

    tail = admin_client_.get(f"/calls/{SID}/recording", headers={"Range": "bytes=-10"})
    assert b"".join(tail.streaming_content) == WAV[-10:]
    beyond = admin_client_.get(f"/calls/{SID}/recording", headers={"Range": f"bytes={len(WAV)}-"})
    assert beyond.status_code == 416


def test_the_recording_file_has_no_public_url(admin_client_, reviewed_call):
    name = reviewed_call.recordings.get().file.name  # e.g. 2026/11/RE….wav
    for path in (f"/{name}", f"/media/{name}", f"/recordings/{name}", f"/static/{name}"):
        assert admin_client_.get(path).status_code == 404, path
        assert Client().get(path).status_code in (302, 404), path


def test_no_stored_recording_is_a_404(admin_client_):
    make_call(SID)
    assert admin_client_.get(f"/calls/{SID}/recording").status_code == 404


# --- re-run and exports ---------------------------------------------------------------


def test_rerun_starts_a_new_run_from_the_stored_recording(
    admin_client_, reviewed_call, django_capture_on_commit_callbacks
):
    with (
        mock.patch("transcripts.tasks.transcribe_recording.delay") as transcribe,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client_.post(f"/calls/{SID}/rerun", follow=True)
    assert "Transcription started again" in response.content.decode()
    new_run = reviewed_call.transcripts.order_by("-id").first()
    assert new_run.status == "running"
    transcribe.assert_called_once_with(new_run.pk)
    # The good transcript is still what the page shows while the new run works.
    assert "Sourdough please" in response.content.decode()


def test_rerun_is_csrf_protected(reviewed_call):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with(superuser=True))
    assert client.post(f"/calls/{SID}/rerun").status_code == 403


def test_exports_of_one_call(admin_client_, reviewed_call):
    text = admin_client_.get(f"/calls/{SID}/transcript.txt")
    assert text.content.decode().splitlines() == [
        "[00:00] Bakery: Hello, you have reached the bakery.",
        "[00:03] Maria: Hi, this is Maria. Sourdough please.",
    ]
    assert text["Content-Disposition"] == f'attachment; filename="{SID}.txt"'
    body = orjson.loads(admin_client_.get(f"/calls/{SID}/export.json").content)
    assert body["transcript"]["caller_name"] == "Maria"
    assert body["outcome"] == {"order_placed": True}
    assert body["summary"] == "Maria ordered bread."
    assert [t["text"] for t in body["turns"]] == ["Hello, bakery.", "Hi, this is Maria."]


def test_export_of_a_call_without_transcript_uses_the_live_turns(admin_client_):
    call = make_call(SID, agent=make_agent(name="Desk"))
    make_turn(call, 61_000, "Anything else?")
    text = admin_client_.get(f"/calls/{SID}/transcript.txt").content.decode()
    assert text == "[01:01] Desk: Anything else?\n"


def test_filtered_list_as_csv(admin_client_, reviewed_call):
    make_call("CA" + "1" * 32, agent=make_agent(name="Other"))
    response = admin_client_.get("/calls/export.csv?q=sourdough")
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert rows[0].startswith("sid,started_at,from,to,agent")
    assert len(rows) == 2 and rows[1].startswith(SID)
    assert "Maria" in rows[1] and '"{""order_placed"":true}"' in rows[1]
    assert admin_client_.get("/calls/export.csv?date_from=nonsense").status_code == 400
