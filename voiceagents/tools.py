"""Running an agent's HTTP tool: POST the model's arguments, signed (voiceagents/signing.py)
and with the tool's stored headers, and hand back the reply body."""

import asyncio
import contextlib
import logging
from urllib.parse import urlencode

import httpx
import orjson
from django.conf import settings

from voiceagents import egress
from voiceagents.signing import signature_headers

log = logging.getLogger(__name__)
MAX_TOOL_OUTPUT_CHARS = 8000
# One client per process and event loop: building an AsyncClient (its SSL context above
# all) blocked the loop for 20-130 ms, stalling every call on the process. The SSL context
# is built once at import, before the process serves calls, so even the first tool call
# costs no stall (bench/tool_client.py measures it).
_clients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
_TLS_CONTEXT = httpx.create_ssl_context()
# Headers the app sets on a tool request itself: a tool's stored header never replaces one.
APP_SET_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "x-voiceagents-timestamp",
        "x-voiceagents-signature",
    }
)


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
    client: httpx.AsyncClient,
    url: str,
    name: str,
    arguments: str,
    call_sid: str,
    *,
    headers: tuple[tuple[str, str], ...] = (),
    signing_secret: str = "",
    method: str = "POST",
    timeout_s: float | None = None,
) -> str:
    """Always returns a string for the model: the body on success, a JSON error otherwise,
    so the agent can tell the caller something went wrong instead of going silent.

    The reply is read as a stream up to HTTP_TOOL_MAX_REPLY_BYTES, all of it within one
    deadline of HTTP_TOOL_TIMEOUT_S: httpx's timeouts are per read, so a reply trickling a
    byte at a time would otherwise keep the caller waiting far past it."""
    try:
        args = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        return tool_error("arguments were not valid JSON")
    deadline_s = timeout_s or settings.HTTP_TOOL_TIMEOUT_S
    max_bytes = settings.HTTP_TOOL_MAX_REPLY_BYTES
    envelope = {"tool": name, "call_sid": call_sid, "arguments": args}
    query = b""
    if method == "GET":  # the arguments as query parameters; they are what is signed
        body = b""
        query = urlencode(
            {"tool": name, "call_sid": call_sid}
            | {k: v if isinstance(v, str) else orjson.dumps(v).decode() for k, v in args.items()}
        ).encode()
    else:
        body = orjson.dumps(envelope)
    try:
        async with asyncio.timeout(deadline_s):
            address, problem = await egress.checked_address(url)
            if problem is not None:
                log.warning("call %s: tool %s refused: %s", call_sid, name, problem)
                return tool_error(f"tool not reachable: {problem}")
            pinned = httpx.URL(url)
            target = pinned.copy_with(host=address)  # the address just checked, not a new lookup
            if query:
                target = target.copy_with(query=query)
            signed = query or body
            request = client.build_request(
                method,
                target,
                content=body or None,
                headers=[
                    *((k, v) for k, v in headers if k.lower() not in APP_SET_HEADERS),
                    ("Host", pinned.netloc.decode("ascii")),
                    *((("Content-Type", "application/json"),) if body else ()),
                    *(signature_headers(signing_secret, signed).items() if signing_secret else ()),
                ],
                extensions={"sni_hostname": pinned.host},
            )
            async with contextlib.aclosing(await client.send(request, stream=True)) as response:
                if response.is_error:
                    log.warning(
                        "call %s: tool %s answered HTTP %s", call_sid, name, response.status_code
                    )
                    return tool_error(f"tool answered HTTP {response.status_code}")
                reply = bytearray()
                async for chunk in response.aiter_bytes():
                    reply += chunk
                    if len(reply) > max_bytes:
                        log.warning(
                            "call %s: tool %s replied over %d bytes", call_sid, name, max_bytes
                        )
                        return tool_error(f"tool reply larger than {max_bytes} bytes")
    except TimeoutError:
        log.warning("call %s: tool %s took over %g s", call_sid, name, deadline_s)
        return tool_error(f"tool did not answer within {deadline_s:g} s")
    except httpx.HTTPError as exc:
        log.warning("call %s: tool %s failed: %r", call_sid, name, exc)
        return tool_error(f"tool unavailable: {type(exc).__name__}")
    return reply.decode("utf-8", errors="replace")[:MAX_TOOL_OUTPUT_CHARS]


def tool_error(message: str) -> str:
    return orjson.dumps({"error": message}).decode()
