"""A whole phone call through the real app (Daphne subprocess), driven by the fake Twilio
against the fake OpenAI Realtime server: greeting, audio both ways, barge-in, tool call,
agent hang-up, stored turns, usage and the read API."""

import asyncio

import httpx
import pytest
from channels.db import database_sync_to_async

from calls.outcomes import USAGE_FIELDS
from tests.fakes.realtime_server import Reply
from tests.integration.conftest import app_server_env, load_call, script, start_app, wait_for_end
from tests.live import DaphneProcess
from voiceagents.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)

GREETING = "Hello, you have reached the bakery."
LONG_ANSWER = "We open at eight and close at six every day of the week except on public holidays."


@database_sync_to_async
def new_api_token() -> str:
    token = ApiToken(name="tests")
    raw = token.issue()
    token.save()
    return raw


def usage_sent(session) -> dict[str, int]:
    """What the fake server billed, summed the way a reader of the API expects."""
    totals = dict.fromkeys(USAGE_FIELDS, 0)
    for event in session.sent_events("response.done"):
        usage = event["response"].get("usage") or {}
        totals["input_tokens"] += usage.get("input_tokens", 0)
        totals["output_tokens"] += usage.get("output_tokens", 0)
        totals["total_tokens"] += usage.get("total_tokens", 0)
        details_in = usage.get("input_token_details") or {}
        details_out = usage.get("output_token_details") or {}
        totals["input_text_tokens"] += details_in.get("text_tokens", 0)
        totals["input_audio_tokens"] += details_in.get("audio_tokens", 0)
        totals["cached_tokens"] += details_in.get("cached_tokens", 0)
        totals["output_text_tokens"] += details_out.get("text_tokens", 0)
        totals["output_audio_tokens"] += details_out.get("audio_tokens", 0)
    return totals


class PlainDaphne(DaphneProcess):
    """Daphne's own command line: its own server and protocol, so no shortcut in the scope
    (voiceagents/daphne_server.py) and the media consumer speaks plain ASGI."""

    def server_args(self, asgi_app: str) -> list[str]:
        return ["daphne", "-b", "127.0.0.1", "-p", str(self.port), asgi_app]


@pytest.fixture(scope="module")
def plain_daphne(django_db_setup, realtime_server):
    app = start_app(app_server_env(realtime_server), "plain-daphne", PlainDaphne)
    yield app
    app.stop()


@pytest.fixture
def serving_app(request, app_server):
    """The web server as deployed, or (parametrized "plain") Daphne's own."""
    if getattr(request, "param", None) == "plain":
        return request.getfixturevalue("plain_daphne")
    return app_server


