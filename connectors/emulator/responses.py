"""What the emulator answers: a status, a JSON payload, headers, or no answer at all."""
from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class Response:
    status: int
    payload: Any = None
    headers: tuple[tuple[str, str], ...] = ()
    send: bool = True  # False: close the connection without answering


def error(status: int, message: str, **extra: Any) -> Response:
    """The API's error shape: {"error": {"message": ..., **extra}}."""
    return Response(status, {"error": {"message": message, **extra}})
