"""A small hostile HTTP server on loopback, for the delivery tests that the emulator cannot play.

Each request gets the next scripted answer (the last one repeats): a status with a body, an
HTML page with 200, a body trickled one byte at a time. The server records what it received,
so a test can say exactly how many requests were made and where.

    with HostileServer(answer(200), answer(404)) as server:
        client = CapiClient(server.url, "px", KEY)
"""
from __future__ import annotations

import dataclasses
import http.server
import ssl
import threading
import time
from collections.abc import Callable

Answer = Callable[["_Handler"], None]


@dataclasses.dataclass(frozen=True)
class Received:
    path: str            # the request target as sent: "/v1/events?pid=px" (absolute via a proxy)
    headers: dict[str, str]
    body: bytes


def answer(status: int, body: bytes = b'{"ok":true}', headers: dict[str, str] | None = None,
           content_type: str = "application/json") -> Answer:
    """A complete answer with this status, body and headers."""
    def write(handler: _Handler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(body)
    return write


def trickle(every_s: float, length: int = 1000, status: int = 200) -> Answer:
    """Headers at once, then a `length`-byte body one byte every `every_s` seconds."""
    def write(handler: _Handler) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(length))
        handler.end_headers()
        handler.wfile.flush()
        for _ in range(length):
            if handler.server.closing.wait(every_s):
                return
            handler.wfile.write(b" ")
            handler.wfile.flush()
    return write


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.record(Received(self.path, dict(self.headers), body))
        try:
            self.server.next_answer()(self)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True   # the client hung up: exactly what some tests want

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, answers: tuple[Answer, ...], tls: ssl.SSLContext | None):
        super().__init__(("127.0.0.1", 0), _Handler)
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.closing = threading.Event()
        self._answers = list(answers)
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.received_at: list[float] = []

    def record(self, request: Received) -> None:
        with self._lock:
            self.received.append(request)
            self.received_at.append(time.monotonic())

    def next_answer(self) -> Answer:
        with self._lock:
            return self._answers.pop(0) if len(self._answers) > 1 else self._answers[0]


class HostileServer:
    def __init__(self, *answers: Answer, tls: ssl.SSLContext | None = None):
        self._scheme = "https" if tls is not None else "http"
        self._server = _Server(answers or (answer(200),), tls)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.origin}/v1/events"

    @property
    def origin(self) -> str:
        return f"{self._scheme}://127.0.0.1:{self._server.server_address[1]}"

    @property
    def received(self) -> list[Received]:
        return list(self._server.received)

    @property
    def received_at(self) -> list[float]:
        """time.monotonic() of each request's arrival."""
        return list(self._server.received_at)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
