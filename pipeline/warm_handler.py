"""Beam's side of `pipeline.warm_workers`: where DirectRunner's multi_processing workers run.

`serving(pool, workers)` registers, for the length of one run, a handler factory for
DirectRunner's subprocess environment:

- the first `workers - 1` workers are processes from the pool: the handler does what Beam's
  `SubprocessSdkWorkerHandler` does (logging server, control address, pipeline options, worker
  id) except that it hands these to a waiting process instead of spawning
  `python -m apache_beam.runners.worker.sdk_worker_main` (with the pool empty it is Beam's
  handler unchanged);
- the last one runs in this process, as Beam's own in_memory mode runs its workers
  (`EmbeddedWorkerHandler`: bundles run on a runner thread, data passes in memory). While the
  workers work the launcher only waits on them, so it takes a share of the bundles instead of
  leaving a core to a process that first spends ~1 s of it importing Beam.

The runner splits each stage's input evenly over the workers, whatever handler each one has.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from apache_beam.portability import python_urns
from apache_beam.portability.api import beam_fn_api_pb2_grpc, endpoints_pb2
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import worker_handlers
from apache_beam.utils import thread_pool_executor
from google.protobuf import json_format, text_format

from pipeline.warm_workers import WarmWorkerPool, hand_over, launcher_runs_a_worker

_GRPC_OPTIONS = [("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)]


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
                raise RuntimeError(
                    f"Worker subprocess exited with return code {self._process.returncode}")
        finally:
            if self._process.poll() is None:
                self._process.kill()
            logging_server.stop(0)


def _handler_class(pool: WarmWorkerPool) -> type:
    class WarmSubprocessSdkWorkerHandler(worker_handlers.SubprocessSdkWorkerHandler):
        def start_worker(self) -> None:
            process = pool.take()
            if process is None:
                super().start_worker()
                return
            self.worker = _WarmSdkWorker(process, self.control_address, self.provision_info,
                                         self.worker_id)
            self.worker_thread = threading.Thread(name="run_worker", target=self.worker.run)
            self.worker_thread.start()

    return WarmSubprocessSdkWorkerHandler


def _handler_factory(pool: WarmWorkerPool, workers: int) -> Callable[..., Any]:
    """WorkerHandler.create's constructor for the subprocess environment, for one run."""
    warm = _handler_class(pool)
    in_launcher = launcher_runs_a_worker(workers)
    created = 0

    def create(payload: bytes, state, provision_info, grpc_server):
        nonlocal created
        created += 1
        # The last one, never the first: the runner gives every worker the bundle descriptor
        # built for the first one, whose data address must be a real (gRPC) one.
        if in_launcher and created == workers:
            manager = getattr(getattr(grpc_server, "control_handler", None), "_worker_manager",
                              None)
            if manager is not None:     # else (another Beam) a process, as for the others
                return worker_handlers.EmbeddedWorkerHandler(None, state, provision_info, manager)
        return warm(payload, state, provision_info, grpc_server)

    return create


@contextlib.contextmanager
def serving(pool: WarmWorkerPool, workers: int) -> Iterator[None]:
    """Within the block, DirectRunner's `workers` subprocess-environment workers are the
    pool's processes and, with two or more, the launcher itself."""
    if not len(pool) and not launcher_runs_a_worker(workers):
        yield
        return
    registry = worker_handlers.WorkerHandler._registered_environments
    urn = python_urns.SUBPROCESS_SDK
    original = registry[urn]
    worker_handlers.WorkerHandler.register_environment(urn, bytes)(_handler_factory(pool, workers))
    try:
        yield
    finally:
        registry[urn] = original
