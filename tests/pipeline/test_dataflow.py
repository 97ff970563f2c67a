"""The real graph translated for Dataflow, offline: every source kind, with and without
--dedupe; named steps, no secret in the job, the package staged, the key read on the workers.

Nothing here reaches Google Cloud: DataflowRunner's dry run stops before its API client.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.internal import pickler
from apache_beam.internal.cloudpickle import cloudpickle
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.runners.dataflow.internal import apiclient

from connectors.sink import DeliverBatches
from pipeline import dataflow
from pipeline.graph import SyncToCapi
from pipeline.run import RunOutcome, plan_run, run
from transforms.errors import ConfigError

API_KEY = "sk-svcacct-dryRunMarker0123456789abcdef"     # in the launcher's environment only
DB_PASSWORD = "pg-password-marker-5e1d"
SECRET = "projects/my-proj/secrets/capi-key/versions/latest"
DATAFLOW = ["--runner", "DataflowRunner", "--project", "my-proj", "--region", "europe-west1",
            "--temp_location", "gs://my-bucket/tmp", "--dry_run", "True",
            "--sdk_container_image", "europe-west1-docker.pkg.dev/my-proj/capi/worker:1",
            "--pixel-id", "px_123", "--api-key-secret", SECRET]
DELIVERY_STEPS = ["BatchRequests", "Deliver", "CountAccepted"]

SOURCES = {
    "parquet": (["--input", "gs://my-bucket/exports/*.parquet"],       # a corrupt file: dead letters
                ["ReadFiles", "MapToEvents", "CountUnreadableRows"],
                ["mapping", "unreadable", "delivery"]),
    "jsonl": (["--input", "gs://my-bucket/exports/*.jsonl"],
              ["ReadFiles", "MapToEvents", "CountUnreadableRows"],
              ["mapping", "unreadable", "delivery"]),
    "duckdb": (["--sql-url", "duckdb:///warehouse.db", "--sql-query",
                "SELECT * FROM orders WHERE loaded_at >= %(since)s", "--since", "2d"],
               ["ReadSql", "MapToEvents"], ["mapping", "delivery"]),
    "postgresql": (["--sql-url", "postgresql://capi@db.internal:5432/shop?sslmode=require",
                    "--sql-query", "SELECT * FROM orders"],
                   ["ReadSql", "MapToEvents"], ["mapping", "delivery"]),
    "bigquery-table": (["--bigquery-table", "my-proj:shop.orders"],
                       ["ReadBigQuery", "MapToEvents"], ["mapping", "delivery"]),
    "bigquery-query": (["--bigquery-query", "SELECT * FROM shop.orders WHERE t >= @since",
                        "--since", "36h"],
                       ["ReadBigQuery", "MapToEvents"], ["mapping", "delivery"]),
    "dead-letter-replay": (["--input", "gs://my-bucket/dead/*.jsonl",
                            "--input-format", "dead-letter"],
                           ["ReadDeadLetters", "ReplayEvents"], ["replay", "delivery"]),
}
CASES = [(source, dedupe) for source in SOURCES for dedupe in (False, True)]


def case_argv(source: str, dedupe: bool) -> list[str]:
    return [*DATAFLOW, *SOURCES[source][0], *(["--dedupe"] if dedupe else [])]


def expected_steps(source: str, dedupe: bool) -> list[str]:
    _, reading, writers = SOURCES[source]
    return [*reading, *(["DedupeRunWide"] if dedupe else []), *DELIVERY_STEPS,
            *(f"WriteDeadLetters-{step}" for step in writers)]


@pytest.fixture(scope="module")
def translated():
    """One Dataflow translation holding every case's graph (one translation costs ~2 s)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENAI_CAPI_API_KEY", API_KEY)
    mp.setenv("PGPASSWORD", DB_PASSWORD)
    options, _ = plan_run(case_argv("parquet", False))
    pipeline = beam.Pipeline(options=options)
    for source, dedupe in CASES:
        _, plan = plan_run(case_argv(source, dedupe))
        _ = pipeline | f"SyncToCapi-{source}-{dedupe}" >> SyncToCapi(plan)
    result = pipeline.run()
    yield result.job.proto_pipeline
    mp.undo()


