"""DirectRunner worker processes started before the launcher imports Beam.

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
failed run did not use are stopped by `WarmWorkerPool.close`.

This module imports nothing from Beam: the launcher imports it before Beam.
"""
from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

LOG = logging.getLogger(__name__)
DIRECT_RUNNERS = ("DirectRunner", "direct")
MAX_DEFAULT_WORKERS = 8


def default_worker_count() -> int:
    """Workers for DirectRunner when the user chose none: one per core, at most 8."""
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_WORKERS))


def worker_count(chosen: int) -> int:
    """DirectRunner's --direct_num_workers as a count: 0 means one per core (Beam's rule)."""
    return chosen or os.cpu_count() or 1


def default_running_mode(workers: int) -> str:
    """DirectRunner's running mode when the user chose none: a process per worker."""
    return "multi_processing" if workers > 1 else "in_memory"


def planned_worker_processes(argv: Sequence[str]) -> int:
    """How many worker processes to start for this command line (0: none): DirectRunner's
    multi_processing workers but the one the launcher runs.

    Reads only --runner, --direct_num_workers and --direct_running_mode, the way
    `pipeline.run.apply_runner_defaults` completes them; anything it cannot read means 0 (Beam's
    own parser reports the mistake later).
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runner")
    parser.add_argument("--direct_num_workers")
    parser.add_argument("--direct_running_mode")
    try:
        known, _ = parser.parse_known_args(list(argv))
        workers = (default_worker_count() if known.direct_num_workers is None
                   else worker_count(int(known.direct_num_workers)))
    except (SystemExit, ValueError):
        return 0
    if known.runner not in (None, *DIRECT_RUNNERS) or workers < 1:
        return 0
    mode = known.direct_running_mode or default_running_mode(workers)
    if mode != "multi_processing":
        return 0
    return workers - 1 if launcher_runs_a_worker(workers) else workers


def launcher_runs_a_worker(workers: int) -> bool:
    """With two or more workers, one runs in the launcher (`pipeline.warm_handler`): the
    launcher only waits while the workers work, and one process fewer imports Beam."""
    return workers > 1


class WarmWorkerPool:
    """Worker processes started early, handed to the runner one at a time."""

    def __init__(self, command: Sequence[str] = (sys.executable, "-m", __name__)) -> None:
        self._command = list(command)
        self._lock = threading.Lock()
        self._waiting: list[subprocess.Popen] = []
        self._started: list[subprocess.Popen] = []
        self.taken = 0

    def start(self, count: int) -> None:
        """Starts `count` waiting processes; if the system refuses one, the runner spawns the
        rest itself (a warm worker only saves time)."""
        for _ in range(count):
            try:
                process = subprocess.Popen(self._command, stdin=subprocess.PIPE)
            except OSError as error:
                LOG.warning("could not start a worker process ahead of the run (%s); "
                            "DirectRunner starts its own", error)
                return
            with self._lock:
                self._waiting.append(process)
                self._started.append(process)

    def __len__(self) -> int:
        with self._lock:
            return len(self._waiting)

    def take(self) -> subprocess.Popen | None:
        """A waiting process still alive, or None (the runner then spawns one as usual)."""
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


    def kill_all(self) -> None:
        """Kills every process this pool started, taken or not (Ctrl-C: the run is over)."""
        with self._lock:
            started = list(self._started)
        for process in started:
            if process.poll() is None:
                process.kill()


POOL = WarmWorkerPool()


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
        return 130
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
