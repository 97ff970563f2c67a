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
