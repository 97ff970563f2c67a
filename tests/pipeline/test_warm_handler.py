"""The one seam into Beam's local runner internals: every private symbol it uses, named, and
the end of its worker processes when a run fails."""
from __future__ import annotations

import inspect
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest
from apache_beam.portability import python_urns
from apache_beam.runners.portability import local_job_service, portable_runner
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from apache_beam.runners.worker import sdk_worker_main
from apache_beam.utils import thread_pool_executor
from apache_beam.utils.sentinel import Sentinel

from pipeline import warm_handler
from tests.conftest import EMULATOR_API_KEY

RUN_TIMEOUT_S = 180     # a run that fails takes ~3 s on an idle machine; a hang never ends


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_every_private_beam_symbol_the_seam_uses_is_still_there():
    """A Beam upgrade that renames or reshapes one of these fails here, not in a user's run
    (runs on an untested release use Beam's DirectRunner: see TESTED_BEAM_RELEASES)."""
    # serving(): the registry of environment handlers, and how an entry is written.
    registry = worker_handlers.WorkerHandler._registered_environments
    constructor, payload_type = registry[python_urns.SUBPROCESS_SDK]
    assert payload_type is bytes
    assert parameters(worker_handlers.WorkerHandler.register_environment) == \
        ["urn", "payload_type"]
    # The handler we subclass and what we use of it.
    handler = worker_handlers.SubprocessSdkWorkerHandler
    assert constructor is handler
    assert parameters(handler.__init__) == \
        ["self", "worker_command_line", "state", "provision_info", "grpc_server"]
    assert {"start_worker", "stop_worker"} <= set(vars(handler))
    init = inspect.getsource(worker_handlers.GrpcWorkerHandler.__init__)
    for attribute in ("self.control_address", "self.control_conn", "self.worker_id"):
        assert attribute in init
    assert "self.provision_info" in inspect.getsource(worker_handlers.WorkerHandler.__init__)
    assert "self.worker_thread.join()" in inspect.getsource(handler.stop_worker)
    # stop_worker(): the marker that ends a control stream, pushed on the worker's connection.
    assert worker_handlers.BeamFnControlServicer._DONE_MARKER is Sentinel.sentinel
    assert parameters(worker_handlers.ControlConnection.push) == ["self", "req"]
    assert "self._DONE_MARKER" in inspect.getsource(worker_handlers.BeamFnControlServicer.Control)
    # The worker in the launcher: Beam's in-memory handler, built with the runner's manager.
    assert parameters(worker_handlers.EmbeddedWorkerHandler.__init__) == \
        ["self", "unused_payload", "state", "provision_info", "worker_manager"]
    assert "self._worker_manager = worker_manager" in inspect.getsource(
        worker_handlers.BeamFnControlServicer.__init__)
    assert "self.control_handler = " in inspect.getsource(worker_handlers.GrpcServer.__init__)
    # _WarmSdkWorker.run, a copy of SubprocessSdkWorker.run: the same servicer, thread pool
    # and environment variables, read by the harness's entry point.
    assert callable(local_job_service.BeamFnLoggingServicer)
    assert callable(thread_pool_executor.shared_unbounded_instance)
    copied = inspect.getsource(local_job_service.SubprocessSdkWorker.run)
    harness = inspect.getsource(sdk_worker_main)
    for variable in ("CONTROL_API_SERVICE_DESCRIPTOR", "LOGGING_API_SERVICE_DESCRIPTOR",
                     "PIPELINE_OPTIONS", "WORKER_ID"):
        assert variable in copied and variable in harness
    # local_runner(): the FnApiRunner as DirectRunner builds it.
    assert "provision_info" in parameters(fn_runner.FnApiRunner.__init__)
    assert parameters(fn_runner.ExtendedProvisionInfo.__init__)[:2] == ["self", "provision_info"]
    assert callable(portable_runner.JobServiceHandle.encode_pipeline_options)


def test_the_seam_names_no_private_symbol_beyond_those_above_and_nothing_else_does():
    private_attributes = {"_registered_environments", "_worker_manager", "_DONE_MARKER"}
    seam = inspect.getsource(warm_handler)
    assert set(re.findall(r"(?<!self)\.(_[A-Za-z]\w*)", seam)) == private_attributes
    package = pathlib.Path(warm_handler.__file__).parent.parent
    for path in [*package.glob("pipeline/*.py"), *package.glob("connectors/*.py"),
                 *package.glob("transforms/*.py")]:
        if path.name != "warm_handler.py":
            assert not any(name in path.read_text() for name in private_attributes), path


# A worker process that connects 3 s late, and a step that fails on its first element: the
# launcher's own worker fails its bundle before the process has connected (on a busy machine
# the run's first bundle did so in 14 of 39 failing runs, and the run then hung).
LATE_WORKER_RUN = textwrap.dedent("""
    import sys
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from pipeline import warm_handler, warm_workers
    from pipeline.run import apply_local_plan

    def fail(element):
        raise ValueError("a bad row")

    late = [sys.executable, "-c", "import runpy, time; time.sleep(3); "
            "runpy.run_module('pipeline.warm_workers', run_name='__main__')"]
    argv = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
    plan = warm_workers.plan_local_runner(argv)
    assert plan.fast and plan.launcher_runs_a_worker
    options = PipelineOptions(argv)
    apply_local_plan(options, plan)
    pool = warm_workers.WarmWorkerPool(late)
    pool.start(1)
    pipeline = beam.Pipeline(runner=warm_handler.local_runner(plan, options), options=options)
    _ = pipeline | beam.Impulse() | "Fail" >> beam.Map(fail)
    try:
        with warm_handler.serving(warm_workers.LocalWorkers(plan, pool)):
            pipeline.run().wait_until_finish()
    except Exception as exc:
        print("run failed:", str(exc).splitlines()[0], file=sys.stderr)
        sys.exit(1)
    finally:
        pool.close()
""")


def failing_run_argv(path) -> list[str]:
    return ["--input", str(path), "--pixel-id", "px_1", "--skip-preflight",
            "--endpoint", "http://127.0.0.1:9/v1/events", "--dead-letter",
            str(path.parent / "dead" / "dead"), "--direct_num_workers", "2"]


def run_to_the_end(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                              env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the failing run hung (no exit within {RUN_TIMEOUT_S} s): {command}")


@pytest.fixture
def run_env(monkeypatch):
    import os
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)
    return dict(os.environ)


def test_a_run_that_fails_before_a_worker_process_connected_ends(run_env):
    done = run_to_the_end([sys.executable, "-c", LATE_WORKER_RUN], run_env)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "run failed: a bad row [while running 'Fail']" in done.stderr


@pytest.mark.parametrize("content", [b"not a parquet file", b"", b"PAR1" * 3, b"x"])
def test_failing_runs_of_the_command_end_every_time(tmp_path, run_env, content):
    """Corrupt and empty exports in the default two-worker mode: each run ends, not 0."""
    broken = tmp_path / "export.parquet"
    broken.write_bytes(content)
    done = run_to_the_end([sys.executable, "-m", "pipeline", *failing_run_argv(broken)], run_env)
    assert done.returncode != 0, done.stderr[-2000:]
