"""Barge-in in the browser test call: the fake microphone speaks (a second of tone every
three seconds) while the agent's long greeting plays; the bridge sends `clear`, the page
drops the audio it had queued and echoes its marks at once, as Twilio does, and the
greeting is truncated at what was played."""

import wave

import numpy as np
import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import log_in
from tests.fakes.realtime_server import Reply
from tests.integration.conftest import load_call, script, wait_for_end
from tests.live import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MICROPHONE_WAV = ROOT / "var" / "test-microphone-barge-in.wav"


@pytest.fixture
def chromium_args() -> list[str]:
    rate = 48000
    t = np.arange(rate) / rate
    speech = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2")
    quiet = np.zeros(2 * rate, dtype="<i2")
    MICROPHONE_WAV.parent.mkdir(exist_ok=True)
    with wave.open(str(MICROPHONE_WAV), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.concatenate([quiet, speech]).tobytes())
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={MICROPHONE_WAV}",
        "--autoplay-policy=no-user-gesture-required",
    ]


async def test_talking_over_the_agent_cuts_it_off_at_what_was_played(
    page: Page, staff_user, agent, realtime
):
    realtime.script_for_next_connection = script(
        replies=[Reply(text="Hello and welcome to the bakery, " * 6, audio_ms=6000)],
        caller_transcripts=["Wait."],
        audio_speed=1.0,  # generated in real time: most of it still to come at barge-in
    )
    await log_in(page, f"/agents/{agent.pk}/")
    await page.click("#test-call >> text=Test call")
    await expect(page.locator("#test-call .status-line")).to_contain_text("Connected")
    await realtime.wait_for(lambda: realtime.test_sessions(), timeout=10)
    session = realtime.test_sessions()[0]
    await realtime.wait_for(lambda: session.truncations, timeout=15)
    await page.click("#test-call >> text=Hang up")

    sid = await page.locator("#test-call").get_attribute("data-call-sid")
    await wait_for_end(sid)
    _, turns = await load_call(sid)
    truncation = session.truncations[0]
    assert 0 < truncation["audio_end_ms"] < 6000
    assert turns[0].speaker == "agent" and turns[0].interrupted
    assert realtime.violations == []
