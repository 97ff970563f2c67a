"""The one seam between capi-sync and Beam's local runner internals.

Everything here leans on parts of Beam that are not its public API; each one is named in
`tests/pipeline/test_warm_handler.py`, and `pipeline.warm_workers.LocalRunnerPlan.fast` is off on
any Beam release but the ones that test ran with, so a Beam upgrade fails in CI, never in a run.
With the plan's speed-ups off nothing here is used: the run is Beam's own DirectRunner.

The speed-ups, for a DirectRunner run:

- `local_runner`: Beam's Python FnApiRunner, set up as DirectRunner sets it up for a batch
  pipeline like ours. Since Beam 2.6x DirectRunner first tries PrismRunner, which downloads a Go
  binary from GitHub on first use and runs Python workers its own way; offline it gives up after
  ~0.2 s and falls back to this runner. Going there directly: the same runner online and
  offline, nothing downloaded, and the workers below.
- `serving(local)` registers, for the length of one run, a handler factory for DirectRunner's
  subprocess environment (multi_processing mode):
  - the first `workers - 1` workers are processes of `pipeline.warm_workers` (started before
    Beam was imported, or spawned now if none is waiting): the handler does what Beam's
    `SubprocessSdkWorkerHandler` does (logging server, control address, pipeline options, worker
    id) except that it hands these to the process on its stdin;
  - the last one runs in this process, as Beam's own in_memory mode runs its workers
    (`EmbeddedWorkerHandler`: bundles run on a runner thread, data passes in memory). While the
    workers work the launcher only waits on them, so it takes a share of the bundles instead of
    leaving a core to a process that first spends ~1 s of it importing Beam.
  The runner splits each stage's input evenly over the workers, whatever handler each one has.

A worker process always ends with the run (`stop_worker`): Beam ends a worker's control stream
only if the worker had opened it when the runner closes; with the launcher's own worker, a run
can fail (a corrupt file in its first bundle) before a process has connected, and that process
then waited for instructions forever while the runner waited for it to exit.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import python_urns
from apache_beam.portability.api import beam_fn_api_pb2_grpc, beam_provision_api_pb2, endpoints_pb2
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import fn_runner, worker_handlers
from apache_beam.runners.portability.portable_runner import JobServiceHandle
from apache_beam.utils import thread_pool_executor
from google.protobuf import json_format, text_format

from pipeline.warm_workers import LocalRunnerPlan, LocalWorkers, WarmWorkerPool, hand_over

LOG = logging.getLogger(__name__)
_GRPC_OPTIONS = [("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)]
# What Beam's runner pushes down a control stream to end it.
_END_OF_CONTROL_STREAM = worker_handlers.BeamFnControlServicer._DONE_MARKER
# How long a worker process may take to exit once the runner closed it (a finished run's worker
# exits within a second; one still in a bundle of a failed run is stopped).
STOP_GRACE_S = 10.0


def local_runner(plan: LocalRunnerPlan, options: PipelineOptions) -> Any:
    """The runner object for the plan: Beam's Python FnApiRunner for a local run with the
    speed-ups, None otherwise (Beam then builds the runner the options name)."""
    if not (plan.local and plan.fast):
        return None
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    return fn_runner.FnApiRunner(provision_info=fn_runner.ExtendedProvisionInfo(
        beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)))


class _WarmSdkWorker:
    """`local_job_service.SubprocessSdkWorker.run`, with the process already started."""

    def __init__(self, process, control_address: str, provision_info, worker_id: str | None):
        self._process = process
        self._control_address = control_address
        self._provision_info = provision_info
        self._worker_id = worker_id

    def run(self) -> None:
        logging_server = grpc.server(thread_pool_executor.shared_unbounded_instance(),
                                     options=_GRPC_OPTIONS)
        logging_port = logging_server.add_insecure_port("[::]:0")
        # Beam's servicer: worker log records reach the launcher as Beam's own workers' do.
        beam_fn_api_pb2_grpc.add_BeamFnLoggingServicer_to_server(
            local_job_service.BeamFnLoggingServicer(), logging_server)
        logging_server.start()
        environment = {
            "CONTROL_API_SERVICE_DESCRIPTOR": text_format.MessageToString(
                endpoints_pb2.ApiServiceDescriptor(url=self._control_address)),
            "LOGGING_API_SERVICE_DESCRIPTOR": text_format.MessageToString(
                endpoints_pb2.ApiServiceDescriptor(url=f"localhost:{logging_port}")),
            "PIPELINE_OPTIONS": json_format.MessageToJson(
                self._provision_info.provision_info.pipeline_options),
        }
        if self._worker_id:
            environment["WORKER_ID"] = self._worker_id
        try:
            hand_over(self._process, environment)
            self._process.wait()
            if self._process.returncode:
                LOG.warning("a worker process exited with code %s", self._process.returncode)
        finally:
            if self._process.poll() is None:
                self._process.kill()
            logging_server.stop(0)

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()


def _handler_class(pool: WarmWorkerPool) -> type:
    class WarmSubprocessSdkWorkerHandler(worker_handlers.SubprocessSdkWorkerHandler):
        def start_worker(self) -> None:
            process = pool.take() or pool.spawn()
            if process is None:           # the system refused a process: Beam's own spawn
                super().start_worker()
                return
            self.worker = _WarmSdkWorker(process, self.control_address, self.provision_info,
                                         self.worker_id)
            self.worker_thread = threading.Thread(name="run_worker", target=self.worker.run)
            self.worker_thread.start()

        def stop_worker(self) -> None:
            # Ends the control stream whenever the worker opens it (see the module docstring);
            # a second marker after Beam's own is never read.
            self.control_conn.push(_END_OF_CONTROL_STREAM)
            self.worker_thread.join(STOP_GRACE_S)
            if self.worker_thread.is_alive() and isinstance(self.worker, _WarmSdkWorker):
                LOG.warning("a worker process did not exit %.0f s after the run; stopping it",
                            STOP_GRACE_S)
                self.worker.kill()
                self.worker_thread.join(STOP_GRACE_S)

    return WarmSubprocessSdkWorkerHandler


def _handler_factory(local: LocalWorkers) -> Callable[..., Any]:
    """WorkerHandler.create's constructor for the subprocess environment, for one run."""
    warm = _handler_class(local.pool)
    workers, in_launcher = local.plan.workers, local.plan.launcher_runs_a_worker
    created = 0

    def create(payload: bytes, state, provision_info, grpc_server):
        nonlocal created
        created += 1
        # The last one, never the first: the runner gives every worker the bundle descriptor
        # built for the first one, whose data address must be a real (gRPC) one.
        if in_launcher and created == workers:
            manager = grpc_server.control_handler._worker_manager
            return worker_handlers.EmbeddedWorkerHandler(None, state, provision_info, manager)
        return warm(payload, state, provision_info, grpc_server)

    return create


@contextlib.contextmanager
def serving(local: LocalWorkers) -> Iterator[None]:
    """Within the block, DirectRunner's subprocess-environment workers are the plan's: the
    pool's processes and, with two or more, the launcher itself. Beam's handler is back after."""
    plan = local.plan
    if not (plan.local and plan.fast and plan.running_mode == "multi_processing"):
        yield
        return
    registry = worker_handlers.WorkerHandler._registered_environments
    urn = python_urns.SUBPROCESS_SDK
    original = registry[urn]
    worker_handlers.WorkerHandler.register_environment(urn, bytes)(_handler_factory(local))
    try:
        yield
    finally:
        registry[urn] = original
