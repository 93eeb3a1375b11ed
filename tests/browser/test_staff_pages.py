"""The staff pages as a person uses them in Chromium: logging in, setting up an agent and
its number in the admin, following a live call and ending it."""

import re
import secrets

import pytest
from channels.db import database_sync_to_async
from playwright.async_api import Page, expect

from calls.models import Call, PhoneNumber
from tests.browser.conftest import log_in, screenshot
from tests.factories import make_call, make_turn
from tests.fakes.realtime_server import Reply
from tests.integration.conftest import make_caller, script
from voiceagents.models import Agent

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GREETING = "Hello, you have reached the bakery."
QUESTION = "Do you have rye bread today?"
ANSWER = "Yes, fresh from the oven at seven."


async def test_anonymous_visitors_are_sent_to_the_login_page(page: Page):
    sid = "CA" + secrets.token_hex(16)
    for path in ("/calls/", f"/calls/{sid}/", f"/calls/{sid}/turns"):
        await page.goto(path)

        assert page.url.endswith(f"/admin/login/?next={path}")
        await expect(page.locator("#id_username")).to_be_visible()


async def test_staff_set_up_an_agent_and_its_number_in_the_admin(page: Page, staff_user):
    await log_in(page, "/admin/")

    await page.goto("/admin/voiceagents/agent/add/")
    await page.fill("#id_name", "Night line")
    await page.fill("#id_instructions", "You take messages after hours.")
    await page.fill("#id_greeting", "Hello, the bakery is closed; leave a message.")
    await page.fill("#id_speed", "3")
    await page.click("input[name=_save]")

    # A value out of range: the form says what is wrong and keeps what was typed.
    await expect(page.locator(".errornote")).to_be_visible()
    await expect(page.locator(".field-speed .errorlist")).to_contain_text(
        "less than or equal to 1.5"
    )
    await expect(page.locator("#id_name")).to_have_value("Night line")
    await expect(page.locator("#id_instructions")).to_have_value("You take messages after hours.")
    await expect(page.locator("#id_speed")).to_have_value("3")
    await screenshot(page, "admin-agent-error")
    await page.fill("#id_speed", "1.2")
    await page.click("input[name=_save]")
    await expect(page.locator(".messagelist .success")).to_contain_text("Night line")

    await page.goto("/admin/calls/phonenumber/add/")
    await page.fill("#id_number", "555-0100")
    await page.select_option("#id_agent", label="Night line")
    await page.fill("#id_label", "After hours")
    await page.click("input[name=_save]")

    await expect(page.locator(".field-number .errorlist")).to_contain_text("Use E.164")
    await expect(page.locator("#id_number")).to_have_value("555-0100")
    await expect(page.locator("#id_agent option:checked")).to_have_text("Night line")
    await expect(page.locator("#id_label")).to_have_value("After hours")
    await page.fill("#id_number", "+15550003333")
    await page.click("input[name=_save]")
    await expect(page.locator(".messagelist .success")).to_contain_text("+15550003333")

    number = await database_sync_to_async(
        lambda: PhoneNumber.objects.select_related("agent").get(number="+15550003333")
    )()
    assert (number.agent.name, number.label) == ("Night line", "After hours")
    night_line = await database_sync_to_async(Agent.objects.get)(name="Night line")
    assert night_line.speed == 1.2
    assert night_line.greeting == "Hello, the bakery is closed; leave a message."


async def test_staff_follow_a_live_call_and_end_it(
    page: Page, staff_user, agent, realtime, browser_app
):
    realtime.script_for_next_connection = script(
        replies=[Reply(text=GREETING, audio_ms=600), Reply(text=ANSWER, audio_ms=600)],
        caller_transcripts=[QUESTION],
    )
    call = make_caller(browser_app, from_number="+15550007777")
    assert (await call.dial()).status_code == 200
    await call.connect_stream()
    await call.wait_for(lambda: len(call.heard_audio) >= 600 * 8, timeout=10)

    # The call is on the list while it runs.
    await log_in(page, "/calls/")
    row = page.locator("table.calls tbody tr", has_text="+15550007777")
    await expect(row).to_contain_text("In progress")
    await expect(row).to_contain_text("Front desk")
    await screenshot(page, "call-list-live")
    await row.get_by_role("link").click()
    await page.wait_for_url(f"**/calls/{call.call_sid}/")

    # The transcript grows without a reload while the caller and the agent talk.
    turns = page.locator("#turns")
    await expect(turns).to_contain_text(GREETING)
    await page.evaluate("window.sameDocument = true")
    await call.speak_and_wait(500)
    await expect(turns.locator(".turn-caller")).to_contain_text(QUESTION)
    await expect(turns.locator(".turn-agent").last).to_contain_text(ANSWER)
    assert await page.evaluate("window.sameDocument") is True
    await expect(page.locator("#call-status")).to_have_text("In progress")
    await screenshot(page, "call-detail-live")

    # The hang-up button ends the call; the page then shows why it ended.
    await page.get_by_role("button", name="End call").click()
    await call.wait_closed(timeout=15)
    assert call.closed_by_app
    assert call.violations == []
    await expect(page.get_by_text("Ended by staff")).to_be_visible()
    await expect(page.locator("#call-status")).to_have_text("Completed")
    await expect(page.get_by_role("button", name="End call")).to_have_count(0)
    await expect(page.locator(".turn")).to_have_count(3)
    await screenshot(page, "call-detail-ended")

    stored = await database_sync_to_async(Call.objects.get)(sid=call.call_sid)
    assert stored.completion_reason == "staff_hangup"

    await page.goto("/calls/")
    await expect(row).to_contain_text(re.compile(r"Ended by staff"))


async def test_a_live_page_whose_session_ends_goes_to_the_login_page(page: Page, staff_user):
    sid = "CA" + secrets.token_hex(16)

    @database_sync_to_async
    def call_in_progress() -> None:
        call = make_call(sid, status=Call.Status.IN_PROGRESS)
        make_turn(call, 0, GREETING)

    await call_in_progress()
    await log_in(page, f"/calls/{sid}/")
    await expect(page.locator("#turns")).to_contain_text(GREETING)

    # Signed out elsewhere: the next poll must not paint the login form into the transcript.
    await page.context.clear_cookies()
    await page.wait_for_url(f"**/admin/login/?next=/calls/{sid}/")
    await expect(page.locator("#turns")).to_have_count(0)
