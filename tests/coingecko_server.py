"""A loopback HTTP server that replays recorded CoinGecko answers, for the client tests.

Routes map a path under `/api/v3` to a list of replies served in order; the last reply repeats.
Every request is recorded (path, query, headers) so tests can check what the client sent.
It listens on 127.0.0.1 only, on a free port.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

API_PREFIX = "/api/v3"

CLOUDFLARE_429_HTML = b"""<!DOCTYPE html>
<html lang="en-US"><head><title>Access denied | api.coingecko.com used Cloudflare to restrict access</title></head>
<body><div id="cf-wrapper"><h1><span>Error</span><span>1015</span></h1>
<h2>You are being rate limited</h2>
<p>The owner of this website (api.coingecko.com) has banned you temporarily from accessing this website.</p>
</div></body></html>
"""


@dataclass
class Reply:
    """One canned answer."""

    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False  # never answer while the server runs (time-out tests: no race with the client's timer)
    content_type: str = "application/json"


def file_reply(path: Path, status: int = 200, **kwargs) -> Reply:
    """A reply whose body is a recorded fixture file, read in place."""
    return Reply(status=status, body=path.read_bytes(), **kwargs)


def json_reply(obj, status: int = 200, **kwargs) -> Reply:
    return Reply(status=status, body=json.dumps(obj).encode(), **kwargs)


def html_reply(body: bytes, status: int, **kwargs) -> Reply:
    return Reply(status=status, body=body, content_type="text/html; charset=UTF-8", **kwargs)


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class ReplayServer:
    """Serve canned replies on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                parts = urlsplit(self.path)
                path = parts.path[len(API_PREFIX):] if parts.path.startswith(API_PREFIX) else parts.path
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                with server._lock:
                    server.requests.append(Seen(path, query, {k.lower(): v for k, v in self.headers.items()}))
                    queue = server.routes.get(path)
                    reply = (queue.pop(0) if len(queue) > 1 else queue[0]) if queue else None
                if reply is None:
                    reply = json_reply({"error": f"no route for {path}"}, status=404)
                if reply.hang:
                    server._released.wait()  # set when the server stops: the client has long given up
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", reply.content_type)
                    self.send_header("Content-Length", str(len(reply.body)))
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (time-out tests)

            def log_message(self, *args) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                pass  # a client that timed out closed the socket: nothing to report

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="coingecko-replay", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{API_PREFIX}"

    def add(self, path: str, *replies: Reply) -> ReplayServer:
        """Serve `replies` in order on `path` (under /api/v3); the last one repeats."""
        with self._lock:
            self.routes[path] = list(replies)
        return self

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]

    def __enter__(self) -> ReplayServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._released.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
