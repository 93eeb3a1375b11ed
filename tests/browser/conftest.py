"""A real headless Chromium (Debian's, driven by Playwright; no browser is ever downloaded)
against the real app in a Daphne subprocess, with the fake OpenAI and Twilio."""

from collections.abc import AsyncIterator

import pytest
from django.contrib.auth import get_user_model
from playwright.async_api import Page, async_playwright

from tests.fakes.twilio_api import FakeTwilioApi
from tests.integration.conftest import (  # noqa: F401 - fixtures shared with the integration tests
    agent,
    background_loop,
    realtime,
    realtime_server,
    start_app,
)
from tests.live import (
    ROOT,
    TEST_ACCOUNT_SID,
    TEST_AUTH_TOKEN,
    DaphneProcess,
    chromium_path,
    require_services,
)

STAFF_USERNAME = "reviewer"
STAFF_PASSWORD = "correct horse battery staple"
SCREENSHOTS = ROOT / "var" / "screenshots"


def pytest_runtest_setup(item: pytest.Item) -> None:
    require_services(item)


@pytest.fixture(scope="session")
def twilio_api():
    """The fake Twilio REST API the browser app places its calls through."""
    api = FakeTwilioApi(TEST_ACCOUNT_SID, TEST_AUTH_TOKEN)
    api.start()
    yield api
    api.stop()


@pytest.fixture(scope="session")
def browser_app(django_db_setup, django_db_blocker, realtime_server, twilio_api) -> DaphneProcess:  # noqa: F811
    app = start_app(
        {
            "OPENAI_BASE_URL": realtime_server.base_url,
            "TWILIO_API_BASE_URL": twilio_api.base_url,
            # Each test logs in through the form; other runs may share this Redis.
            "RATE_LIMIT_LOGIN_PER_MIN": "0",
            "TOOL_EGRESS_ALLOW": "127.0.0.0/8",  # tools the tests make point at loopback
        },
        "browser",
    )
    yield app
    app.stop()


@pytest.fixture
def staff_user(transactional_db):
    return get_user_model().objects.create_user(
        STAFF_USERNAME, password=STAFF_PASSWORD, is_staff=True, is_superuser=True
    )


@pytest.fixture
def chromium_args() -> list[str]:
    """Extra command-line switches for Chromium; a test module may override this."""
    return []


@pytest.fixture
async def page(browser_app, chromium_args) -> AsyncIterator[Page]:
    """A fresh browser page on the app; any JavaScript error on it fails the test."""
    errors: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(),
            # Root in a container has no user namespaces for Chromium's sandbox.
            args=["--no-sandbox", *chromium_args],
        )
        context = await browser.new_context(
            base_url=browser_app.base_url, viewport={"width": 1280, "height": 800}
        )
        context.set_default_timeout(15_000)
        page = await context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        # The browser asks for /favicon.ico on its own; every other failed request counts.
        page.on(
            "response",
            lambda response: (
                errors.append(f"{response.status} {response.url}")
                if response.status >= 400 and not response.url.endswith("/favicon.ico")
                else None
            ),
        )
        yield page
        await browser.close()
    errors = [e for e in errors if not e.startswith("Failed to load resource")]
    assert errors == [], f"errors on the page: {errors}"


async def log_in(page: Page, next_path: str = "/calls/") -> None:
    """Through the admin's login form, as a person would."""
    await page.goto(f"/admin/login/?next={next_path}")
    await page.fill("#id_username", STAFF_USERNAME)
    await page.fill("#id_password", STAFF_PASSWORD)
    await page.click("input[type=submit]")
    await page.wait_for_url(f"**{next_path}")


async def screenshot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
