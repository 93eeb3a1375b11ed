"""HTTP tools share one httpx client per process (per event loop): building a client per
call blocked the event loop for 20-130 ms, stalling every call on the process."""

import asyncio

from voiceagents.tools import shared_http_client


async def test_tool_requests_reuse_one_client():
    first = shared_http_client()
    assert shared_http_client() is first


def test_each_event_loop_gets_its_own_client():
    clients = [asyncio.run(_client()) for _ in range(2)]
    assert clients[0] is not clients[1]


async def _client():
    return shared_http_client()
