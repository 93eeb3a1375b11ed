"""Running an agent's HTTP tool: POST the model's arguments, hand back the reply body."""

import asyncio
import logging

import httpx
import orjson
from django.conf import settings

log = logging.getLogger(__name__)
MAX_TOOL_OUTPUT_CHARS = 8000
# One client per process and event loop: building an AsyncClient (its SSL context above
# all) blocked the loop for 20-130 ms, stalling every call on the process. The SSL context
# is built once at import, before the process serves calls, so even the first tool call
# costs no stall (bench/tool_client.py measures it).
_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
_TLS_CONTEXT = httpx.create_ssl_context()


def shared_http_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None:
        for stale in [other for other in _clients if other.is_closed()]:
            del _clients[stale]
        client = _clients[loop] = httpx.AsyncClient(
            verify=_TLS_CONTEXT,
            timeout=settings.HTTP_TOOL_TIMEOUT_S,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )
    return client


async def run_http_tool(
    client: httpx.AsyncClient, url: str, name: str, arguments: str, call_sid: str
) -> str:
    """Always returns a string for the model: the body on success, a JSON error otherwise,
    so the agent can tell the caller something went wrong instead of going silent."""
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return orjson.dumps({"error": "arguments were not valid JSON"}).decode()
    try:
        response = await client.post(
            url, json={"tool": name, "call_sid": call_sid, "arguments": args}
        )
    except httpx.HTTPError as exc:
        log.warning("call %s: tool %s failed: %r", call_sid, name, exc)
        return orjson.dumps({"error": f"tool unavailable: {type(exc).__name__}"}).decode()
    if response.is_error:
        log.warning("call %s: tool %s answered HTTP %s", call_sid, name, response.status_code)
        return orjson.dumps({"error": f"tool answered HTTP {response.status_code}"}).decode()
    return response.text[:MAX_TOOL_OUTPUT_CHARS]
