"""Simulated Twilio callers in one process: `python -m bench.load --spec spec.json --out
result.json`. Each call follows `CallPlan` (see bench/scenario.py) through the real fake
Twilio (signed webhook, real-time 20 ms frames, playback, marks, clear) and reports when
each stamped audio chunk arrived, when `clear` arrived, and whether the call completed."""

import argparse
import asyncio
import base64
import functools
import gc
import resource
import ssl
import time

import httpx
import orjson

from bench.loop_lag import LoopLag
from bench.realtime import read_stamp
from bench.scenario import (
    ACCOUNT_SID,
    AGENT_NUMBER,
    AUTH_TOKEN,
    CallPlan,
    Plan,
    ToolCallPlan,
    plan_from_json,
)
from tests.fakes import audio
from tests.fakes.twilio_caller import FakeTwilioCall, StreamRefused

ULAW_BYTES_PER_MS = 8
POLL_S = 0.02  # how often a waiting caller looks again; timings come from the fake itself
STAMP_BASE64_CHARS = 12  # the first 9 bytes of a payload, enough for the 8-byte stamp


# Caller speech is a tone synthesised in pure Python, ~10 ms of this loop per second of
# speech; every caller says the same lengths, so make each once.
audio.tone = functools.cache(audio.tone)
# Each fake Twilio request opens a new httpx client, whose new TLS context takes ~25 ms of
# this loop (while every other call's frames wait); the URLs are plain http on loopback.
_TLS = ssl.create_default_context()


class _SharedTlsClient(httpx.AsyncClient):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("verify", _TLS)
        super().__init__(*args, **kwargs)


httpx.AsyncClient = _SharedTlsClient


class CallFailed(Exception):
    pass


def new_call(app: str, public: str) -> FakeTwilioCall:
    return FakeTwilioCall(
        app,
        auth_token=AUTH_TOKEN,
        account_sid=ACCOUNT_SID,
        to_number=AGENT_NUMBER,
        public_base_url=public,
    )


# What ends one simulated call as failed (recorded with its reason) rather than the run.
CALL_FAILURES = (CallFailed, StreamRefused, TimeoutError, OSError, RuntimeError, httpx.HTTPError)


async def connect(call: FakeTwilioCall) -> None:
    response = await call.dial()
    if response.status_code != 200 or not call.stream_url:
        raise CallFailed(f"voice webhook answered {response.status_code}: {response.text[:200]}")
    await call.connect_stream()


SLACK_S = 10.0  # beyond the plan's own timing, before a wait counts as a failed call


async def hear_greeting(call: FakeTwilioCall, plan: Plan) -> None:
    greeting_bytes = plan.greeting_ms * ULAW_BYTES_PER_MS
    await call.wait_for(
        lambda: len(call.heard_audio) >= greeting_bytes,
        timeout=(plan.reply_delay_ms + plan.greeting_ms) / 1000 + SLACK_S,
        interval=POLL_S,
    )
    await asyncio.sleep(0.1)


async def converse(call: FakeTwilioCall, plan: CallPlan) -> None:
    """Greeting, question, answer, barge-in, short answer, silence, hang up."""
    await hear_greeting(call, plan)
    media_before = len(call.media_received)
    await call.speak_and_wait(plan.question_ms)
    await call.wait_for(lambda: len(call.media_received) > media_before, SLACK_S, POLL_S)
    await asyncio.sleep(plan.barge_after_ms / 1000)
    clears_before = len(call.clears)
    call.barge_spoke_at = time.monotonic()  # the caller starts talking over the agent
    call.speak(plan.barge_ms)
    await call.wait_for(
        lambda: len(call.clears) > clears_before, plan.barge_ms / 1000 + SLACK_S, POLL_S
    )
    media_before = len(call.media_received)
    await call.wait_for(lambda: len(call.media_received) > media_before, SLACK_S, POLL_S)
    await asyncio.sleep(plan.final_ms / 1000)
    await call.wait_for(lambda: call.queued_audio_ms <= 0, SLACK_S, POLL_S)
    await asyncio.sleep(plan.silence_before_hangup_ms / 1000)


def stamp_of(payload: str) -> tuple[int, int]:
    """(session, delta number) the fake OpenAI stamped on this agent audio."""
    return read_stamp(base64.b64decode(payload[:STAMP_BASE64_CHARS]))


def session_of(payload: str) -> int:
    return stamp_of(payload)[0]


async def hear_answer(call: FakeTwilioCall, media_before: int, timeout_s: float) -> None:
    """Agent audio after `media_before` chunks arrives, then plays out: nothing queued and
    no new chunk for 300 ms."""
    await call.wait_for(lambda: len(call.media_received) > media_before, timeout_s, POLL_S)
    await call.wait_for(
        lambda: call.queued_audio_ms <= 0 and time.monotonic() - call.media_received[-1][0] > 0.3,
        SLACK_S,
        POLL_S,
    )


