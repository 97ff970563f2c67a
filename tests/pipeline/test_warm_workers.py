"""Worker processes started before Beam is imported, the worker the launcher runs: who gets
them, their end, a real run."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from apache_beam.portability import python_urns
from apache_beam.runners.portability import prism_runner
from apache_beam.runners.portability.fn_api_runner import worker_handlers

from connectors.emulator import Emulator
from pipeline import cli, warm_handler, warm_workers
from pipeline.run import apply_local_plan
from pipeline.run import run as run_pipeline
from pipeline.warm_workers import (
    LocalRunnerPlan,
    LocalWorkers,
    WarmWorkerPool,
    decide_local_runner,
    default_worker_count,
    plan_local_runner,
)
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.pipeline.builders import ca_row, read_report, write_parquet

CORES = os.cpu_count() or 1
WAITS_FOR_INPUT = [sys.executable, "-c", "import sys; sys.exit(len(sys.stdin.read()))"]


TESTED = warm_workers.TESTED_BEAM_RELEASES[0]


def direct_subprocess_workers(argv: list[str]) -> int:
    """The multi_processing workers Beam's own parsing gives (after the plan); 0: none."""
    options = PipelineOptions(argv)
    apply_local_plan(options, plan_local_runner(argv, TESTED))
    direct = options.view_as(DirectOptions)
    if direct.direct_running_mode != "multi_processing" or \
            options.get_all_options()["runner"] not in ("DirectRunner", "direct"):
        return 0
    return direct.direct_num_workers or CORES


DEFAULT_WORKERS = default_worker_count()


@pytest.mark.parametrize("argv, workers, processes", [
    ([], DEFAULT_WORKERS if DEFAULT_WORKERS > 1 else 0, max(0, DEFAULT_WORKERS - 1)),
    (["--runner", "DirectRunner"], DEFAULT_WORKERS if DEFAULT_WORKERS > 1 else 0,
     max(0, DEFAULT_WORKERS - 1)),
    (["--runner=direct", "--direct_num_workers=3"], 3, 2),      # the launcher runs the third
    (["--direct_num_workers", "1"], 0, 0),                      # in_memory: no process at all
    (["--direct_num_workers", "1", "--direct_running_mode", "multi_processing"], 1, 1),
    (["--direct_num_workers", "0", "--direct_running_mode", "multi_processing"], CORES,
     CORES - 1 if CORES > 1 else 1),
    (["--direct_running_mode", "multi_threading"], 0, 0),
    (["--direct_running_mode=in_memory", "--direct_num_workers=4"], 0, 0),
    (["--runner", "DataflowRunner", "--project", "p"], 0, 0),
    (["--input", "x.parquet", "--direct_num_workers", "two"], None, 0),   # Beam names the mistake
])
def test_planned_processes_are_beams_workers_but_the_launchers_own(argv, workers, processes):
    plan = plan_local_runner(argv, TESTED)
    assert plan.processes_to_start == processes
    if workers is not None:
        assert direct_subprocess_workers(argv) == workers
        assert processes == (workers - 1 if plan.launcher_runs_a_worker else workers)


@pytest.mark.parametrize("argv, release, why_not_fast", [
    ([], TESTED, ""),
    (["--no-warm-workers"], TESTED, "--no-warm-workers was given"),
    (["--no_warm_workers", "--direct_num_workers", "2"], TESTED, "--no-warm-workers was given"),
    ([], "2.78", "apache-beam 2.78 is not a release they were tested with (2.77)"),
    ([], "2.60", "apache-beam 2.60 is not a release they were tested with (2.77)"),
    ([], "", "apache-beam (not found) is not a release they were tested with (2.77)"),
])
def test_the_speed_ups_are_on_only_for_tested_beam_releases_and_without_the_opt_out(
        argv, release, why_not_fast):
    plan = plan_local_runner(argv, release)
    assert (plan.local, plan.fast, plan.why_not_fast) == (True, not why_not_fast, why_not_fast)
    if why_not_fast:      # Beam's DirectRunner with the same workers, none started ahead
        assert (plan.processes_to_start, plan.launcher_runs_a_worker) == (0, False)
        assert plan.workers == plan_local_runner(argv, TESTED).workers


def test_the_plan_is_one_frozen_decision_and_other_runners_get_none():
    plan = decide_local_runner("DirectRunner", 3, None, False, TESTED)
    assert plan == LocalRunnerPlan(local=True, workers=3, running_mode="multi_processing",
                                   fast=True)
    with pytest.raises(AttributeError):
        plan.workers = 4                                        # frozen
    assert decide_local_runner("DataflowRunner", None, None, False, TESTED) == \
        LocalRunnerPlan(local=False)
    assert warm_handler.local_runner(LocalRunnerPlan(local=False), PipelineOptions([])) is None
    assert warm_handler.local_runner(plan_local_runner(["--no-warm-workers"]),
                                     PipelineOptions([])) is None   # Beam's DirectRunner


def test_the_installed_beam_is_a_release_the_speed_ups_were_tested_with():
    # Fails on a Beam upgrade: check tests/pipeline/test_warm_handler.py still passes on the new
    # release, then add it to TESTED_BEAM_RELEASES (until then runs use Beam's DirectRunner).
    assert warm_workers.installed_beam_release() in warm_workers.TESTED_BEAM_RELEASES
    assert plan_local_runner([]).fast


