"""The post-call chain run eagerly against the fake OpenAI and Twilio REST servers:
download → diarize → identify → channel check → format → summary/outcome, its fallbacks,
standard mode and long calls."""

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone

from tests.factories import ACCOUNT_SID, make_agent, make_call, make_turn
from tests.fakes.openai_rest import FakeOpenAI
from tests.fakes.twilio_api import FakeTwilioApi
from tests.fakes.voices import VoiceBank
from tests.live import BackgroundLoop
from tests.post_call.synth import dual_wav
from transcripts import tasks
from transcripts.models import CallSummary, Recording, Transcript
from transcripts.selectors import current_transcript

pytestmark = pytest.mark.django_db

API_KEY = "sk-pipeline-test"
AUTH_TOKEN = "pipeline-auth-token"
BOOKING_SCHEMA = {
    "type": "object",
    "properties": {"appointment_booked": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["appointment_booked"],
}


@pytest.fixture(scope="module")
def loop():
    background = BackgroundLoop()
    yield background
    background.close()


@pytest.fixture
def bank():
    return VoiceBank()


@pytest.fixture
def openai(loop, bank, settings):
    fake = FakeOpenAI(voice_bank=bank, api_key=API_KEY)
    loop.run(fake.start())
    settings.OPENAI_BASE_URL = fake.base_url
    settings.OPENAI_API_KEY = API_KEY
    yield fake
    loop.run(fake.stop())
    assert fake.violations == []


@pytest.fixture
def twilio(settings):
    fake = FakeTwilioApi(ACCOUNT_SID, AUTH_TOKEN)
    fake.start()
    settings.TWILIO_API_BASE_URL = fake.base_url
    settings.TWILIO_ACCOUNT_SID = ACCOUNT_SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.RECORDING_FETCH_FIRST_RETRY_S = 0.01
    yield fake
    fake.stop()
    assert fake.violations == []


def conversation(bank: VoiceBank) -> tuple[bytes, list[tuple[str, str]]]:
    """A 14 s call: the agent greets, the caller names herself, the agent answers, the
    caller thanks. Tones stand for voices; the bank knows what each one says."""
    lines = [
        ("agent", 0.5, 3.0, "Hello, you have reached the bakery. How can I help?"),
        ("caller", 3.5, 6.0, "Hi, this is Maria. When are you open tomorrow?"),
        ("agent", 6.5, 10.5, "We open at eight and close at six, every day."),
        ("caller", 11.0, 13.0, "Great, thank you very much."),
    ]
    caller, agent = [], []
    for who, start, end, text in lines:
        freq = bank.say(who, text, int((end - start) * 1000))
        (agent if who == "agent" else caller).append((start, end, freq))
    return dual_wav(14.0, caller, agent, bleed=0.05), [(w, t) for w, _, _, t in lines]


def recorded_call(wav: bytes, twilio=None, **agent_fields):
    agent = make_agent(name="Bakery", instructions="You answer for a bakery.", **agent_fields)
    call = make_call(
        agent=agent,
        recording_requested=True,
        answered_at=timezone.now(),
        ended_at=timezone.now(),
    )
    make_turn(call, 500, "Hello, you have reached the bakery. How can I help?")
    make_turn(call, 3500, "Hi, this is Maria. When are you open tomorrow?", speaker="caller")
    recording = Recording.objects.create(
        call=call, sid="RE" + "a" * 32, account_sid=ACCOUNT_SID, twilio_status="completed"
    )
    if twilio is not None:
        twilio.add_recording(recording.sid, wav, call.sid)
    return call, recording


def stored_call(wav: bytes, **agent_fields):
    call, recording = recorded_call(wav, **agent_fields)
    recording.file.save(f"{recording.sid}.wav", ContentFile(wav), save=False)
    recording.state = Recording.State.STORED
    recording.save()
    return call, recording


def lines(transcript: Transcript) -> list[tuple[str, str, str]]:
    return [(s["speaker"], s["name"], s["text"]) for s in transcript.segments]


def test_the_whole_chain_from_callback_to_named_lines(eager_celery, openai, twilio, bank):
    wav, said = conversation(bank)
    call, recording = recorded_call(wav, twilio, outcome_schema=BOOKING_SCHEMA)

    tasks.process_recording(recording.pk)

    recording.refresh_from_db()
    assert recording.state == Recording.State.STORED
    assert (recording.channels, recording.duration_s) == (2, pytest.approx(14.0))
    transcript = current_transcript(call)
    assert transcript.status == "completed", transcript.error
    assert transcript.method == "channel"
    assert transcript.caller_name == "Maria"
    assert lines(transcript) == [
        ("agent" if who == "agent" else "caller", "Bakery" if who == "agent" else "Maria", text)
        for who, text in said
    ]
    assert transcript.segments[1]["start"] == pytest.approx(3.5, abs=0.15)
    assert transcript.text.splitlines()[1] == "[00:03] Maria: " + said[1][1]

    [request] = openai.rest.transcription_requests()
    assert request["fields"]["model"] == "gpt-4o-transcribe-diarize"
    assert request["fields"]["response_format"] == "diarized_json"
    assert request["fields"]["chunking_strategy"] == "auto"
    assert request["fields"]["known_speaker_names[]"] == ["agent", "caller"]
    assert request["channels"] == 1  # the mono mix
    assert transcript.cost_usd > 0 and transcript.audio_seconds == pytest.approx(14.0)

    summary = CallSummary.objects.get(call=call)
    assert summary.source == "recording" and summary.summary
    assert summary.outcome is not None and "appointment_booked" in summary.outcome


def test_a_model_naming_the_caller_as_agent_is_overruled_by_the_channels(
    eager_celery, openai, bank
):
    wav, _ = conversation(bank)
    call, recording = stored_call(wav)
    openai.rest.responders["speaker_identification"] = lambda request: {
        "agent_speaker": "caller",
        "caller_name": "Maria",
    }
    tasks.transcribe_recording(tasks.start_transcript(recording).pk)
    transcript = current_transcript(call)
    assert transcript.method == "channel" and transcript.agent_label == "agent"
    assert "caller" in transcript.disagreement
    assert [speaker for speaker, _, _ in lines(transcript)] == [
        "agent",
        "caller",
        "agent",
        "caller",
    ]


def test_identification_failure_keeps_the_text_with_a_warning(eager_celery, openai, bank):
    wav, said = conversation(bank)
    call, recording = stored_call(wav)
    openai.rest.fail_responses_with([500])  # identification; the summary then works
    tasks.transcribe_recording(tasks.start_transcript(recording).pk)
    transcript = current_transcript(call)
    assert transcript.status == "completed"
    assert "identification failed" in transcript.warning
    assert transcript.caller_name == ""
    assert [text for _, _, text in lines(transcript)] == [text for _, text in said]


def test_failed_transcription_keeps_the_live_transcript_and_an_earlier_good_one(
    eager_celery, openai, bank, settings
):
    settings.OPENAI_RETRY_MAX_S = 0
    wav, _ = conversation(bank)
    call, recording = stored_call(wav)
    tasks.transcribe_recording(tasks.start_transcript(recording).pk)
    good = current_transcript(call)

    openai.rest.fail_transcriptions_with([500] * 5)
    message = tasks.rerun_pipeline(call, requested_by="staff")
    assert "again" in message
    # rerun_pipeline sends after commit; in this test transaction run it by hand.
    run = call.transcripts.order_by("-id").first()
    tasks.transcribe_recording(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and "HTTP 500" in run.error
    assert current_transcript(call) == good  # a failed re-run never replaces it


def test_without_a_transcript_the_summary_comes_from_the_live_turns(
    eager_celery, openai, bank, settings
):
    settings.OPENAI_RETRY_MAX_S = 0
    wav, _ = conversation(bank)
    call, recording = stored_call(wav)
    openai.rest.fail_transcriptions_with([503] * 5)
    tasks.transcribe_recording(tasks.start_transcript(recording).pk)
    assert current_transcript(call) is None
    assert call.transcripts.get().status == "failed"
    summary = CallSummary.objects.get(call=call)
    assert summary.source == "live" and summary.summary


def test_standard_mode_transcribes_each_utterance_with_the_vocabulary(eager_celery, openai, bank):
    wav, said = conversation(bank)
    call, recording = stored_call(
        wav, transcript_mode="standard", transcript_vocabulary="English and Spanish; sourdough"
    )
    tasks.transcribe_recording(tasks.start_transcript(recording).pk)
    transcript = current_transcript(call)
    assert transcript.mode == "standard" and transcript.method == "channel"
    assert lines(transcript) == [
        ("agent" if who == "agent" else "caller", "Bakery" if who == "agent" else "Maria", text)
        for who, text in said
    ]
    requests = openai.rest.transcription_requests()
    assert len(requests) == 4
    for request in requests:
        assert request["fields"]["model"] == "gpt-4o-transcribe"
        assert request["fields"]["response_format"] == "json"
        assert request["fields"]["prompt"] == "English and Spanish; sourdough"
        assert "language" not in request["fields"]


def test_a_long_call_is_cut_into_pieces_with_consistent_labels(
    eager_celery, openai, bank, settings
):
    settings.TRANSCRIPTION_PIECE_MAX_S = 20.0
    caller, agent, said = [], [], []
    for turn in range(10):  # 10 turns of 4.5 s each with pauses: 52 s
        start = 0.5 + turn * 5.2
        who = "agent" if turn % 2 == 0 else "caller"
        text = f"Turn {turn}: " + ("this is Maria speaking" if turn == 1 else "more words here")
        freq = bank.say(who, text, 4500)
        (agent if who == "agent" else caller).append((start, start + 4.5, freq))
        said.append((who, text, start))
    call, recording = stored_call(dual_wav(53.0, caller, agent, bleed=0.05))
    tasks.transcribe_recording(tasks.start_transcript(recording).pk)
    transcript = current_transcript(call)
    requests = openai.rest.transcription_requests()
    assert len(requests) >= 3  # 53 s in pieces of at most 20 s, cut in pauses
    assert all(r["duration_s"] <= 20.0 for r in requests)
    assert sum(r["duration_s"] for r in requests) == pytest.approx(53.0, abs=0.1)
    assert all(r["fields"]["known_speaker_names[]"] == ["agent", "caller"] for r in requests)
    assert [(s["speaker"], s["text"]) for s in transcript.segments] == [
        (who, text) for who, text, _ in said
    ]
    for segment, (_, _, start) in zip(transcript.segments, said, strict=True):
        assert segment["start"] == pytest.approx(start, abs=0.2)


def test_download_retries_server_faults_and_rate_limits_then_stores(
    eager_celery, openai, twilio, bank
):
    wav, _ = conversation(bank)
    call, recording = recorded_call(wav, twilio)
    twilio.fail_next(recording.sid, [500, 503, 429])
    # Through Celery (eager): each retry runs at once instead of after its countdown;
    # Celery re-applies a retried task only when eager exceptions do not propagate.
    eager_celery.conf.task_eager_propagates = False
    tasks.process_recording.delay(recording.pk)
    recording.refresh_from_db()
    assert recording.state == Recording.State.STORED
    assert recording.download_attempts == 4
    assert [r["status"] for r in twilio.media_requests(recording.sid)] == [500, 503, 429, 200]
    assert current_transcript(call) is not None


def test_download_gives_up_after_the_bound_with_a_stored_error(
    eager_celery, openai, twilio, bank, settings
):
    settings.RECORDING_FETCH_MAX_S = 0.3
    wav, _ = conversation(bank)
    call, recording = recorded_call(wav, twilio)
    twilio.recordings.clear()  # Twilio never has the file: 404 every time
    eager_celery.conf.task_eager_propagates = False  # see the test above
    tasks.process_recording.delay(recording.pk)
    recording.refresh_from_db()
    assert recording.state == Recording.State.FAILED
    assert recording.error.startswith("gave up after")
    assert "HTTP 404" in recording.error
    assert current_transcript(call) is None
    assert CallSummary.objects.get(call=call).source == "live"  # the live transcript stays


def test_refused_credentials_are_final(eager_celery, openai, twilio, bank, settings):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    wav, _ = conversation(bank)
    _, recording = recorded_call(wav, twilio)
    tasks.process_recording(recording.pk)
    recording.refresh_from_db()
    assert recording.state == Recording.State.FAILED and "HTTP 401" in recording.error
    assert recording.download_attempts == 1
    twilio.violations.clear()  # the fake notes the bad credentials; that was the point


def test_recording_deleted_at_twilio_once_stored_when_asked(
    eager_celery, openai, twilio, bank, settings
):
    settings.TWILIO_DELETE_RECORDINGS = True
    wav, _ = conversation(bank)
    _, recording = recorded_call(wav, twilio)
    tasks.process_recording(recording.pk)
    recording.refresh_from_db()
    assert recording.deleted_from_twilio_at is not None
    assert recording.sid not in twilio.recordings
    assert recording.file.size == len(wav)  # our copy stays


def test_an_outcome_that_does_not_fit_the_schema_is_refused_with_a_reason(
    eager_celery, openai, bank
):
    wav, _ = conversation(bank)
    call, recording = stored_call(wav, outcome_schema=BOOKING_SCHEMA)
    openai.rest.responders["call_summary"] = lambda request: {
        "summary": "Maria asked about opening hours.",
        "outcome": {"appointment_booked": "maybe", "reason": None},
    }
    tasks.transcribe_recording(tasks.start_transcript(recording).pk)
    summary = CallSummary.objects.get(call=call)
    assert summary.summary == "Maria asked about opening hours."
    assert summary.outcome is None
    assert "appointment_booked" in summary.outcome_error and "boolean" in summary.outcome_error
    request = openai.rest.response_requests()[-1]["json"]
    strict = request["text"]["format"]["schema"]["properties"]["outcome"]
    # The strict form was sent (PostgreSQL's jsonb keeps keys in its own order).
    assert sorted(strict["required"]) == ["appointment_booked", "reason"]
    assert strict["additionalProperties"] is False
