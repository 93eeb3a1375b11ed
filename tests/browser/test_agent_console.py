"""The console's agent pages in Chromium: create an agent from the form (only the chosen
turn-detection mode's settings shown, a mistake shown next to its field), edit it, and
restore the first version."""

import pytest
from channels.db import database_sync_to_async
from playwright.async_api import Page, expect

from tests.browser.conftest import log_in, screenshot
from voiceagents.models import Agent, Tool

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


async def test_staff_build_an_agent_in_the_console_and_restore_a_version(page: Page, staff_user):
    await log_in(page, "/")
    await page.click("header >> text=Agents")
    await page.click("text=New agent")

    # Server VAD is the default: its settings show, semantic VAD's do not.
    await expect(page.locator("#id_vad_silence_duration_ms")).to_be_visible()
    await expect(page.locator("#id_semantic_eagerness")).to_be_hidden()
    await page.select_option("#id_turn_detection", "semantic_vad")
    await expect(page.locator("#id_semantic_eagerness")).to_be_visible()
    await expect(page.locator("#id_vad_silence_duration_ms")).to_be_hidden()
    await page.select_option("#id_turn_detection", "server_vad")
    await expect(page.locator("table.models tr.chosen")).to_contain_text("gpt-realtime-1.5")
    await expect(page.locator("#id_reasoning_effort")).to_be_hidden()
    await page.select_option("#id_model", "gpt-realtime-2.1")
    await expect(page.locator("#id_reasoning_effort")).to_be_visible()
    await page.select_option("#id_model", "gpt-realtime-1.5")

    await page.fill("#id_name", "Night line")
    await page.fill("#id_greeting", "Hello, the bakery is closed.")
    await page.select_option("#id_voice", "cedar")
    await page.click("text=Create agent")
    # Instructions are required: the form says so next to the field and keeps the rest.
    await expect(page.locator("#field-instructions .error")).to_contain_text("required")
    await expect(page.locator("#id_name")).to_have_value("Night line")
    await screenshot(page, "console-agent-form-error")
    await page.fill("#id_instructions", "You take messages after hours.")
    await page.click("text=Create agent")

    await expect(page.locator("h1")).to_have_text("Night line")
    await expect(page.locator(".message")).to_contain_text("created")
    await expect(page.locator("#webhook-url")).to_contain_text("/twilio/voice")
    await page.click("text=Edit")
    await page.select_option("#id_voice", "marin")
    await page.click("text=Save (a new version)")
    await expect(page.locator(".message")).to_contain_text("version 2")
    await expect(page.locator("#version-2")).to_contain_text("cedar → marin")
    await screenshot(page, "console-agent")

    await page.click("#version-1 >> text=Restore")
    await expect(page.locator(".message")).to_contain_text("Version 1 restored as version 3")
    agent = await database_sync_to_async(Agent.objects.get)(name="Night line")
    assert agent.voice == "cedar"


async def test_the_analytics_page_draws_its_charts(page: Page, staff_user):
    from django.utils import timezone

    from tests.factories import make_agent, make_call

    def seed():
        agent = make_agent(name="Bakery")
        now = timezone.now()
        for n in range(5):
            make_call(f"CA{n:032x}", agent=agent, answered_at=now, duration_s=30.0 + n)
        make_call("CA" + "e" * 32, agent=agent, completion_reason="no_answer")

    await database_sync_to_async(seed)()
    await log_in(page, "/analytics/")

    await expect(page.locator("#fig-calls")).to_contain_text("6 (5 answered")
    drawn = await page.evaluate(
        "() => [Chart.getChart('calls-chart'), Chart.getChart('cost-chart')].every(Boolean)"
    )
    assert drawn  # and the page fixture fails on any console error, a CSP refusal included
    await screenshot(page, "console-analytics")


async def test_the_api_docs_render_from_our_own_static_files(page: Page):
    await page.goto("/api/docs")

    await expect(page.locator(".opblock").first).to_be_visible()
    assert await page.locator(".opblock").count() >= 15  # every operation of the API
    await screenshot(page, "api-docs")


async def test_staff_make_a_tool_from_the_form_and_give_it_to_an_agent(page: Page, staff_user):
    await log_in(page, "/tools/")
    await page.click("text=New tool")
    await page.fill("#id_name", "lookup_order")
    await page.fill("#id_description", "Look up an order by its number.")
    await page.fill("#id_url", "http://127.0.0.1:9/lookup")
    await page.fill("[name=param-0-name]", "order")
    await page.fill("[name=param-0-description]", "The order number")
    await page.check("[name=param-0-required]")
    await page.fill("[name=headers-0-name]", "Authorization")
    await page.fill("[name=headers-0-value]", "Bearer s3cret")
    await page.click("button:text-is('Save')")
    await expect(page.locator(".message")).to_contain_text("lookup_order saved")
    await expect(page.locator("[name=headers-0-value]")).to_have_value("")  # never shown back
    await screenshot(page, "console-tool")

    tool = await database_sync_to_async(Tool.objects.get)()
    assert tool.parameters["required"] == ["order"]
    await page.goto("/agents/new")
    await page.fill("#id_name", "Orders")
    await page.fill("#id_instructions", "You help callers with their orders.")
    await page.check("#field-tools >> text=lookup_order")
    await page.click("text=Create agent")
    await expect(page.locator("h1")).to_have_text("Orders")
    await expect(page.locator(".call-facts")).to_contain_text("lookup_order")


async def test_staff_hear_a_voice_and_call_someone_from_the_agent_page(
    page: Page, staff_user, agent, twilio_api
):
    twilio_api.numbers = {"+15550002222"}  # the agent's number (integration conftest)
    await log_in(page, f"/agents/{agent.pk}/edit")

    # The preview of the chosen voice: made through the fake Realtime server, playable.
    await page.select_option("#id_voice", "cedar")
    status = await page.evaluate(
        "async () => (await fetch(document.getElementById('voice-preview').src)).status"
    )
    assert status == 200

    await page.goto(f"/agents/{agent.pk}/")
    await page.fill("#id_to", "+15557654321")
    await page.fill("#id_name", "Maria")
    await page.click("button:text-is('Call')")

    await expect(page.locator(".message")).to_contain_text("Calling +15557654321")
    created = twilio_api.created_calls[-1]
    assert (created["To"], created["From"]) == ("+15557654321", "+15550002222")
    await screenshot(page, "console-outbound-call")
