"""The HTTP side: a keep-alive request handler that routes to the emulator and writes answers.

The handler knows HTTP only (routes, bodies, Content-Length, closing without an answer); what
to answer is decided by `Emulator.handle_events` and `admin.handle_admin`.
"""
from __future__ import annotations

import json
import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from connectors.emulator.admin import ADMIN_PREFIX, handle_admin
from connectors.emulator.responses import Response, error

if TYPE_CHECKING:
    from connectors.emulator.core import Emulator

logger = logging.getLogger(__name__)

EVENTS_PATH = "/v1/events"


_UNREADABLE = object()


class Server(ThreadingHTTPServer):
    """socketserver prints a traceback to stderr for any error a handler lets through; a client
    that hung up mid-request is not an emulator error, and stderr belongs to the program under
    test (its own output is asserted). Everything else goes to the log, with its traceback."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s left mid-request", client_address)
        else:
            logger.exception("emulator failed on a request from %s", client_address)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"        # keep-alive, so clients' connection pools are exercised
    disable_nagle_algorithm = True       # headers and body go out as separate writes

    def version_string(self) -> str:
        return "capi-emulator"

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator  # type: ignore[attr-defined]

    def setup(self) -> None:
        super().setup()
        self.emulator.track_connection(self.connection)

    def finish(self) -> None:
        self.emulator.forget_connection(self.connection)
        super().finish()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self._dispatch("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def _dispatch(self, method: str) -> None:
        try:
            self._dispatch_unguarded(method)
        except ConnectionError:     # the client hung up (a deadline, a test's abrupt close):
            logger.debug("client left during %s %s", method, self.path)   # nothing to answer
            self.close_connection = True
        except Exception:  # answer like a server would, and keep the traceback in the log
            logger.exception("emulator failed on %s %s", method, self.path)
            self._respond(error(500, "Internal emulator error"), close=True)

    def _dispatch_unguarded(self, method: str) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if body is _UNREADABLE:
            return
        if url.path.startswith(ADMIN_PREFIX):
            response = handle_admin(self.emulator, method, url.path, url.query, body)
        elif url.path == EVENTS_PATH and method == "POST":
            response = self.emulator.handle_events(self.headers.get("Authorization"),
                                                   url.query, body)
        elif url.path == EVENTS_PATH:
            response = error(405, f"Method {method} not allowed; use POST")
        else:
            response = error(404, f"No endpoint {url.path}")
        self._respond(response)

    def _read_body(self) -> bytes | None | object:
        """The body; None when it is larger than the emulator's limit (read and discarded)."""
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            if self.headers.get("Transfer-Encoding"):
                self._respond(error(411, "Content-Length required"), close=True)
                return _UNREADABLE
            return b""
        try:
            length = int(length_header)
        except ValueError:
            length = -1
        if length < 0:
            self._respond(error(400, "Invalid Content-Length"), close=True)
            return _UNREADABLE
        if length > self.emulator.max_body_bytes:
            remaining = length
            while remaining > 0:
                chunk = self.rfile.read(min(remaining, 1 << 20))
                if not chunk:
                    break
                remaining -= len(chunk)
            return None
        return self.rfile.read(length)

    def _respond(self, response: Response, close: bool = False) -> None:
        if not response.send:
            self.close_connection = True   # socketserver closes the socket: no status line
            return
        body = json.dumps(response.payload, separators=(",", ":")).encode()
        self.send_response(response.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in response.headers:
            self.send_header(name, value)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        logger.debug("%s - " + format, self.address_string(), *args)
