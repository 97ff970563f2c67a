"""`capi-sync` (and `python -m pipeline`): the only place that prints.

    capi-sync --input 'exports/*.parquet' --pixel-id px_123 --report report.json
    capi-sync demo                      # the real pipeline on the bundled example + emulator
    capi-sync preview --input x.parquet # the first rows mapped and hashed; nothing is sent
    capi-sync --print-default-mapping   # the default mapping, to copy and edit
    capi-sync --print-mapping ga4       # a preset (ga4, segment, rudderstack, snowplow, shopify)
"""
from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading

from pipeline.exit_codes import EXIT_INTERRUPTED, EXIT_TERMINATED
from pipeline.logs import WithoutAuthTracebacks, configure_console_logging
from transforms.errors import CapiSyncError, ConfigError
from transforms.masking import mask_secrets

USAGE_HINT = "Run `capi-sync --help` for the options."


def _help_text() -> str:
    import argparse

    from pipeline.options import CapiSyncOptions

    parser = argparse.ArgumentParser(
        prog="capi-sync",
        description="Send warehouse/Parquet conversions to the OpenAI Conversions API.",
        epilog="Also: `capi-sync preview <source options> [--mapping FILE] [--rows 5]` (the "
               "first rows mapped, nothing sent, no key), `capi-sync demo` (bundled example + "
               "emulator), `capi-sync --print-default-mapping`,"
               " `capi-sync --print-mapping ga4`. Beam's own options (--runner, --project, ...)"
               " pass through.")
    CapiSyncOptions._add_argparse_args(parser)
    return parser.format_help()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_console_logging()

    if argv[:1] == ["preview"]:
        return _preview(argv[1:])
    if "-h" in argv or "--help" in argv:
        print(_help_text())
        return 0
    if argv[:1] == ["demo"]:
        from pipeline.demo import run_demo
        try:
            return run_demo(argv[1:])
        except ConfigError as exc:       # `capi-sync demo --bogus`
            from pipeline.run import EXIT_CONFIG
            _error(f"configuration error: {exc}\n{USAGE_HINT}")
            return EXIT_CONFIG
    if "--print-default-mapping" in argv:
        from transforms.mapping import default_mapping_text
        print(default_mapping_text(), end="")
        return 0
    if "--print-mapping" in argv:
        return _print_preset(argv)

    # Before Beam is imported: the workers import it meanwhile (see pipeline/warm_workers.py).
    from pipeline import warm_workers
    # Only the main thread may set a signal handler (tests call main() from a thread too).
    in_main_thread = threading.current_thread() is threading.main_thread()
    with warm_workers.started(warm_workers.plan_local_runner(argv)) as local:
        previous = ({number: signal.signal(number, _stop_on_signal) for number in STOP_SIGNALS}
                    if in_main_thread else {})
        try:
            return _run(argv, local)
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)


def _print_preset(argv: list[str]) -> int:
    from transforms.mapping import preset_text
    from transforms.mapping_schema import PRESET_FILES

    at = argv.index("--print-mapping")
    name = argv[at + 1] if at + 1 < len(argv) else None
    if name not in PRESET_FILES:
        print(f"capi-sync: --print-mapping needs a preset name: {', '.join(PRESET_FILES)}"
              f" (got {name!r})", file=sys.stderr)
        return 2
    print(preset_text(name), end="")
    return 0


_STOPPED = ("the run stopped; no report and no watermark were written, and no dead-letter "
            "file was completed. Events sent so far are recorded; running again resends them "
            "safely (the API deduplicates).")
INTERRUPTED = f"capi-sync: interrupted (Ctrl-C): {_STOPPED}"
TERMINATED = f"capi-sync: terminated (SIGTERM): {_STOPPED}"
# What each stop signal prints and exits with. SIGTERM is how schedulers and container
# runtimes stop a job (Airflow's timeout, `docker stop`, Kubernetes), usually to this process
# alone: without a handler the launcher died at once and every worker printed gRPC tracebacks.
STOP_SIGNALS = {signal.SIGINT: (INTERRUPTED, EXIT_INTERRUPTED),
                signal.SIGTERM: (TERMINATED, EXIT_TERMINATED)}


