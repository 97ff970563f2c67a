"""Console logging for the command line: our lines readable, Beam's worker chatter filtered.

Under DirectRunner's multi_processing mode, worker log records reach the launcher as one line
of protobuf text ("Worker: severity: INFO timestamp {...} message: "..." log_location: ...").
This filter turns ours back into plain lines ("worker: progress ...") and drops Beam's own
INFO-level worker noise and two known harmless warnings.

Every line the console handlers write, and everything written through `WithoutAuthTracebacks`,
goes through `transforms.masking.mask_secrets`: a key-like string never reaches the terminal
or a log collector, whichever library logged it (a Beam warning quoting argv, a traceback).
"""
from __future__ import annotations

import ast
import logging
import re

from transforms.masking import mask_secrets

WORKER_LOGGER = "apache_beam.runners.portability.local_job_service"
FILE_SINK_LOGGER = "apache_beam.io.filebasedsink"
_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_LOCATION = re.compile(r'log_location: "((?:[^"\\]|\\.)*)"')
_OUR_PACKAGES = ("/pipeline/", "/transforms/", "/connectors/")
_HARMLESS = ("No semi_persistent_directory found", "Discarding unparseable args",
             "No shards found to finalize")   # a step without dead letters writes no file


# A refused key or a wrong endpoint stops the run: the client logs one line, the command line
# prints the cause, and Beam would add a traceback per bundle that was running (hundreds of lines).
AUTH_FAILED = "Authentication failed ("   # how connectors.capi_client words it (401 or 403)
WRONG_ENDPOINT = "Wrong endpoint ("       # ... and a 3xx, 404 or 405 (WrongEndpointError)
STOP_MARKERS = (AUTH_FAILED, WRONG_ENDPOINT)
# A source that fails mid-read (connectors.sql_source.SqlReadError) is printed as one line too.
READ_FAILED = "Reading sql:"              # how SqlReadError's message starts
_QUIET_FAILURES = (*STOP_MARKERS, READ_FAILED)
_RESTATED_STOP_ERRORS = (f"AuthenticationError: {AUTH_FAILED}",
                         f"WrongEndpointError: {WRONG_ENDPOINT}",
                         f"SqlReadError: {READ_FAILED}")


def _restates_stop_error(text: str) -> bool:
    return any(restated in text for restated in _RESTATED_STOP_ERRORS)


class WorkerLogFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if not text.startswith("Worker: "):
            return not any(noise in text for noise in _HARMLESS)
        message = _MESSAGE.search(text)
        location = _LOCATION.search(text)
        if message is None:
            return record.levelno >= logging.WARNING
        body = ast.literal_eval(f'"{message.group(1)}"') if "\\" in message.group(1) else message.group(1)
        ours = location is not None and any(p in location.group(1) for p in _OUR_PACKAGES)
        if any(noise in body for noise in _HARMLESS) or (not ours and record.levelno < logging.WARNING):
            return False
        if not ours and _restates_stop_error(body):
            return False    # Beam's tracebacks of it: the client logged it, the CLI prints it
        record.msg, record.args = "worker: %s", (body,)
        return True


def configure_console_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("apache_beam", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    worker = logging.getLogger(WORKER_LOGGER)
    worker.setLevel(logging.INFO)            # lets our workers' progress lines through
    worker.addFilter(WorkerLogFilter())
    logging.getLogger(FILE_SINK_LOGGER).addFilter(WorkerLogFilter())   # the same, run in-process
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, BeamAuthErrorFilter) for f in handler.filters):
            handler.addFilter(BeamAuthErrorFilter())
        if not isinstance(handler.formatter, MaskingFormatter):
            handler.setFormatter(MaskingFormatter(handler.formatter))


class MaskingFormatter(logging.Formatter):
    """Formats as the wrapped formatter does, then masks key-like strings in the whole text
    (message, arguments and traceback alike)."""

    def __init__(self, inner: logging.Formatter | None):
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(self._inner.format(record))


class BeamAuthErrorFilter(logging.Filter):
    """Drops Beam's own records of a refused key, a wrong endpoint or a failed source read (a
    traceback each) when it runs in-process: the command line prints the cause."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("apache_beam.") or str(record.msg).startswith("worker: "):
            return True
        message = record.getMessage()
        return not any(marker in message for marker in _QUIET_FAILURES)


class WithoutAuthTracebacks:
    """A text stream that masks key-like strings and drops the tracebacks Beam's SDK harness
    prints for a refused key.

    The harness prints each failed bundle's traceback straight to stderr (sdk_worker._execute),
    besides logging it; a refused key fails every running bundle at once, so the one line that
    matters (printed by the command line) followed hundreds of traceback lines.
    """

    def __init__(self, stream):
        self._stream = stream
        self._dropped = False

    def write(self, text: str) -> int:
        # print() writes the text, then its "\n" separately: both go
        dropped, self._dropped = self._dropped, False
        if (text.startswith("Traceback") and _restates_stop_error(text)) or \
                (dropped and text == "\n"):
            self._dropped = text != "\n"
            return len(text)
        self._stream.write(mask_secrets(text))
        return len(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
