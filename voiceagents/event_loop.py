"""The web process's event loop: uvloop when it is installed, else asyncio's own.

Daphne makes its event loop when `daphne.server` is first imported (Twisted's asyncio
reactor runs on it), so the policy must be in place before that import:
`voiceagents.web_server.main()` calls `install()` first thing. `EVENT_LOOP=asyncio` keeps the
standard loop (read from the environment: Django's settings are not loaded yet).
"""

import asyncio
import logging
import os

logger = logging.getLogger(__name__)


def install() -> str:
    """Use uvloop's policy for every loop made from now on; returns the loop chosen."""
    wanted = os.environ.get("EVENT_LOOP", "uvloop").strip().lower() or "uvloop"
    if wanted not in ("uvloop", "asyncio"):
        raise SystemExit(f"EVENT_LOOP={wanted!r}: choose uvloop or asyncio")
    if wanted == "asyncio":
        asyncio.set_event_loop_policy(None)  # asyncio's default
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        logger.warning("uvloop is not installed: the standard asyncio event loop runs")
        asyncio.set_event_loop_policy(None)
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
