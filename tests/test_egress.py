"""Where agent tools may send requests: not to loopback, private, link-local, multicast,
reserved or unspecified addresses unless allowed; checked when saved and after DNS
resolution at call time, and the request goes to the address that was checked."""

import socket

import pytest
from django.core.exceptions import ValidationError

from tests.test_tool_requests import ReplyServer, call_tool
from voiceagents import egress
from voiceagents.models import Tool


@pytest.fixture
def nothing_allowed(settings):
    settings.TOOL_EGRESS_ALLOW = []
    settings.TOOL_ALLOW_HTTP = True


@pytest.mark.parametrize(
    ("ip", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
    ],
)
def test_inner_addresses_are_refused(nothing_allowed, ip, kind):
    assert f"is {kind}, not public" in egress.address_problem(ip)


def test_public_and_allowed_addresses_pass(settings):
    settings.TOOL_EGRESS_ALLOW = ["10.0.5.0/24"]
    assert egress.address_problem("93.184.216.34") is None
    assert egress.address_problem("10.0.5.7") is None
    assert egress.address_problem("10.0.6.7") is not None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/x", "http://169.254.169.254/latest/meta-data", "http://[::1]/"]
)
def test_a_tool_aimed_inside_is_refused_when_saved(nothing_allowed, url):
    tool = Tool(name="lookup", description="Look up.", url=url)
    with pytest.raises(ValidationError) as refused:
        tool.full_clean()
    assert "agent tools may not reach it" in str(refused.value.message_dict["url"])


@pytest.mark.django_db
def test_plain_http_is_refused_unless_allowed(settings):
    settings.TOOL_ALLOW_HTTP = False
    tool = Tool(name="lookup", description="Look up.", url="http://tools.invalid/x")
    with pytest.raises(ValidationError) as refused:
        tool.full_clean()
    assert "Use an https:// URL" in str(refused.value.message_dict["url"])


def resolving(monkeypatch, name: str, ip: str) -> None:
    """DNS for one name, at call time (the event loop's resolver)."""
    import asyncio

    real = asyncio.BaseEventLoop.getaddrinfo

    async def getaddrinfo(self, host, port, *args, **kwargs):
        if host == name:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return await real(self, host, port, *args, **kwargs)

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


async def call_tool_named(monkeypatch, name: str, ip: str) -> tuple[dict, list[str]]:
    """Call a loopback tool server by a name that resolves to `ip` at call time: the
    tool's output, and the Host headers the server saw."""
    server = ReplyServer("ok")
    try:
        resolving(monkeypatch, name, ip)
        port_and_path = server.url.rsplit(":", 1)[1]
        output, _ = await call_tool(f"http://{name}:{port_and_path}")
    finally:
        server.close()
    return output, server.hosts


async def test_a_name_that_now_resolves_inside_is_refused_at_call_time(
    nothing_allowed, monkeypatch
):
    """DNS rebinding: whatever the name resolved to when the tool was saved, the address
    it has now is what is checked."""
    output, _ = await call_tool_named(monkeypatch, "tools.rebind.test", "127.0.0.1")
    assert "127.0.0.1 is loopback, not public" in output["error"]


async def test_the_request_goes_to_the_checked_address_under_its_name(settings, monkeypatch):
    settings.TOOL_EGRESS_ALLOW = ["127.0.0.1"]
    output, hosts = await call_tool_named(monkeypatch, "tools.internal.test", "127.0.0.1")
    assert output == {"status": "shipped"}
    assert [host.split(":")[0] for host in hosts] == ["tools.internal.test"]
