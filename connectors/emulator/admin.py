"""The admin endpoints under /_emulator/ (no auth; the emulator listens on loopback only).

GET /_emulator/events[?pid=..], GET /_emulator/stats, GET /_emulator/requests,
GET /_emulator/health, POST /_emulator/faults {"kind", "count", "rate", "retry_after",
"latency_s", "seed"}, POST /_emulator/reject {"ids": [...], "message": .., "status": 400 | 422},
POST /_emulator/latency {"seconds": ..}, POST /_emulator/reset.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from connectors.emulator.responses import Response, error

if TYPE_CHECKING:
    from connectors.emulator.core import Emulator

ADMIN_PREFIX = "/_emulator/"
_OK = Response(200, {"ok": True})


def handle_admin(emulator: Emulator, method: str, path: str, query: str, body: bytes | None
                 ) -> Response:
    """Answer one admin request through the emulator's public Python API."""
    action = path[len(ADMIN_PREFIX):]
    try:
        params = json.loads(body) if body else {}
    except ValueError:
        return error(400, "Request body is not valid JSON")
    if not isinstance(params, dict):
        return error(400, "Request body must be a JSON object")
    try:
        if method == "GET" and action == "events":
            pixel_ids = parse_qs(query).get("pid")
            return Response(200, emulator.recorded_events(pixel_ids[0] if pixel_ids else None))
        if method == "GET" and action == "stats":
            stats = emulator.stats
            stats["by_status"] = {str(k): v for k, v in stats["by_status"].items()}
            return Response(200, stats)
        if method == "GET" and action == "requests":
            return Response(200, [list(entry) for entry in emulator.request_log])
        if method == "GET" and action == "health":
            return _OK
        if method == "POST" and action == "faults":
            emulator.inject(str(params.get("kind")), rate=float(params.get("rate", 0.0)),
                            count=int(params.get("count", 0)),
                            retry_after=params.get("retry_after"), seed=params.get("seed"),
                            latency_s=params.get("latency_s"))
            return _OK
        if method == "POST" and action == "reject":
            emulator.reject_event_ids([str(i) for i in params.get("ids", [])],
                                      **{key: params[key] for key in ("message", "status")
                                         if key in params})
            return _OK
        if method == "POST" and action == "latency":
            emulator.set_latency(float(params.get("seconds", 0.0)))
            return _OK
        if method == "POST" and action == "reset":
            emulator.reset()
            return _OK
    except (TypeError, ValueError) as problem:
        return error(400, str(problem))
    return error(404, f"No admin endpoint {method} {path}")
