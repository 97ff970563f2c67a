import logging

import pytest

from pipeline.logs import WorkerLogFilter


def record(text: str, level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("apache_beam.runners.portability.local_job_service", level, __file__, 1,
                             "Worker: %s", (text,), None)


def worker_line(message: str, location: str, severity: str = "INFO") -> str:
    return (f'severity: {severity} timestamp {{   seconds: 1795666581 }} message: "{message}" '
            f'log_location: "{location}" thread: "MainThread" ')


def test_our_worker_lines_become_plain_lines():
    rec = record(worker_line("progress (worker 7): rows read 3000", "/src/pipeline/steps.py:55"))
    assert WorkerLogFilter().filter(rec) is True
    assert rec.getMessage() == "worker: progress (worker 7): rows read 3000"


@pytest.mark.parametrize("text, level", [
    (worker_line("Creating state cache", "/site-packages/apache_beam/runners/worker/sdk_worker.py:1"),
     logging.INFO),
    (worker_line("No semi_persistent_directory found: ...", "/apache_beam/sdk_worker_main.py:4", "WARN"),
     logging.WARNING),
    (worker_line("Discarding unparseable args: [\\'--pixel_id=px\\']", "/apache_beam/options.py:5", "WARN"),
     logging.WARNING),
    (worker_line("No shards found to finalize. num_shards: 0, skipped: 0",
                 "/apache_beam/io/filebasedsink.py:454", "WARN"), logging.WARNING),
])
def test_beam_chatter_is_dropped(text, level):
    assert WorkerLogFilter().filter(record(text, level)) is False


def test_other_warnings_from_workers_are_kept():
    rec = record(worker_line("Deleting 1 existing files", "/apache_beam/io/filebasedsink.py:9", "WARN"),
                 logging.WARNING)
    assert WorkerLogFilter().filter(rec) is True
    assert rec.getMessage() == "worker: Deleting 1 existing files"


def test_launcher_records_pass_untouched():
    rec = logging.LogRecord("x", logging.INFO, __file__, 1, "preflight ok", (), None)
    assert WorkerLogFilter().filter(rec) is True and rec.getMessage() == "preflight ok"


def test_the_same_chatter_is_dropped_when_beam_runs_in_process():
    empty = logging.LogRecord("apache_beam.io.filebasedsink", logging.WARNING, __file__, 1,
                              "No shards found to finalize. num_shards: %d, skipped: %d", (0, 0),
                              None)
    renamed = logging.LogRecord("apache_beam.io.filebasedsink", logging.WARNING, __file__, 1,
                                "Deleting %d existing files", (1,), None)
    assert WorkerLogFilter().filter(empty) is False
    assert WorkerLogFilter().filter(renamed) is True
