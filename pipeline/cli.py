"""`capi-sync` (and `python -m pipeline`): the only place that prints.

    capi-sync --input 'exports/*.parquet' --pixel-id px_123 --report report.json
    capi-sync demo                      # the real pipeline on the bundled example + emulator
    capi-sync --print-default-mapping   # the default mapping, to copy and edit
"""
from __future__ import annotations

import contextlib
import gc
import sys

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
        epilog="Also: `capi-sync demo` (bundled example + emulator), `capi-sync "
               "--print-default-mapping`. Beam's own options (--runner, --project, ...) pass through.")
    CapiSyncOptions._add_argparse_args(parser)
    return parser.format_help()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_console_logging()

    if "-h" in argv or "--help" in argv:
        print(_help_text())
        return 0
    if argv[:1] == ["demo"]:
        from pipeline.demo import run_demo
        return run_demo(argv[1:])
    if "--print-default-mapping" in argv:
        from transforms.mapping import default_mapping_text
        print(default_mapping_text(), end="")
        return 0

    # Before Beam is imported: the workers import it meanwhile (see pipeline/warm_workers.py).
    from pipeline.warm_workers import POOL, planned_worker_processes
    POOL.start(planned_worker_processes(argv))
    try:
        return _run(argv)
    finally:
        POOL.close()


def _run(argv: list[str]) -> int:
    from connectors.capi_client import AuthenticationError
    from pipeline import run as runner
    from pipeline.report import format_summary
    try:
        with contextlib.redirect_stderr(WithoutAuthTracebacks(sys.stderr)):
            outcome = runner.run(argv)
    except ConfigError as exc:
        _error(f"configuration error: {exc}\n{USAGE_HINT}")
        return runner.EXIT_CONFIG
    except runner.RunStopped as exc:
        _error(f"run stopped: {exc}")
        return runner.EXIT_AUTH
    except AuthenticationError as exc:   # the preflight's refused key, before any read
        _error(str(exc))
        return runner.EXIT_AUTH
    except CapiSyncError as exc:
        _error(str(exc))
        return runner.EXIT_CONFIG
    print(mask_secrets(format_summary(outcome.report)))
    for problem in outcome.not_saved:
        _error(f"not saved: {problem}")
    return outcome.exit_code


def _error(message: str) -> None:
    """One error line on stderr, as every message the program writes: keys masked."""
    print(mask_secrets(f"capi-sync: {message}"), file=sys.stderr)


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
