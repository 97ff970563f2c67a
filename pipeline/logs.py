"""Console logging for the command line: our lines readable, Beam's worker chatter filtered.

Under DirectRunner's multi_processing mode, worker log records reach the launcher as one line
of protobuf text ("Worker: severity: INFO timestamp {...} message: "..." log_location: ...").
This filter turns ours back into plain lines ("worker: progress ...") and drops Beam's own
INFO-level worker noise and two known harmless warnings.
"""
from __future__ import annotations

import ast
import logging
import re

WORKER_LOGGER = "apache_beam.runners.portability.local_job_service"
FILE_SINK_LOGGER = "apache_beam.io.filebasedsink"
_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')
_LOCATION = re.compile(r'log_location: "((?:[^"\\]|\\.)*)"')
_OUR_PACKAGES = ("/pipeline/", "/transforms/", "/connectors/")
_HARMLESS = ("No semi_persistent_directory found", "Discarding unparseable args",
             "No shards found to finalize")   # a step without dead letters writes no file


# A refused key stops the run: the client logs one line, the command line prints the cause, and
# Beam would add a traceback per bundle that was running (hundreds of lines).
AUTH_FAILED = "Authentication failed ("   # how connectors.capi_client words it (401 or 403)
_RESTATED_AUTH_ERROR = f"AuthenticationError: {AUTH_FAILED}"


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
        if not ours and _RESTATED_AUTH_ERROR in body:
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


class BeamAuthErrorFilter(logging.Filter):
    """Drops Beam's own records of a refused key (a traceback each) when it runs in-process."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("apache_beam.") and not str(record.msg).startswith(
            "worker: ") and AUTH_FAILED in record.getMessage())


class WithoutAuthTracebacks:
    """A text stream that drops the tracebacks Beam's SDK harness prints for a refused key.

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
        if (text.startswith("Traceback") and _RESTATED_AUTH_ERROR in text) or \
                (dropped and text == "\n"):
            self._dropped = text != "\n"
            return len(text)
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