def test_a_taken_process_gets_what_beam_would_put_in_its_environment():
    pool = WarmWorkerPool(WAITS_FOR_INPUT)
    pool.start(1)
    process = pool.take()
    warm_workers.hand_over(process, {"WORKER_ID": "worker_7"})
    assert process.wait(timeout=10) == len('{"WORKER_ID": "worker_7"}\n')
    assert (pool.take(), pool.taken, len(pool)) == (None, 1, 0)


def test_dead_processes_are_skipped_and_unused_ones_stopped_at_close():
    pool = WarmWorkerPool([sys.executable, "-c", "pass"])
    pool.start(2)
    deadline = time.monotonic() + 10
    while any(p.poll() is None for p in pool._waiting) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert pool.take() is None and pool.taken == 0        # the runner spawns its own instead

    waiting = WarmWorkerPool(WAITS_FOR_INPUT)
    waiting.start(2)
    processes = list(waiting._waiting)
    started = time.monotonic()
    waiting.close()
    assert time.monotonic() - started < 5
    assert [p.poll() for p in processes] == [-9, -9] and len(waiting) == 0


def test_a_process_the_system_refuses_leaves_the_workers_to_the_runner(tmp_path, caplog):
    pool = WarmWorkerPool([str(tmp_path / "no-such-python")])
    with caplog.at_level(logging.WARNING):
        pool.start(2)
    assert (len(pool), pool.take()) == (0, None)
    assert "could not start a worker process ahead of the run" in caplog.text


def test_a_worker_whose_launcher_is_gone_exits_on_its_own():
    worker = subprocess.Popen([sys.executable, "-m", "pipeline.warm_workers"],
                              stdin=subprocess.PIPE)
    worker.stdin.close()                                  # what the launcher's death does
    assert worker.wait(timeout=60) == 0


@pytest.mark.parametrize("argv, ours", [
    (["--direct_num_workers", "2"], True),                     # the launcher runs one of two
    (["--direct_num_workers", "1", "--direct_running_mode", "multi_processing"], True),
    (["--direct_num_workers", "1"], False),                    # in_memory: Beam's own workers
    (["--direct_num_workers", "2", "--no-warm-workers"], False),
    (["--runner", "DataflowRunner"], False),
])
def test_beams_handler_is_replaced_only_for_the_run_and_only_with_the_speed_ups(argv, ours):
    registry = worker_handlers.WorkerHandler._registered_environments
    original = registry[python_urns.SUBPROCESS_SDK]
    with warm_handler.serving(LocalWorkers(plan_local_runner(argv, TESTED), WarmWorkerPool())):
        assert (registry[python_urns.SUBPROCESS_SDK] is not original) == ours
    assert registry[python_urns.SUBPROCESS_SDK] is original


def test_a_multi_process_run_uses_the_warm_workers_and_relays_their_logs(
        emulator, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    export = write_parquet(tmp_path / "export.parquet",
                           [ca_row(f"order_{n}") for n in range(6)], row_group_size=2)
    prism_tries = []

    def try_prism(runner, pipeline, options):
        prism_tries.append(pipeline)
        raise RuntimeError("offline")             # DirectRunner falls back, as without a network
    monkeypatch.setattr(prism_runner.PrismRunner, "run_pipeline", try_prism)
    argv = ["--input", str(export), "--pixel-id", EMULATOR_PIXEL_ID,
            "--endpoint", emulator.url, "--report", str(tmp_path / "report.json"),
            "--dead-letter", str(tmp_path / "dead" / "dead"), "--progress-seconds", "0.001",
            "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
    with caplog.at_level(logging.INFO), warm_workers.started(plan_local_runner(argv)) as local:
        assert len(local.pool) == 1
        outcome = run_pipeline(argv, local)
        assert (local.pool.taken, len(local.pool)) == (1, 0)
    assert outcome.exit_code == 0
    assert sorted(e["id"] for e in emulator.recorded_events(EMULATOR_PIXEL_ID)) == \
        [f"order_{n}" for n in range(6)]
    report = read_report(tmp_path / "report.json")
    assert (report["rows_read"], report["events_accepted"], report["reconciled"]) == (6, 6, True)
    # Both workers mapped rows: the warm process (its log lines relayed to the launcher's log)
    # and the launcher itself (its own lines).
    relayed = [r for r in caplog.records if r.name == "apache_beam.runners.portability."
               "local_job_service" and "progress (worker " in r.getMessage()]
    own = [r for r in caplog.records if r.getMessage().startswith(f"progress (worker {os.getpid()})")]
    assert relayed and own
    assert prism_tries == []                      # DirectRunner's first choice is never tried


def test_a_key_refused_mid_run_prints_its_cause_once_and_no_worker_traceback(
        tmp_path, monkeypatch, capfd):
    revoked = "sk-svcacct-revoked-5e1d"
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", revoked)
    export = write_parquet(tmp_path / "export.parquet",
                           [ca_row(f"order_{n}") for n in range(6)], row_group_size=2)
    with Emulator(api_key=EMULATOR_API_KEY, pixel_id=EMULATOR_PIXEL_ID,
                  revoked_keys=[revoked]) as emulator:
        code = cli.main(["--input", str(export), "--pixel-id", EMULATOR_PIXEL_ID,
                         "--endpoint", emulator.url, "--skip-preflight", "--batch-size", "1",
                         "--dead-letter", str(tmp_path / "dead" / "dead"),
                         "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    err = capfd.readouterr().err           # the launcher's and its worker processes' stderr
    assert code == 3
    assert "Traceback" not in err
    assert err.count("capi-sync: run stopped: Authentication failed (401): the key was revoked") == 1
    assert revoked not in err
