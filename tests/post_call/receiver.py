"""A completion-webhook receiver on loopback that verifies our signature the way a
customer's server would, and can be told to fail."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from voiceagents.signing import verify


class WebhookReceiver:
    def __init__(self, secret: str, *, fail_first: int = 0, fail_status: int = 503) -> None:
        self.secret = secret
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.received: list[dict] = []  # every request: headers, body, verified, answered
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                verified = verify(
                    receiver.secret,
                    body,
                    self.headers.get("X-Voiceagents-Timestamp", ""),
                    self.headers.get("X-Voiceagents-Signature", ""),
                )
                status = 200 if verified else 400
                if verified and receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    status = receiver.fail_status
                receiver.received.append(
                    {
                        "headers": dict(self.headers),
                        "body": body,
                        "json": orjson.loads(body),
                        "verified": verified,
                        "status": status,
                    }
                )
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/calls"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