def _stop_on_signal(signum, frame) -> None:
    """One line and exit 130 (Ctrl-C) or 143 (SIGTERM), at once: no Beam thread gets to print
    its traceback.

    The worker processes ignore SIGINT (the terminal sends it to the whole process group) and
    are killed here, as they are on SIGTERM. Nothing is half-written: the report and the state
    file are only written after the run, each by an atomic rename, and dead letters only become
    files when Beam renames them into place at the end (its `beam-temp-*` folder may stay under
    the prefix).
    """
    line, code = STOP_SIGNALS[signal.Signals(signum)]
    print(line, file=sys.stderr, flush=True)
    # The last line: Beam's threads that watch a worker process would report its death.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    _kill_child_processes()
    sys.stdout.flush()
    os._exit(code)


def _kill_child_processes() -> None:
    """Kills every process this one started: the warm workers, taken or not, and Beam's own
    SDK workers when the speed-ups are off (--no-warm-workers, or a Beam version the tests did
    not run with), which otherwise outlive the launcher by a moment and each print gRPC
    tracebacks into the scheduler's log."""
    import psutil
    launcher = psutil.Process()
    for _ in range(2):      # the second look finds a worker that was being started
        children = launcher.children(recursive=True)
        # All stopped first, then killed: a worker killed while another still ran made Beam's
        # threads here stop that other one, which printed its gRPC channel's cancellation.
        for act in (psutil.Process.suspend, psutil.Process.kill):
            for child in children:
                try:
                    act(child)
                except psutil.Error:      # already gone
                    pass
        # Gone before this process exits and closes their gRPC channels, which they would report.
        psutil.wait_procs(children, timeout=1.0)


def _run(argv: list[str], local) -> int:
    from connectors.capi_client import AuthenticationError
    from pipeline import run as runner
    from pipeline.report import format_summary
    try:
        with contextlib.redirect_stderr(WithoutAuthTracebacks(sys.stderr)):
            outcome = runner.run(argv, local)
    except ConfigError as exc:
        _error(f"configuration error: {exc}\n{USAGE_HINT}")
        return runner.EXIT_CONFIG
    except runner.RunStopped as exc:
        _error(f"run stopped: {exc}")
        return runner.EXIT_AUTH
    except runner.SourceFailed as exc:
        _error(f"source failed while being read, nothing more was sent: {exc}")
        return runner.EXIT_SOURCE_FAILED
    except AuthenticationError as exc:   # the preflight's refused key, before any read
        _error(str(exc))
        return runner.EXIT_AUTH
    except CapiSyncError as exc:
        _error(str(exc))
        return runner.EXIT_CONFIG
    print(mask_secrets(outcome.printout or format_summary(outcome.report)))
    for problem in outcome.not_saved:
        _error(f"not saved: {problem}")
    if outcome.failure:
        _error(f"run failed (exit {outcome.exit_code}): {outcome.failure}")
    return outcome.exit_code


def _error(message: str) -> None:
    """One error line on stderr, as every message the program writes: keys masked."""
    print(mask_secrets(f"capi-sync: {message}"), file=sys.stderr)


def _preview(argv: list[str]) -> int:
    from pipeline import run as runner
    from pipeline.preview import PREVIEW_HELP, format_preview, preview
    if "-h" in argv or "--help" in argv:
        print(PREVIEW_HELP)
        return 0
    try:
        result = preview(argv)
    except CapiSyncError as exc:
        kind = "configuration error: " if isinstance(exc, ConfigError) else ""
        print(mask_secrets(f"capi-sync preview: {kind}{exc}"), file=sys.stderr)
        return runner.EXIT_CONFIG
    print(mask_secrets(format_preview(result)))
    if not result.rows:
        print("capi-sync preview: no row was read: the input matched no file or the query "
              "returned no row", file=sys.stderr)
        return runner.EXIT_NOTHING_READ
    return 0


def entry() -> None:
    """The `capi-sync` command: runs `main` and exits with its code.

    The heap is frozen first: interpreter shutdown would otherwise spend ~0.4 s collecting the
    million objects Beam and its Google Cloud clients leave behind, memory the OS frees anyway
    (atexit handlers and file flushing still run as usual).
    """
    code = main()
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
