"""After hangup, through the real processes: Daphne answers a fake Twilio call and its
recording callback; a real Celery worker (embedded filesystem broker, as `scripts/run`
runs it, and Redis, as production does) downloads the recording from the fake Twilio
REST API, transcribes it against the fake OpenAI, names the speakers, summarises the
call and posts the signed completion webhook."""

import asyncio
import os
import time

import httpx
import pytest
from channels.db import database_sync_to_async

from calls.models import Call
from tests.factories import make_api_token
from tests.fakes.openai_rest import FakeOpenAI
from tests.fakes.realtime_server import Reply
from tests.fakes.twilio_api import FakeTwilioApi, RecordedCall
from tests.fakes.voices import VoiceBank
from tests.integration.conftest import make_caller, script, start_app, wait_for_end, wait_for_turns
from tests.live import (
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    TEST_OPENAI_KEY,
    CeleryWorker,
    database_url_of_test_db,
    services_required,
)
from tests.post_call.receiver import WebhookReceiver
from transcripts.models import Recording, WebhookDelivery
from transcripts.selectors import current_transcript

pytestmark = pytest.mark.django_db(transaction=True)

GREETING = "Hello, you have reached the bakery. How can I help?"
QUESTION = "Hi, this is Maria. Can I order a sourdough loaf for tomorrow?"
ANSWER = "Of course, Maria, it will be ready at nine."
OUTCOME_SCHEMA = {
    "type": "object",
    "properties": {"order_placed": {"type": "boolean"}, "item": {"type": "string"}},
    "required": ["order_placed"],
}


class Stack:
    """The fakes, the web process and the worker for one broker."""

    def __init__(self, broker: str, tmp, background_loop) -> None:
        self.loop = background_loop
        self.bank = VoiceBank()
        self.openai = FakeOpenAI(voice_bank=self.bank, api_key=TEST_OPENAI_KEY)
        background_loop.run(self.openai.start())
        self.twilio = FakeTwilioApi(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN)
        self.twilio.not_ready_for = 2  # the file is not there for the first two tries
        self.twilio.start()
        env = {
            "OPENAI_BASE_URL": self.openai.base_url,
            "TWILIO_API_BASE_URL": self.twilio.base_url,
            "RECORDINGS_DIR": str(tmp / "recordings"),
            "RECORDING_FETCH_FIRST_RETRY_S": "0.3",
            "WEBHOOK_FIRST_RETRY_S": "0.2",
        }
        if broker == "redis":
            # A database of its own: other tests' web processes queue tasks in the default.
            env["CELERY_BROKER_URL"] = os.environ["TEST_REDIS_URL"].rsplit("/", 1)[0] + "/9"
        else:
            env["CELERY_BROKER_URL"] = "filesystem://"
            env["CELERY_BROKER_DIR"] = str(tmp / "broker")
        self.app = start_app(env, f"post-call-{broker}")
        try:
            self.worker = CeleryWorker(
                {"DATABASE_URL": database_url_of_test_db(), **env},
                tmp / f"worker-{broker}.log",
            )
        except BaseException:
            self.app.stop()
            raise

    def stop(self) -> None:
        self.worker.stop()
        self.app.stop()
        self.twilio.stop()
        self.loop.run(self.openai.stop())


@pytest.fixture(
    scope="module",
    params=["embedded", pytest.param("redis", marks=pytest.mark.redis)],
)
def stack(request, django_db_setup, django_db_blocker, background_loop, tmp_path_factory):
    if request.param == "redis" and not os.environ.get("TEST_REDIS_URL"):
        # A module-scoped fixture's node is the module: check the param's service here.
        message = "needs a Redis server (TEST_REDIS_URL): run scripts/test"
        pytest.fail(message) if services_required() else pytest.skip(message)
    stack = Stack(request.param, tmp_path_factory.mktemp(request.param), background_loop)
    yield stack
    stack.stop()
    assert stack.openai.violations == []
    assert stack.twilio.violations == []


@pytest.fixture
def receiver():
    server = WebhookReceiver("whsec_integration")
    yield server
    server.close()


@database_sync_to_async
def configure(agent, receiver) -> None:
    agent.outcome_schema = OUTCOME_SCHEMA
    agent.completion_webhook_url = receiver.url
    agent.completion_webhook_secret = "whsec_integration"
    agent.save()


@database_sync_to_async
def post_call_state(sid: str):
    call = Call.objects.get(sid=sid)
    transcript = current_transcript(call)
    deliveries = list(WebhookDelivery.objects.filter(call=call, ok=True).values_list("event"))
    return call, transcript, [event for (event,) in deliveries]


