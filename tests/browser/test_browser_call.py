"""Talking to an agent in the browser: Chromium's fake microphone (a WAV file: silence,
then a second of "speech", then silence) streams to the app over the test-call socket,
the fake Realtime server hears it in `audio/pcm` at 24 kHz, answers, the page plays the
answer and echoes its marks, the live transcript appears, and the call is stored with
direction `browser`."""

import wave

import numpy as np
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission
from playwright.async_api import Page, expect
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from calls.models import Call
from tests.browser.conftest import log_in, screenshot
from tests.fakes.realtime_server import Reply
from tests.integration.conftest import load_call, script, wait_for_end
from tests.live import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
MICROPHONE_WAV = ROOT / "var" / "test-microphone.wav"


def write_microphone_wav() -> None:
    rate = 48000
    t = np.arange(rate) / rate
    speech = (0.3 * np.sin(2 * np.pi * 300 * t) * 32767).astype("<i2")
    quiet = np.zeros(rate, dtype="<i2")
    with wave.open(str(MICROPHONE_WAV), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.concatenate([quiet, quiet, speech, quiet, quiet, quiet]).tobytes())


@pytest.fixture
def chromium_args() -> list[str]:
    MICROPHONE_WAV.parent.mkdir(exist_ok=True)
    write_microphone_wav()
    return [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={MICROPHONE_WAV}",
        "--autoplay-policy=no-user-gesture-required",
    ]


async def test_staff_talk_to_an_agent_in_the_browser(page: Page, staff_user, agent, realtime):
    realtime.script_for_next_connection = script(
        replies=[
            Reply(text="Hello from the bakery.", audio_ms=600),
            Reply(text="We open at seven.", audio_ms=600),
        ],
        caller_transcripts=["When do you open?"],
    )
    await log_in(page, f"/agents/{agent.pk}/")

    await page.click("#test-call >> text=Test call")
    await expect(page.locator("#test-call .status-line")).to_contain_text("Connected")
    transcript = page.locator("#test-call .live-transcript")
    await expect(transcript).to_contain_text("Hello from the bakery.", timeout=15_000)
    await expect(transcript).to_contain_text("When do you open?", timeout=20_000)
    await expect(transcript).to_contain_text("We open at seven.", timeout=15_000)
    await screenshot(page, "console-test-call")
    await page.click("#test-call >> text=Hang up")
    await expect(page.locator("#test-call .status-line")).to_contain_text("You hung up")

    sid = await page.locator("#test-call").get_attribute("data-call-sid")
    stored = await wait_for_end(sid)
    _, turns = await load_call(sid)
    assert (stored.direction, stored.from_number) == ("browser", "browser:reviewer")
    assert [t.speaker for t in turns][:3] == ["agent", "caller", "agent"]
    session = realtime.test_sessions()[0]
    config = session.received[0]["session"]["audio"]
    assert config["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert config["output"]["format"] == {"type": "audio/pcm", "rate": 24000}
    # The page played the agent's audio and echoed its marks, as Twilio does: the
    # greeting was heard to the end, not cut.
    assert not turns[0].interrupted


@database_sync_to_async
def staff_without_place_call(user) -> None:
    user.is_superuser = False
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_agent"))


async def test_the_test_call_is_refused_without_the_permission(page: Page, staff_user, agent):
    await staff_without_place_call(staff_user)
    await log_in(page, f"/agents/{agent.pk}/")

    assert await page.locator("#test-call").count() == 0
    # The socket itself, with this staff member's session (outside the page: a refused
    # handshake is a console error there).
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in await page.context.cookies())
    base = page.url.split("/agents/")[0]
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            base.replace("http", "ws", 1) + f"/browser/call/{agent.pk}",
            additional_headers={"Cookie": cookies, "Origin": base},
        ):
            pass
    assert refused.value.response.status_code == 403
    assert not await database_sync_to_async(Call.objects.filter(direction="browser").exists)()
