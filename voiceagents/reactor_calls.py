"""How Twisted's asyncio reactor calls a socket's handler when the socket is readable or
writable: without building a log context around every call.

The reactor registers each socket with the event loop through
`twisted.python.log.callWithLogger`, which on every read asks the socket for its log
prefix, copies a context dict with it and pushes it on a per-thread stack, only to label
events of Twisted's legacy log with a "system" field. Under load that wrapping was 4-5 %
of the web process (one read per 20 ms media frame per call). Daphne discards Twisted's
log (verbosity 1, the default), or formats it without that field (`-v 2`), so the label
is never seen. `install()` swaps the module attribute the reactor reads when a socket is
added; a failure that escapes the handler is still logged, as callWithLogger logs it.
"""

from twisted.python import log


def call_handler(selectable, handler, *args, **kwargs):
    try:
        return handler(*args, **kwargs)
    except KeyboardInterrupt:
        raise
    except BaseException:
        log.err(None, f"Unhandled error in the handler of {selectable!r}")


def install() -> None:
    from twisted.internet import asyncioreactor

    asyncioreactor.callWithLogger = call_handler