async def wait_for_post_call(sid: str, worker: CeleryWorker, within_s: float = 60.0):
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        call, transcript, delivered = await post_call_state(sid)
        if transcript is not None and "transcript.ready" in delivered:
            return call, transcript
        await asyncio.sleep(0.2)
    raise AssertionError(f"no transcript for {sid} within {within_s}s:\n{worker.log()[-4000:]}")


async def place_call(stack: Stack) -> RecordedCall:
    """Greeting, the caller's question with her name, the answer, then she hangs up."""
    stack.openai.realtime.script_for_next_connection = script(
        replies=[Reply(text=GREETING, audio_ms=1500), Reply(text=ANSWER, audio_ms=1500)],
        caller_transcripts=[QUESTION],
        voice_bank=stack.bank,
        audio_speed=0,
    )
    caller = make_caller(stack.app)
    recorded = RecordedCall(caller, stack.twilio)
    assert (await recorded.dial()).status_code == 200
    await caller.connect_stream()
    await caller.wait_for(lambda: len(caller.heard_audio) >= 1500 * 8, timeout=10)
    await asyncio.sleep(0.3)
    await caller.speak_and_wait(2000, freq=stack.bank.say("caller", QUESTION, 2000))
    await wait_for_turns(caller.call_sid, 3)  # the answer is stored once it has played
    await asyncio.sleep(0.3)
    await caller.hangup()
    await wait_for_end(caller.call_sid)
    assert caller.violations == []
    return recorded


async def test_a_call_becomes_a_named_transcript_through_a_real_worker(stack, agent, receiver):
    await configure(agent, receiver)
    recorded = await place_call(stack)
    sid = recorded.call.call_sid

    first = await recorded.send_callback()
    retried = await recorded.send_callback()  # Twilio retries; the work runs once
    assert (first.status_code, retried.status_code) == (204, 204)

    call, transcript = await wait_for_post_call(sid, stack.worker)
    assert transcript.caller_name == "Maria"
    assert transcript.method == "channel"
    assert [(s["speaker"], s["name"], s["text"]) for s in transcript.segments] == [
        ("agent", "Front desk", GREETING),
        ("caller", "Maria", QUESTION),
        ("agent", "Front desk", ANSWER),
    ]
    assert f"] Maria: {QUESTION}" in transcript.text

    recording = await database_sync_to_async(Recording.objects.get)(call=call)
    assert (recording.state, recording.channels) == ("stored", 2)
    assert await database_sync_to_async(Recording.objects.filter(call=call).count)() == 1
    # Two 404s while Twilio "stores" the file, then the download, each after a pause at
    # least the backoff (the growth itself: test_recording_fetch_backoff; the embedded
    # broker's polling adds up to its interval to every hop).
    tries = stack.twilio.media_requests(recorded.recording_sid)
    assert [t["status"] for t in tries] == [404, 404, 200]
    assert tries[1]["at"] - tries[0]["at"] >= 0.28
    assert tries[2]["at"] - tries[1]["at"] >= 0.58
    assert stack.twilio.requests[0]["query"] == {"RequestedChannels": ["2"]}

    # The diarization request was the mono mix with both sides' voice clips.
    [request] = stack.openai.rest.transcription_requests()[-1:]
    assert request["fields"]["known_speaker_names[]"] == ["agent", "caller"]
    assert request["channels"] == 1

    # The completion webhook: both events, signed, verified by the receiver.
    events = [r["json"]["event"] for r in receiver.received]
    assert events == ["call.completed", "transcript.ready"]
    assert all(r["verified"] for r in receiver.received)
    ready = receiver.received[1]["json"]["call"]
    assert ready["transcript"]["caller_name"] == "Maria"
    assert ready["outcome"] is not None and "order_placed" in ready["outcome"]

    # The read API shows the same.
    _, raw = await database_sync_to_async(make_api_token)()
    async with httpx.AsyncClient(base_url=stack.app.base_url) as http:
        body = (
            await http.get(f"/api/calls/{sid}/", headers={"Authorization": f"Bearer {raw}"})
        ).json()
    assert body["recording"]["status"] == "stored"
    assert [(line["speaker"], line["name"]) for line in body["transcript"]["lines"]] == [
        ("agent", "Front desk"),
        ("caller", "Maria"),
        ("agent", "Front desk"),
    ]
    assert body["summary"]
