"""The call review page in Chromium: the recording's player beside the named transcript;
a click on a line seeks the recording there and highlights the line being played."""

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from playwright.async_api import Page, expect

from tests.browser.conftest import log_in, screenshot
from tests.factories import (
    make_agent,
    make_call,
    make_stored_recording,
    make_transcript,
    make_turn,
)
from tests.post_call.synth import dual_wav
from transcripts.models import CallSummary, WebhookDelivery

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LINES = [
    ("agent", "Bakery", 0.5, 3.0, "Hello, you have reached the bakery. How can I help?", 2),
    ("caller", "Maria", 3.5, 6.0, "Hi, this is Maria. When are you open tomorrow?", 1),
    ("agent", "Bakery", 6.5, 10.5, "We open at eight and close at six, every day.", 2),
]


@database_sync_to_async
def reviewed_call() -> str:
    agent = make_agent(name="Bakery")
    call = make_call(
        "CA" + "5" * 32,
        agent=agent,
        answered_at=timezone.now(),
        ended_at=timezone.now(),
        duration_s=12.0,
        recording_requested=True,
        completion_reason="caller_hangup",
        status="completed",
    )
    make_turn(call, 500, LINES[0][4])
    make_turn(call, 3500, LINES[1][4], speaker="caller")
    make_turn(call, 6500, LINES[2][4])
    wav = dual_wav(
        12.0,
        caller=[(3.5, 6.0, 440)],
        agent=[(0.5, 3.0, 660), (6.5, 10.5, 550)],
    )
    recording = make_stored_recording(call, wav, "RE" + "5" * 32, 12.0)
    make_transcript(
        call,
        recording,
        caller_name="Maria",
        cost_usd="0.0012",
        timings={"transcribe": 1.8, "identify": 0.9},
        segments=[
            {"speaker": s, "name": n, "label": s, "start": a, "end": b, "text": t, "channel": c}
            for s, n, a, b, t, c in LINES
        ],
        text="\n".join(f"[00:0{int(a)}] {n}: {t}" for _, n, a, _, t, _ in LINES),
    )
    CallSummary.objects.create(
        call=call,
        source="recording",
        summary="Maria asked when the bakery opens tomorrow; the agent told her eight to six.",
        outcome={"question_answered": True, "topic": "opening hours"},
    )
    WebhookDelivery.objects.create(
        call=call,
        event="call.completed",
        url="https://crm.example.com/h",
        status_code=200,
        ok=True,
        duration_ms=41,
    )
    return call.sid


async def test_clicking_a_line_plays_the_recording_from_there(page: Page, staff_user):
    sid = await reviewed_call()
    await log_in(page, f"/calls/{sid}/")

    player = page.locator("#recording-player")
    await expect(player).to_be_visible()
    await page.wait_for_function("document.getElementById('recording-player').readyState >= 1")
    duration = await player.evaluate("audio => audio.duration")
    assert duration == pytest.approx(12.0, abs=0.05)  # the browser decoded our WAV

    lines = page.locator("#post-call-lines li")
    await expect(lines).to_have_count(3)
    await expect(lines.nth(1).locator(".who")).to_have_text("Maria")
    await lines.nth(1).click()

    await page.wait_for_function(
        "Math.abs(document.getElementById('recording-player').currentTime - 3.5) < 0.5"
    )
    await expect(lines.nth(1)).to_have_class("turn turn-caller playing")
    await expect(lines.nth(0)).not_to_have_class("turn turn-agent playing")

    # The keyboard works too: Enter on the last line jumps there.
    await lines.nth(2).focus()
    await page.keyboard.press("Enter")
    await page.wait_for_function("document.getElementById('recording-player').currentTime >= 6.4")
    await expect(lines.nth(2)).to_have_class("turn turn-agent playing")
    await player.evaluate("audio => audio.pause()")
    await screenshot(page, "call-review")

    await expect(page.locator("#summary")).to_contain_text("Maria asked when the bakery opens")
    await expect(page.locator("#pipeline")).to_contain_text("recording channels")
    await expect(page.locator("#webhook-deliveries")).to_contain_text("HTTP 200")
