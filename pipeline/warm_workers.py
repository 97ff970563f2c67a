"""The local runner's plan, and DirectRunner worker processes started before Beam is imported.

Every choice about the local runner is made once, by `plan_local_runner`, from the command line,
into a frozen `LocalRunnerPlan`: the runner, the worker count and mode, and whether the
speed-ups of `pipeline.warm_handler` are on (only on the Beam releases they were tested with,
`TESTED_BEAM_RELEASES`, and unless `--no-warm-workers` is given). The command line starts the
plan's processes (`started`) and hands plan and processes down to `pipeline.run`.

On DirectRunner's multi_processing mode each worker is a new `python -m ...sdk_worker_main`,
spawned only once the launcher has imported Beam, checked the options and planned the graph;
each then spends ~1 s importing Beam and its Google Cloud clients while the launcher waits. The
command line instead starts its workers first (`WarmWorkerPool.start`): each imports the SDK
harness and our transforms while the launcher does the same on the other core, then waits on
its stdin for the four addresses Beam would have passed it in the environment. When the runner
asks for a worker (`pipeline.warm_handler`), it gets a waiting process instead of a new one.
Nothing else changes: same harness, same gRPC protocol, one process per worker. With two or more
workers the last one runs in the launcher itself (see `launcher_runs_a_worker`), so N workers
need N - 1 waiting processes.

A waiting process that reads end-of-file (its launcher died) exits 0; the ones a finished or
failed run did not use are stopped when the run ends.

This module imports nothing from Beam: the launcher imports it before Beam.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.metadata
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence

from pipeline.exit_codes import EXIT_INTERRUPTED

LOG = logging.getLogger(__name__)
DIRECT_RUNNERS = ("DirectRunner", "direct")
MAX_DEFAULT_WORKERS = 8
# The Beam releases `pipeline.warm_handler` was tested with (its private symbols are named in
# tests/pipeline/test_warm_handler.py). On any other release the run uses Beam's DirectRunner
# exactly as Beam ships it: slower to start, never broken by a renamed internal.
TESTED_BEAM_RELEASES = ("2.77",)
NO_WARM_WORKERS_FLAG = "--no-warm-workers"


def default_worker_count() -> int:
    """Workers for DirectRunner when the user chose none: one per core, at most 8."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def worker_count(chosen: int) -> int:
    """DirectRunner's --direct_num_workers as a count: 0 means one per core (Beam's rule)."""
    return chosen or os.cpu_count() or 1


def default_running_mode(workers: int) -> str:
    """DirectRunner's running mode when the user chose none: a process per worker."""
    return "multi_processing" if workers > 1 else "in_memory"


def installed_beam_release() -> str:
    """`2.77` for apache-beam 2.77.0, read from the installed package's metadata (no import)."""
    try:
        version = importlib.metadata.version("apache-beam")
    except importlib.metadata.PackageNotFoundError:
        return ""
    return ".".join(version.split(".")[:2])


@dataclasses.dataclass(frozen=True)
class LocalRunnerPlan:
    """How this run uses the local runner, decided once (`plan_local_runner`) and handed down:
    `LocalWorkers` starts its processes from it, `pipeline.run` writes its worker count and
    mode into the pipeline options and `pipeline.warm_handler` sets up the runner from it.

    `fast` means the three speed-ups of `pipeline.warm_handler`: straight to Beam's FnApiRunner,
    one worker in the launcher, worker processes started before Beam is imported. Without it the
    run is Beam's own DirectRunner with the same worker count and mode.
    """

    local: bool                   # DirectRunner (else Dataflow or another runner: untouched)
    workers: int = 0              # DirectRunner workers (0 when not local)
    running_mode: str = ""        # DirectRunner's --direct_running_mode ("" when not local)
    fast: bool = False
    why_not_fast: str = ""        # for the log, when a local run goes without the speed-ups

    @property
    def launcher_runs_a_worker(self) -> bool:
        """With two or more worker processes, the last one runs in the launcher: it only waits
        while the workers work, and one process fewer imports Beam."""
        return self.fast and self.running_mode == "multi_processing" and self.workers > 1

    @property
    def processes_to_start(self) -> int:
        """Worker processes to start ahead of the run: DirectRunner's multi_processing workers
        but the one the launcher runs."""
        if not self.fast or self.running_mode != "multi_processing":
            return 0
        return self.workers - 1 if self.launcher_runs_a_worker else self.workers