async def converse_with_tools(call: FakeTwilioCall, plan: ToolCallPlan) -> None:
    """The tool-heavy plan (bench/scenario.py): three tool calls, "uh-huh" during the slow
    one, a recoverable error, a dropped OpenAI connection mid-answer, hang up."""
    await hear_greeting(call, plan)
    first_session = session_of(call.media_received[-1][1])
    media_before = len(call.media_received)
    await call.speak_and_wait(plan.question_ms)
    await asyncio.sleep(plan.uh_huh_after_ms / 1000)
    await call.speak_and_wait(plan.uh_huh_ms)
    if len(call.media_received) > media_before:
        raise CallFailed("the agent spoke before the slow tool answered")
    await hear_answer(call, media_before, plan.slow_tool_ms / 1000 + SLACK_S)

    await call.speak_and_wait(plan.question_ms)
    await call.wait_for(
        lambda: session_of(call.media_received[-1][1]) != first_session, SLACK_S, POLL_S
    )  # the answer was cut off by the drop; the app's new session picked up
    await hear_answer(call, len(call.media_received) - 1, SLACK_S)

    media_before = len(call.media_received)
    await call.speak_and_wait(plan.question_ms)
    await hear_answer(call, media_before, SLACK_S)
    await asyncio.sleep(plan.silence_before_hangup_ms / 1000)


def stamps_of(call: FakeTwilioCall) -> list[tuple[int, int, float]]:
    """(session, delta number, received at) for every audio chunk the caller got."""
    return [(*stamp_of(payload), received_at) for received_at, payload in call.media_received]


def describe(call: FakeTwilioCall, app: str) -> dict:
    return {
        "sid": call.call_sid,
        "app": app,
        "stream_connected_at": call.stream_connected_at,
        "start_sent_at": call.start_sent_at,
        "first_media_at": call.first_media_at,
        "stream_closed_at": call.stream_closed_at,
        "closed_by_app": call.closed_by_app,
        "clears": call.clears,
        "barge_spoke_at": getattr(call, "barge_spoke_at", None),
        "frames_sent": call.sent_media_frames,
        "stamps": stamps_of(call),
        "violations": call.violations,
    }


async def sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


async def place_call(plan: Plan, target: dict) -> dict:
    await sleep_until(target["at"])
    call = new_call(target["app"], target["public"])
    error = None
    try:
        await connect(call)
        if not target.get("warmup"):
            await (converse_with_tools if plan.kind == "tools" else converse)(call, plan)
        else:
            await call.wait_for(lambda: call.first_media_at is not None, 20.0, POLL_S)
        hung_up_at = time.monotonic()
        await call.hangup()
    except CALL_FAILURES as exc:
        error = f"{type(exc).__name__}: {str(exc)[:300]}"
        hung_up_at = time.monotonic()
    finally:
        await call.close()
    record = describe(call, target["app"])
    record["hung_up_at"] = hung_up_at
    record["error"] = error
    record["ok"] = error is None and not call.violations and not call.closed_by_app
    return record


async def probe_other_process(plan: Plan, probe: dict) -> dict:
    """A call held by one Daphne process, watched and hung up from the other one: the
    live-transcript fragment and the staff hang-up (through the channel layer)."""
    await sleep_until(probe["at"])
    call = new_call(probe["app"], probe["public"])
    result: dict = {"sid": call.call_sid, "held_by": probe["app"], "asked": probe["via"]}
    cookies = {"sessionid": probe["session"], "csrftoken": probe["csrf"]}
    try:
        await connect(call)
        async with httpx.AsyncClient(base_url=probe["via"], cookies=cookies, timeout=10) as http:
            greeting_seen = False
            deadline = time.monotonic() + plan.greeting_ms / 1000 + 15
            while time.monotonic() < deadline and not greeting_seen:
                page = await http.get(f"/calls/{call.call_sid}/turns")
                result["turns_status"] = page.status_code
                greeting_seen = page.status_code == 200 and "bench bakery" in page.text
                await asyncio.sleep(0.2)
            result["turns_show_greeting"] = greeting_seen
            asked_at = time.monotonic()
            hang_up = await http.post(
                f"/calls/{call.call_sid}/hang-up",
                headers={"X-CSRFToken": probe["csrf"], "Referer": probe["via"] + "/"},
            )
            result["hang_up_status"] = hang_up.status_code
        await call.wait_closed(timeout=10)
        result["closed_by_app"] = call.closed_by_app
        result["hang_up_to_close_ms"] = (call.stream_closed_at - asked_at) * 1000
    except CALL_FAILURES as exc:
        result["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    finally:
        await call.close()
    return result


async def run(spec: dict) -> dict:
    plan = plan_from_json(spec["plan"])
    lag = LoopLag()
    lag.start()
    cpu_before = cpu_seconds()
    jobs = [place_call(plan, target) for target in spec["calls"]]
    if spec.get("probe"):
        jobs.append(probe_other_process(plan, spec["probe"]))
    results = await asyncio.gather(*jobs)
    probe = results.pop() if spec.get("probe") else None
    return {
        "cpu_s": cpu_seconds() - cpu_before,
        "loop_lag": lag.stop(),
        "calls": results,
        "probe": probe,
    }


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with open(args.spec, "rb") as f:
        spec = orjson.loads(f.read())
    # The fakes keep every message they exchange; collecting that growing heap would stall
    # this loop for tens of ms at a time. A run is short and makes few reference cycles.
    gc.disable()
    result = asyncio.run(run(spec))
    with open(args.out, "wb") as f:
        f.write(orjson.dumps(result))


if __name__ == "__main__":
    main()
