"""HTTP tools share one httpx client per process (per event loop): building a client per
call blocked the event loop for 20-130 ms, stalling every call on the process."""

import asyncio
import ssl

from voiceagents.tools import shared_http_client


async def test_tool_requests_reuse_one_client():
    first = shared_http_client()
    assert shared_http_client() is first


def test_each_event_loop_gets_its_own_client():
    clients = [asyncio.run(_client()) for _ in range(2)]
    assert clients[0] is not clients[1]


async def _client():
    return shared_http_client()


def test_a_new_event_loops_client_loads_no_certificates(monkeypatch):
    """Loading the CA bundle is what stalls the loop (bench/tool_client.py: ~26 ms); it
    happens once at import, so even a process's first tool call does not pay it."""

    def loading_certificates(*args, **kwargs):
        raise AssertionError("the CA bundle was loaded while serving a call")

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", loading_certificates)
    assert asyncio.run(_client()) is not None
