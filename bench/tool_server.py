"""The HTTP tool the tool-heavy plan's agent calls (`--plan tools`): a threaded loopback
server in the benchmark's own process, answering the order lookup at once, or after the
plan's `slow_tool_ms` for the slow order, and counting what it answered per call."""

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from bench.scenario import SLOW_ORDER


class BenchToolServer:
    def __init__(self, slow_ms: int) -> None:
        self.answered: Counter[str] = Counter()  # requests answered, by call sid
        self.bad_requests: list[str] = []
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    request = orjson.loads(body)  # what voiceagents/tools.py posts
                    call_sid, order = request["call_sid"], str(request["arguments"]["order"])
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    with lock:
                        owner.bad_requests.append(body[:200].decode(errors="replace"))
                    self.send_error(400)
                    return
                if order == SLOW_ORDER:
                    time.sleep(slow_ms / 1000)
                reply = orjson.dumps({"order": order, "status": "on its way"})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
                with lock:
                    owner.answered[call_sid] += 1

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/orders/lookup"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
