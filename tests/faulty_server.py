"""A real HTTP server on 127.0.0.1 that misbehaves on request, for fault tests (stops by itself)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# A behaviour takes the request count and the handler, and writes a response.
Behaviour = Callable[[int, BaseHTTPRequestHandler], None]


def send_json(handler: BaseHTTPRequestHandler, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(raw)))
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.end_headers()
    handler.wfile.write(raw)


@contextmanager
def faulty_server(behaviour: Behaviour) -> Iterator[dict[str, Any]]:
    """Serve ``behaviour`` on 127.0.0.1 (a free port); yields {"url", "requests", "paths"}."""
    state: dict[str, Any] = {"requests": 0, "paths": []}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            state["requests"] += 1
            state["paths"].append(self.path)
            behaviour(state["requests"], self)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def hang(seconds: float) -> Behaviour:
    def behaviour(_n: int, handler: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)

    return behaviour