def children(proto: beam_runner_api_pb2.Pipeline, parent: str) -> list[str]:
    transforms = proto.components.transforms
    parent_id = next(tid for tid, t in transforms.items() if t.unique_name == parent)
    return [transforms[tid].unique_name.rsplit("/", 1)[1]
            for tid in transforms[parent_id].subtransforms]


def do_fns(proto: beam_runner_api_pb2.Pipeline):
    for transform in proto.components.transforms.values():
        if transform.spec.urn == common_urns.primitives.PAR_DO.urn:
            payload = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload)
            if payload.do_fn.urn == "beam:dofn:pickled_python_info:v1":
                yield transform.unique_name, pickler.loads(payload.do_fn.payload)[0]


@pytest.mark.parametrize("source, dedupe", CASES)
def test_every_step_is_named_as_the_graph_reads(translated, source, dedupe):
    assert children(translated, f"SyncToCapi-{source}-{dedupe}") == \
        expected_steps(source, dedupe)


def test_no_transform_of_the_job_goes_by_a_generated_name(translated):
    root = translated.root_transform_ids                # DataflowRunner's nameless wrapper
    names = [t.unique_name for tid, t in translated.components.transforms.items()
             if tid not in root]
    assert len(names) > 14 * 8
    unnamed = [n for n in names if re.search(r"<lambda>|<locals>| at 0x|^ref_", n)]
    assert unnamed == []


def test_no_key_or_password_is_pickled_into_any_step(translated):
    pickled = [(name, cloudpickle.dumps(fn)) for name, fn in do_fns(translated)]
    assert len(pickled) > 14 * 5
    for secret in (API_KEY, DB_PASSWORD):
        assert [name for name, blob in pickled if secret.encode() in blob] == []
    assert API_KEY.encode() not in translated.SerializeToString()


def test_the_workers_read_the_key_from_secret_manager_or_their_environment(
        translated, monkeypatch):
    sinks = [fn for name, fn in do_fns(translated) if name.endswith("/Deliver/ParDo(DeliverBatches)")]
    assert len(sinks) == len(CASES)
    for sink in sinks:
        assert isinstance(sink, DeliverBatches)
        # The job carries where the key is, never the key: the workers read it in setup().
        assert (sink._api_key, sink._api_key_secret, sink._api_key_env) == \
            (None, SECRET, "OPENAI_CAPI_API_KEY")
    on_worker = DeliverBatches(api_key_env="CAPI_KEY_ON_THE_WORKER")
    monkeypatch.setenv("CAPI_KEY_ON_THE_WORKER", "sk-svcacct-workerEnv")
    worker_copy = pickler.loads(pickler.dumps(on_worker))
    worker_copy.setup()
    try:
        assert worker_copy._api_key == "sk-svcacct-workerEnv"
    finally:
        worker_copy.teardown()


@pytest.mark.parametrize("source, dedupe", CASES)
def test_the_jobs_options_and_display_data_hold_no_key_or_password(monkeypatch, source, dedupe):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", API_KEY)
    monkeypatch.setenv("PGPASSWORD", DB_PASSWORD)
    options, _ = plan_run(case_argv(source, dedupe))
    # What Beam's Dataflow client puts in the job: its own builder, not ours.
    environment = apiclient.Environment(
        packages=[], options=options, environment_version="8",
        proto_pipeline_staged_url="gs://my-bucket/staging/pipeline.pb").proto
    sent = type(environment).to_json(environment)
    assert json.loads(sent)["sdkPipelineOptions"]["options"]["api_key_secret"] == SECRET
    assert API_KEY not in sent and DB_PASSWORD not in sent


@pytest.mark.parametrize("url", ["postgresql://capi:hunter2@db.internal/shop",
                                 "postgresql://capi@db.internal/shop?password=hunter2"])