@pytest.mark.parametrize("serving_app", ["web_server", "plain"], indirect=True)
async def test_a_whole_call(agent, realtime, caller_for, serving_app):
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text=GREETING, audio_ms=800),
            Reply(text=LONG_ANSWER, audio_ms=4000),
            Reply(function_call=("end_call", {})),
            Reply(text="Goodbye!", audio_ms=400),
        ],
        caller_transcripts=["When do you open?", "Thanks, that is all."],
        audio_speed=1.0,  # generated in real time, so the answer is still in flight at barge-in
        audio_chunk_ms=100,
    )
    call = caller_for()
    response = await call.dial()
    assert response.status_code == 200
    await call.connect_stream()

    # The OpenAI session is configured from the agent, then the agent greets.
    await realtime.wait_for(lambda: realtime.test_sessions(), timeout=5)
    session = realtime.test_sessions()[0]
    await call.wait_for(lambda: len(call.heard_audio) >= 800 * 8, timeout=5)
    received = session.received_types()
    assert received[0] == "session.update"
    config = session.received[0]["session"]
    assert config["type"] == "realtime"
    assert config["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert config["audio"]["output"]["voice"] == "marin"
    assert config["tools"][0]["name"] == "end_call"
    greeting_request = next(e for e in session.received if e["type"] == "response.create")
    assert GREETING in greeting_request["response"]["instructions"]
    greeting_item = next(iter(session.audio_sent_by_item))
    greeting_chunks = session.audio_sent_by_item[greeting_item]
    first_payloads = [payload for _, payload in call.media_received[: len(greeting_chunks)]]
    assert first_payloads == greeting_chunks

    # The caller asks; the agent's long answer starts playing.
    await call.speak_and_wait(700)
    await call.wait_for(lambda: len(call.heard_audio) >= (800 + 1200) * 8, timeout=8)
    # The caller talks over the answer: Twilio's queue is cleared, the response cancelled
    # and the item truncated to what the caller actually heard.
    clears_before = len(call.clears)
    call.speak(600)
    await call.wait_for(lambda: len(call.clears) > clears_before, timeout=5)
    heard_at_clear_ms = len(call.heard_audio) // 8
    await realtime.wait_for(lambda: session.truncations, timeout=5)
    truncation = session.truncations[0]
    answer_heard_ms = heard_at_clear_ms - 800
    # Within a caller frame (20 ms) of what was heard: the last mark plus the time since.
    assert abs(truncation["audio_end_ms"] - answer_heard_ms) <= 20
    assert truncation["audio_end_ms"] < 4000
    # The bridge cancels the in-flight answer; with interrupt_response on, OpenAI may have
    # cancelled it first, and then the only complaint allowed is "no active response".
    assert "response.cancel" in session.received_types()
    statuses = [e["response"]["status"] for e in session.sent_events("response.done")]
    assert statuses[:2] == ["completed", "cancelled"]
    assert {e["error"]["code"] for e in session.benign_errors} <= {"response_cancel_not_active"}

    # The agent decides to end the call, says goodbye, and hangs up.
    await call.wait_closed(timeout=15)
    assert call.closed_by_app
    assert call.after_stream_say_texts == []  # no apology: nothing went wrong

    # The caller's audio reached OpenAI byte for byte, in order.
    assert len(session.input_audio) > 0
    assert bytes(session.input_audio) == bytes(call.sent_audio[: len(session.input_audio)])

    stored, turns = await load_call(call.call_sid)
    assert stored.completion_reason == "agent_hangup"
    assert stored.status == "completed"
    assert stored.duration_s > 0
    assert [(t.speaker, t.interrupted) for t in turns] == [
        ("agent", False),
        ("caller", False),
        ("agent", True),
        ("caller", False),
        ("tool", False),
        ("agent", False),
    ]
    assert turns[0].text == GREETING
    assert turns[1].text == "When do you open?"
    assert LONG_ANSWER.startswith(turns[2].text) and turns[2].text != LONG_ANSWER
    assert turns[3].text == "Thanks, that is all."
    assert turns[4].text.startswith("end_call(")
    assert turns[5].text == "Goodbye!"
    assert [t.started_ms for t in turns] == sorted(t.started_ms for t in turns)
    usage = usage_sent(session)
    assert usage["total_tokens"] > 0
    assert {name: getattr(stored, name) for name in USAGE_FIELDS} == usage

    # The same call through the read API.
    token = await new_api_token()
    async with httpx.AsyncClient(base_url=serving_app.base_url) as http:
        detail = await http.get(
            f"/api/calls/{call.call_sid}/", headers={"Authorization": f"Bearer {token}"}
        )
    assert detail.status_code == 200
    body = detail.json()
    assert body["completion_reason"] == "agent_hangup"
    assert [t["speaker"] for t in body["turns"]] == [t.speaker for t in turns]
    assert body["usage"] == usage


async def test_caller_hangs_up(agent, realtime, caller_for):
    realtime.script_for_next_connection = script(replies=[Reply(text=GREETING, audio_ms=300)])
    call = caller_for()
    await call.dial()
    await call.connect_stream()
    await call.wait_for(lambda: len(call.heard_audio) >= 300 * 8, timeout=5)
    await asyncio.sleep(0.1)
    await call.hangup()
    stored = await wait_for_end(call.call_sid)
    assert stored.completion_reason == "caller_hangup"
    assert stored.status == "completed"
    _, turns = await load_call(call.call_sid)
    assert [(t.speaker, t.text) for t in turns] == [("agent", GREETING)]
    await realtime.wait_for(lambda: realtime.test_sessions()[0].closed, timeout=5)
