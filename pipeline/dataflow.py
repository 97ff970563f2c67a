"""A Dataflow job seen before it is submitted: the checks a Dataflow run needs, and the dry run.

`--runner DataflowRunner --dry_run True` translates the whole graph as a submission would
(Beam's DataflowRunner: overrides, the portable pipeline, the `setup.py` package built for the
workers) and stops before contacting Google Cloud; `describe_dry_run` then says what would have
been submitted: the job's name, its steps, its options (those that differ from their defaults)
and the files that would be staged for the workers. Nothing is read, sent or staged.

Anyone who can view a Dataflow job sees its options, so nothing secret may be one: the API key
never is (the workers read it from Secret Manager or their environment, see
`connectors.secrets`), and a database password in `--sql-url` is refused for every runner but
the local one (`check_remote_run`).
"""
from __future__ import annotations

import dataclasses
import importlib.util
import os
from urllib.parse import parse_qsl, urlsplit

from apache_beam.options.pipeline_options import (
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)
from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

from pipeline.options import CapiSyncOptions
from transforms.errors import ConfigError

DATAFLOW_RUNNERS = ("DataflowRunner", "dataflow")
_FALSE_WORDS = ("false", "0", "no", "")
_PASSWORD_OPTIONS = ("password", "passwd")


def is_dataflow(options: PipelineOptions) -> bool:
    return options.view_as(StandardOptions).runner in DATAFLOW_RUNNERS


def dry_run_requested(options: PipelineOptions) -> bool:
    """`--dry_run True` asks for a dry run; the value is normalized in the options.

    Beam's `--dry_run` takes any text and treats every non-empty one as true, so that
    `--dry_run False` would also stop before submitting: here `false`, `0` and `no` mean no
    dry run, as one would read them.
    """
    test = options.view_as(TestOptions)
    value = test.dry_run
    wanted = str(value).strip().lower() not in _FALSE_WORDS if isinstance(value, str) else bool(value)
    test.dry_run = wanted
    return wanted


def url_has_password(url: str) -> bool:
    """`postgresql://u:pw@h/db` or `...?password=pw` (a libpq option) hold a password."""
    parts = urlsplit(url)
    if parts.password:
        return True
    return any(key.lower() in _PASSWORD_OPTIONS for key, _ in parse_qsl(parts.query))


def check_remote_run(options: PipelineOptions, dry_run: bool) -> None:
    """What a run on another runner than the local one needs; raises ConfigError."""
    opts = options.view_as(CapiSyncOptions)
    runner = options.view_as(StandardOptions).runner
    if dry_run and not is_dataflow(options):
        raise ConfigError(f"--dry_run is a DataflowRunner option; {runner} would run the job "
                          "for real. For a test run that records nothing, use --validate-only.")
    if opts.sql_url and url_has_password(opts.sql_url):
        raise ConfigError(
            f"--sql-url holds a password, and on {runner} the job's options are shown to anyone "
            "who can view the job. Give the workers the password through their environment "
            "(PGPASSWORD or a ~/.pgpass file in the worker container) and drop it from the URL.")
    if not is_dataflow(options):
        return
    setup, worker = options.view_as(SetupOptions), options.view_as(WorkerOptions)
    if not (setup.setup_file or worker.sdk_container_image):
        raise ConfigError(
            "DataflowRunner workers need capi-sync installed: add --setup_file ./setup.py (the "
            "package is built and staged for them), or --sdk_container_image with an image "
            "that has it.")
    if setup.setup_file and importlib.util.find_spec("setuptools") is None:
        raise ConfigError(
            "--setup_file: Beam builds the workers' package from setup.py with setuptools, which "
            "this Python lacks (virtual environments of Python 3.12 and later come without it). "
            "Install it (pip install setuptools) and run again.")
    cloud = options.view_as(GoogleCloudOptions)
    locations = [location for location in (cloud.temp_location, cloud.staging_location)
                 if location]
    if not any(location.startswith("gs://") for location in locations):
        raise ConfigError(
            "DataflowRunner needs --temp_location gs://BUCKET/tmp (and optionally "
            "--staging_location): without one, Beam tries to create a default bucket.")


@dataclasses.dataclass(frozen=True)
class StagedFile:
    local_path: str
    staged_name: str


@dataclasses.dataclass(frozen=True)
class DryRunJob:
    """What a Dataflow submission would have sent."""

    job_name: str
    steps: tuple[str, ...]                    # transform names, parents before children
    options: tuple[tuple[str, object], ...]   # the options that differ from their defaults
    staging_location: str
    staged: tuple[StagedFile, ...]


def describe_dry_run(result, options: PipelineOptions) -> DryRunJob:
    """The job of a DataflowRunner dry run's result (`result.job`, Beam's job description)."""
    job = result.job
    pipeline_proto = job.proto_pipeline
    return DryRunJob(
        job_name=job.proto.name,
        steps=tuple(_step_names(pipeline_proto)),
        options=tuple(sorted((key, value) for key, value in options.get_all_options(
            drop_default=True, retain_unknown_options=True).items() if value is not None)),
        staging_location=(options.view_as(GoogleCloudOptions).staging_location
                          or options.view_as(GoogleCloudOptions).temp_location),
        staged=tuple(_staged_files(pipeline_proto)),
    )


def _step_names(pipeline_proto: beam_runner_api_pb2.Pipeline) -> list[str]:
    transforms = pipeline_proto.components.transforms
    names: list[str] = []

    def visit(transform_id: str) -> None:
        transform = transforms[transform_id]
        names.append(transform.unique_name)
        for child in transform.subtransforms:
            visit(child)

    for root in pipeline_proto.root_transform_ids:
        if transforms[root].spec.urn:
            visit(root)
        else:       # DataflowRunner wraps the graph in one nameless root: its children are ours
            for child in transforms[root].subtransforms:
                visit(child)
    return names


def _staged_files(pipeline_proto: beam_runner_api_pb2.Pipeline) -> list[StagedFile]:
    staged: dict[str, StagedFile] = {}
    for environment in pipeline_proto.components.environments.values():
        for artifact in environment.dependencies:
            if artifact.type_urn != common_urns.artifact_types.FILE.urn:
                continue
            path = beam_runner_api_pb2.ArtifactFilePayload.FromString(artifact.type_payload).path
            name = os.path.basename(path)
            if artifact.role_urn == common_urns.artifact_roles.STAGING_TO.urn:
                name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                    artifact.role_payload).staged_name
            staged.setdefault(name, StagedFile(path, name))
    return sorted(staged.values(), key=lambda f: f.staged_name)


def format_dry_run(job: DryRunJob, depth: int = 3) -> str:
    """The dry run's printout: steps to `depth` levels (the whole graph has Beam's own inner
    steps too), options, staged files."""
    lines = [f"Dry run of Dataflow job {job.job_name}: nothing was submitted, staged, read "
             "or sent.", "", "Steps:"]
    for name in job.steps:
        level = name.count("/") + 1
        if level <= depth:
            lines.append("  " * level + name.rsplit("/", 1)[-1])
    lines += ["", "Options (those that differ from their defaults):"]
    lines += [f"  --{key}={value}" for key, value in job.options]
    lines += ["", f"Files that would be staged for the workers (to {job.staging_location}):"]
    lines += [f"  {f.staged_name}  <- {f.local_path}" for f in job.staged]
    lines += ["", "Submit: the same command without --dry_run."]
    return "\n".join(lines)