def decide_local_runner(runner: str | None, direct_num_workers: int | None,
                        direct_running_mode: str | None, no_warm_workers: bool,
                        beam_release: str) -> LocalRunnerPlan:
    """The plan for these option values (None: not given on the command line)."""
    if runner not in (None, *DIRECT_RUNNERS):
        return LocalRunnerPlan(local=False)
    workers = (default_worker_count() if direct_num_workers is None
               else worker_count(direct_num_workers))
    mode = direct_running_mode or default_running_mode(workers)
    why_not = ""
    if no_warm_workers:
        why_not = f"{NO_WARM_WORKERS_FLAG} was given"
    elif beam_release not in TESTED_BEAM_RELEASES:
        why_not = (f"apache-beam {beam_release or '(not found)'} is not a release they were "
                   f"tested with ({', '.join(TESTED_BEAM_RELEASES)})")
    return LocalRunnerPlan(local=True, workers=workers, running_mode=mode, fast=not why_not,
                           why_not_fast=why_not)


def plan_local_runner(argv: Sequence[str], beam_release: str | None = None) -> LocalRunnerPlan:
    """The plan for a command line, read before Beam is imported (so that worker processes can
    start while the launcher imports it).

    Reads only --runner, --direct_num_workers, --direct_running_mode and --no-warm-workers, as
    Beam's own parser reads them (argparse, no abbreviations); a value it cannot read means a
    local run without the speed-ups (Beam's parser then names the mistake).
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runner")
    parser.add_argument("--direct_num_workers", type=int)
    parser.add_argument("--direct_running_mode")
    parser.add_argument(NO_WARM_WORKERS_FLAG, "--no_warm_workers", dest="no_warm_workers",
                        action="store_true")
    release = installed_beam_release() if beam_release is None else beam_release
    try:
        known, _ = parser.parse_known_args(list(argv))
    except SystemExit:
        return LocalRunnerPlan(local=True, why_not_fast="the runner options could not be read")
    return decide_local_runner(known.runner, known.direct_num_workers, known.direct_running_mode,
                               known.no_warm_workers, release)


class WarmWorkerPool:
    """Worker processes started early, handed to the runner one at a time."""

    def __init__(self, command: Sequence[str] = (sys.executable, "-m", __name__)) -> None:
        self._command = list(command)
        self._lock = threading.Lock()
        self._waiting: list[subprocess.Popen] = []
        self.taken = 0

    def start(self, count: int) -> None:
        """Starts `count` waiting processes; if the system refuses one, the runner spawns the
        rest itself (a warm worker only saves time)."""
        for _ in range(count):
            process = self.spawn()
            if process is None:
                return
            with self._lock:
                self._waiting.append(process)

    def spawn(self) -> subprocess.Popen | None:
        """A new waiting process (it imports Beam before it can work), or None if the system
        refuses one."""
        try:
            process = subprocess.Popen(self._command, stdin=subprocess.PIPE)
        except OSError as error:
            LOG.warning("could not start a worker process ahead of the run (%s); "
                        "DirectRunner starts its own", error)
            return None
        return process

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def take(self) -> subprocess.Popen | None:
        """A waiting process still alive, or None (the handler then spawns a new one)."""
        with self._lock:
            while self._waiting:
                process = self._waiting.pop(0)
                if process.poll() is None:
                    self.taken += 1
                    return process
                process.stdin.close()
        return None

    def close(self) -> None:
        """Stops the processes nobody took (a failed or finished run need not wait for them)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for process in waiting:
            process.kill()
            process.stdin.close()
            process.wait()


@dataclasses.dataclass(frozen=True)
class LocalWorkers:
    """One run's plan and the worker processes started for it."""

    plan: LocalRunnerPlan
    pool: WarmWorkerPool


@contextlib.contextmanager
def started(plan: LocalRunnerPlan) -> Iterator[LocalWorkers]:
    """Starts the plan's worker processes; stops the ones the run did not take at the end."""
    pool = WarmWorkerPool()
    pool.start(plan.processes_to_start)
    try:
        yield LocalWorkers(plan, pool)
    finally:
        pool.close()


def hand_over(process: subprocess.Popen, environment: dict[str, str]) -> None:
    """Sends a waiting process what Beam passes a new worker in its environment."""
    process.stdin.write(json.dumps(environment).encode("utf-8") + b"\n")
    process.stdin.close()


def _serve() -> int:
    """The waiting process: import everything a worker needs, then run the SDK harness."""
    try:
        from apache_beam.runners.worker import sdk_worker_main

        import connectors.sink  # noqa: F401  (what unpickling the pipeline's DoFns imports)
        import connectors.sources  # noqa: F401
        import pipeline.steps  # noqa: F401
        import transforms.columnar  # noqa: F401
        from pipeline.logs import WithoutAuthTracebacks

        line = sys.stdin.buffer.readline()
    except KeyboardInterrupt:      # Ctrl-C reaches the whole process group: leave quietly
        return EXIT_INTERRUPTED
    if not line:
        return 0
    os.environ.update(json.loads(line))
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the launcher's: it stops us
    sys.stderr = WithoutAuthTracebacks(sys.stderr)    # the launcher prints the cause once
    sdk_worker_main.main(sys.argv)
    gc.freeze()     # the runner waits for this exit: skip the shutdown collection (see cli.entry)
    return 0


if __name__ == "__main__":
    sys.exit(_serve())