def test_a_password_in_the_sql_url_is_refused_where_the_job_shows_its_options(url):
    with pytest.raises(ConfigError, match="--sql-url holds a password") as refused:
        plan_run([*DATAFLOW, "--sql-url", url, "--sql-query", "SELECT 1"])
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize("argv, message", [
    (["--runner", "DirectRunner", "--dry_run", "True"], "--dry_run is a DataflowRunner option"),
    (["--runner", "DataflowRunner", "--project", "p", "--temp_location", "gs://my-bucket/t"],
     "DataflowRunner workers need capi-sync installed: add --setup_file ./setup.py"),
    (["--runner", "DataflowRunner", "--project", "p", "--setup_file", "./setup.py"],
     "DataflowRunner needs --temp_location gs://BUCKET/tmp"),
    (["--runner", "DataflowRunner", "--project", "p", "--setup_file", "./setup.py",
      "--temp_location", "/tmp/local"], "DataflowRunner needs --temp_location gs://BUCKET/tmp"),
])
def test_what_a_dataflow_run_lacks_is_a_configuration_error(argv, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        plan_run([*argv, "--input", "gs://my-bucket/x.parquet", "--pixel-id", "px_1"])


def test_a_setup_file_without_setuptools_is_a_configuration_error(monkeypatch):
    # Python 3.12+ virtual environments come without setuptools: Beam's stager then failed
    # to build the package (`python -m build` and `setup.py sdist` both need it) with a
    # traceback, in a dry run too. setuptools is a dependency now; this is for an environment
    # that lost it. sys.modules[name] = None is how Python itself blocks an import.
    monkeypatch.setitem(sys.modules, "setuptools", None)
    with pytest.raises(ConfigError, match=re.escape(
            "--setup_file: Beam builds the workers' package from setup.py with setuptools, "
            "which this Python lacks")):
        plan_run([*DATAFLOW, "--setup_file", "./setup.py", "--input", "gs://my-bucket/x.parquet"])


@pytest.mark.parametrize("value, dry", [("True", True), ("true", True), ("1", True),
                                        ("False", False), ("false", False), ("0", False),
                                        ("no", False), (None, False)])
def test_dry_run_reads_its_value_as_one_would(value, dry):
    options = PipelineOptions([] if value is None else ["--dry_run", value])
    assert dataflow.dry_run_requested(options) is dry
    assert options.get_all_options()["dry_run"] is dry     # Beam then reads the same


def test_a_dry_run_prints_the_job_stages_setup_py_and_exits_0(tmp_path):
    """The command, end to end: the package really built from setup.py, nothing submitted."""
    import os

    from pipeline import warm_workers
    root = os.path.dirname(os.path.dirname(warm_workers.__file__))
    argv = [a for a in DATAFLOW if not a.startswith(("--sdk_container_image", "europe-west1-d"))]
    env = dict(os.environ, OPENAI_CAPI_API_KEY=API_KEY)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *argv, "--setup_file", os.path.join(root, "setup.py"),
         "--input", "gs://my-bucket/exports/*.parquet", "--dedupe"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert out.startswith("Dry run of Dataflow job beamapp-")
    assert "nothing was submitted, staged, read or sent" in out
    for step in ["  SyncToCapi", "    ReadFiles", "    MapToEvents", "    DedupeRunWide",
                 "    BatchRequests", "    Deliver", "    WriteDeadLetters-delivery"]:
        assert f"\n{step}\n" in out
    assert f"\n  --api_key_secret={SECRET}\n" in out and "\n  --dedupe=True\n" in out
    assert "(to gs://my-bucket/tmp)" in out
    # setuptools 69.3+ names the sdist capi_sync-… (PEP 625), earlier ones capi-sync-…
    assert re.search(r"\n  workflow\.tar\.gz  <- \S+/capi[-_]sync-0\.1\.0\.tar\.gz\n", out)
    assert API_KEY not in out + done.stderr
    assert "Traceback" not in done.stderr
    # Beam's stager runs `python -m build` first; without it the user read "No module named build"
    assert "No module named" not in done.stderr, done.stderr


def test_a_dry_run_outcome_is_a_printout_and_exit_0(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", API_KEY)
    outcome = run(case_argv("duckdb", True))
    assert isinstance(outcome, RunOutcome) and outcome.exit_code == 0
    assert outcome.printout.splitlines()[3:5] == ["  SyncToCapi", "    ReadSql"]
    assert "Submit: the same command without --dry_run." in outcome.printout
