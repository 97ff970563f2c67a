import io
import logging

import pytest

from pipeline.logs import BeamAuthErrorFilter, WithoutAuthTracebacks, WorkerLogFilter


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


AUTH_TRACEBACK = ("Traceback (most recent call last):\n  File \"sink.py\", line 143\n"
                  "connectors.capi_client.AuthenticationError: Authentication failed (401): revoked")


def test_stderr_loses_beams_tracebacks_of_a_refused_key_and_nothing_else():
    sink = io.StringIO()
    stream = WithoutAuthTracebacks(sink)
    print(AUTH_TRACEBACK, file=stream)
    print("Traceback (most recent call last):\nValueError: other", file=stream)
    print("capi-sync: run stopped: Authentication failed (401): revoked", file=stream)
    assert sink.getvalue() == ("Traceback (most recent call last):\nValueError: other\n"
                               "capi-sync: run stopped: Authentication failed (401): revoked\n")


@pytest.mark.parametrize("name, message, kept", [
    ("apache_beam.runners.worker.sdk_worker", "Authentication failed (401): revoked [while running "
     "'Deliver']", False),
    ("connectors.capi_client", "Authentication failed (401): revoked", True),
    ("apache_beam.runners.portability.local_job_service", "worker: Authentication failed (401): x",
     True),
    ("apache_beam.runners.worker.sdk_worker", "Error processing instruction 3", True),
])
def test_beams_in_process_records_of_a_refused_key_are_dropped(name, message, kept):
    rec = logging.LogRecord(name, logging.ERROR, __file__, 1, message, (), None)
    assert BeamAuthErrorFilter().filter(rec) is kept


# -- masking: no key-like string reaches the console, whoever logged it --------------------------

KEY = "sk-svcacct-LOGGED-by-someone-0123456789"


@pytest.fixture
def console():
    """A console handler on the root logger, as basicConfig makes it, set up by
    configure_console_logging; yields the text it wrote."""
    from pipeline.logs import configure_console_logging

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        configure_console_logging()
        yield stream
    finally:
        root.removeHandler(handler)


def test_beams_warning_about_an_unknown_option_does_not_echo_the_key(console):
    from apache_beam.options.pipeline_options import PipelineOptions

    PipelineOptions(["--api-key", KEY]).get_all_options()   # Beam: "Discarding unparseable args"

    assert "Discarding unparseable args" in console.getvalue()
    assert KEY not in console.getvalue()
    assert "sk-svcacct-[masked]" in console.getvalue()


def test_messages_arguments_and_tracebacks_are_masked(console):
    log = logging.getLogger("some.library")
    log.warning("sent Authorization: Bearer %s", KEY)
    try:
        raise ValueError(f"request to http://h/?k={KEY} failed")
    except ValueError:
        log.exception("unexpected")
    worker = record(worker_line(f"progress with {KEY}", "/src/pipeline/steps.py:55"), logging.WARNING)
    logging.getLogger(worker.name).handle(worker)

    text = console.getvalue()
    assert KEY not in text
    assert text.count("sk-svcacct-[masked]") == 3
    assert "ValueError: request to http://h/?k=sk-svcacct-[masked] failed" in text


def test_stderr_writes_are_masked():
    sink = io.StringIO()
    print(f"Traceback (most recent call last):\nRuntimeError: {KEY}", file=WithoutAuthTracebacks(sink))
    assert sink.getvalue() == "Traceback (most recent call last):\nRuntimeError: sk-svcacct-[masked]\n"


def test_a_wrong_endpoints_beam_tracebacks_are_dropped_like_a_refused_keys():
    sink = io.StringIO()
    stream = WithoutAuthTracebacks(sink)
    print("Traceback (most recent call last):\n  File \"sink.py\"\nconnectors.capi_client."
          "WrongEndpointError: Wrong endpoint (HTTP 404 from http://x): no API", file=stream)
    print("capi-sync: run stopped: Wrong endpoint (HTTP 404 from http://x): no API", file=stream)
    assert sink.getvalue() == "capi-sync: run stopped: Wrong endpoint (HTTP 404 from http://x): no API\n"
