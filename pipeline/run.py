"""The launcher: check options and mapping, preflight the key, run the graph, write the report.

Everything that can fail because of configuration fails here, before any data is read.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import re
import time
from concurrent import futures
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
)

from pipeline import dataflow, outputs, warm_handler
from pipeline import report as run_report
from pipeline.exit_codes import (  # noqa: F401 - run.EXIT_* is how callers name them
    EXIT_AUTH,
    EXIT_CONFIG,
    EXIT_DEAD_LETTER_RATE,
    EXIT_INTERRUPTED,
    EXIT_NOT_SAVED,
    EXIT_NOTHING_DELIVERED,
    EXIT_NOTHING_READ,
    EXIT_OK,
    EXIT_RETRIES_EXHAUSTED,
    EXIT_SOURCE_FAILED,
)
from pipeline.graph import RunPlan, SyncToCapi
from pipeline.incremental import (
    StateFileChanged,
    effective_since,
    parse_since,
    read_watermark,
    write_watermark,
)
from pipeline.logs import READ_FAILED, STOP_MARKERS
from pipeline.options import DEAD_LETTER_FORMAT, CapiSyncOptions, parse_options, validate_options
from pipeline.source_check import check_source, fields_to_watch
from pipeline.warm_workers import (
    DIRECT_RUNNERS,
    LocalRunnerPlan,
    LocalWorkers,
    WarmWorkerPool,
    plan_local_runner,
)
from transforms import reasons
from transforms.errors import CapiSyncError, ConfigError
from transforms.events import MAX_AGE_MS

LOG = logging.getLogger(__name__)



class RunStopped(CapiSyncError):
    """A worker stopped the run because the API refused the key or the endpoint is wrong
    (connectors.capi_client.DeliveryStopped); the message is the cause."""


class SourceFailed(CapiSyncError):
    """The source failed while a worker read it (connectors.sql_source.SqlReadError: a dropped
    connection, a query the server ended); the message is the cause."""


_BEAM_STEP_SUFFIX = re.compile(r"\s*\[while running '[^']*'\]\s*$")


def refused_key_message(exc: BaseException) -> str | None:
    """The sink's AuthenticationError text, when a worker stopped the run with one."""
    from connectors.capi_client import DeliveryStopped  # a refused key, a wrong endpoint
    return _worker_error_line(exc, DeliveryStopped, STOP_MARKERS)


def source_failure_message(exc: BaseException) -> str | None:
    """The source's read error text, when a worker failed the run with one."""
    from connectors.sql_source import SqlReadError
    return _worker_error_line(exc, SqlReadError, (READ_FAILED,))


def _worker_error_line(exc: BaseException, error_type: type[BaseException],
                       markers: tuple[str, ...]) -> str | None:
    """The first line of the `error_type` a worker failed the run with, else None.

    A worker in the launcher re-raises it with Beam's "[while running '<step>']" added; one in
    another process comes back as Beam's RuntimeError around the worker's traceback, which
    holds the message we wrote, starting with one of `markers`. Either way, the cause is our
    one line.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, error_type):
            return _BEAM_STEP_SUFFIX.sub("", str(seen).splitlines()[0])
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    for marker in markers:
        if marker in text:
            return _BEAM_STEP_SUFFIX.sub("", text[text.index(marker):].splitlines()[0])
    return None


@dataclasses.dataclass(frozen=True)
class RunOutcome:
    report: dict[str, Any]
    exit_code: int
    not_saved: tuple[str, ...] = ()    # why a result could not be written, one line each
    failure: str | None = None      # one line: why the exit code is not 0
    printout: str | None = None        # what the command prints instead of the summary (dry run)


def run_verdict(report: dict[str, Any], max_dead_letter_rate: float | None
                ) -> tuple[int, str | None]:
    """The exit code of a finished run and its one-line reason (README: Exit codes)."""
    rows, accepted = report["rows_read"], report["events_accepted"]
    dead, exhausted = report["events_dead_lettered"], \
        report["dead_letter_reasons"].get(reasons.RETRIES_EXHAUSTED, 0)
    if rows == 0:
        return EXIT_NOTHING_READ, ("no row was read: the input matched no file or the query "
                                   "returned no row")
    if exhausted:
        return EXIT_RETRIES_EXHAUSTED, (f"{exhausted:,} events exhausted their retries: replay "
                                        "their dead letters")
    if accepted == 0 and dead:
        top, count = max(report["dead_letter_reasons"].items(), key=lambda item: item[1])
        if dead == 1:
            return EXIT_NOTHING_DELIVERED, (f"the one event that could be sent was "
                                            f"dead-lettered ({top}); nothing was sent")
        return EXIT_NOTHING_DELIVERED, (f"all {dead:,} events that could be sent were "
                                        f"dead-lettered (most: {top} {count:,}); nothing was sent")
    if accepted == 0:
        return EXIT_NOTHING_READ, (f"all {rows:,} rows read were skipped "
                                   f"({', '.join(report['skip_reasons'])}); nothing was sent")
    if max_dead_letter_rate is not None and dead / rows > max_dead_letter_rate:
        return EXIT_DEAD_LETTER_RATE, (f"{dead / rows:.1%} of the rows read were dead-lettered, "
                                       f"above --max-dead-letter-rate {max_dead_letter_rate:g}")
    return EXIT_OK, None


def apply_local_plan(options: PipelineOptions, plan: LocalRunnerPlan) -> None:
    """Writes the plan's runner, worker count and mode into the options (DirectRunner with one
    worker process per core unless the user chose otherwise, see `pipeline.warm_workers`)."""
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = "DirectRunner"
    if (standard.runner in DIRECT_RUNNERS) != plan.local:
        raise CapiSyncError(f"internal: the local runner plan ({plan}) was made for other "
                            f"options than these (--runner {standard.runner})")
    if plan.local and plan.workers:
        direct = options.view_as(DirectOptions)
        direct.direct_num_workers = plan.workers
        direct.direct_running_mode = plan.running_mode


def plan_run(argv: list[str], now: dt.datetime | None = None,
             local: LocalRunnerPlan | None = None) -> tuple[PipelineOptions, RunPlan]:
    """Parses and checks everything; raises ConfigError before any data is read."""
    from transforms.mapping import load_mapping

    options = parse_options(argv)    # an argument Beam would discard is an error
    opts = options.view_as(CapiSyncOptions)
    validate_options(opts)
    runner_plan = local or plan_local_runner(argv)
    apply_local_plan(options, runner_plan)      # checks the plan agrees with --runner
    dry_run = dataflow.dry_run_requested(options)
    if dry_run or not runner_plan.local:
        dataflow.check_remote_run(options, dry_run)
    mapping_plan = load_mapping(opts.mapping)
    if not opts.pixel_id and mapping_plan.pixel_id is None and \
            opts.input_format != DEAD_LETTER_FORMAT:     # a replay's records carry their pixel
        raise ConfigError(
            "No pixel to send to: give --pixel-id (the pixel id of your Conversions API key, "
            "px_…), or map pixel_id in the mapping (pixel_id: <column>) to send each row to "
            "its own pixel.")
    now = now or dt.datetime.now(dt.timezone.utc)
    since = parse_since(opts.since, now) if opts.since else None
    # A dry run reads nothing: not even the watermark (the query is shown without it).
    watermark = read_watermark(opts.state_file, now) if opts.state_file and not dry_run else None
    lower_bound = effective_since(since, watermark, now)
    # Files carry event times, not load times: filtering them by the watermark could skip rows
    # that arrived late, so only an explicit --since filters mapped events (see the README).
    event_time_floor = max(since, now - dt.timedelta(milliseconds=MAX_AGE_MS)) if since else None
    run_id = f"{now:%Y%m%dT%H%M%SZ}-{os.getpid()}"    # two runs started in one second differ
    dead_letter_prefix = opts.dead_letter or os.path.join("dead_letters", run_id, "dead")
    schema_notes: tuple[str, ...] | None = None      # None: the source was not checked
    if not dry_run:      # a dry run touches no output and no source
        check_outputs_writable(opts, dead_letter_prefix)
        schema_notes = check_source(opts, mapping_plan, lower_bound,
                                    options.view_as(GoogleCloudOptions).project,
                                    local=runner_plan.local)
    return options, RunPlan(
        options=opts,
        mapping_plan=mapping_plan,
        since=lower_bound,
        filter_since_ms=int(event_time_floor.timestamp() * 1000) if event_time_floor else None,
        dead_letter_prefix=dead_letter_prefix,
        watermark=watermark,
        schema_notes=schema_notes,
    )


def check_outputs_writable(opts: CapiSyncOptions, dead_letter_prefix: str) -> None:
    outputs.check_writable(dead_letter_prefix, "--dead-letter", is_prefix=True)
    outputs.check_no_earlier_dead_letters(dead_letter_prefix)
    for location, what in ((opts.report, "--report"), (opts.state_file, "--state-file")):
        if location:
            outputs.check_writable(location, what)


def preflight(opts: CapiSyncOptions) -> None:
    """One validate_only request per known pixel: a wrong key stops the run before any read."""
    from connectors.capi_client import CapiClient
    from connectors.secrets import read_api_key

    if opts.skip_preflight or not opts.pixel_id:
        return
    api_key = read_api_key(opts.api_key_env, opts.api_key_secret)
    client = CapiClient(opts.endpoint, opts.pixel_id, api_key)
    try:
        client.preflight()
    finally:
        client.close()


def run(argv: list[str], local: LocalWorkers | None = None) -> RunOutcome:
    """One run. `local` is the local runner's plan and the worker processes the command line
    started for it (`pipeline.warm_workers.started`); without it, the plan is made here and
    worker processes are spawned when the runner asks for them."""
    local = local or LocalWorkers(plan_local_runner(argv), WarmWorkerPool())
    options, plan = plan_run(argv, local=local.plan)
    opts = plan.options
    if options.view_as(TestOptions).dry_run:
        return dry_run(options, plan)
    with futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="preflight") as executor:
        key_checked = executor.submit(preflight, opts)   # one API round trip, while Beam plans
        started, started_at = time.monotonic(), dt.datetime.now(dt.timezone.utc)
        pipeline = beam.Pipeline(runner=warm_handler.local_runner(local.plan, options),
                                 options=options)
        _ = pipeline | "SyncToCapi" >> SyncToCapi(plan)
        key_checked.result()             # a refused key stops the run here, before any read
    if local.plan.local and not local.plan.fast:
        LOG.info("DirectRunner as Beam ships it (the local speed-ups are off: %s)",
                 local.plan.why_not_fast)
    try:
        with warm_handler.serving(local):
            result = pipeline.run()
            result.wait_until_finish()
    except Exception as exc:
        message = refused_key_message(exc)
        if message is not None:
            raise RunStopped(message) from None
        message = source_failure_message(exc)
        if message is not None:
            raise SourceFailed(message) from None
        raise
    duration = time.monotonic() - started
    counters = run_report.counters_from_result(result)
    report = run_report.build_report(
        counters,
        started_at=started_at.isoformat(),
        duration_s=round(duration, 3),
        rows_per_s=round(counters.get("rows_read", 0) / duration, 1) if duration else None,
        mapped_fields=fields_to_watch(plan.mapping_plan) if plan.schema_notes is None
        else None,                     # unchecked source: warn about fields empty on all events
        schema_notes=plan.schema_notes or (),
        validate_only=opts.validate_only,
        since=plan.since.isoformat(),
        dead_letter_prefix=plan.dead_letter_prefix,
        report_path=opts.report,
    )
    code, failure = run_verdict(report, opts.max_dead_letter_rate)
    report.update(exit_code=code, failure=failure)
    # A 2xx that was not JSON may not have come from the API: the next run re-sends those rows
    # (harmless, the API dedups on ids) rather than the watermark skipping them for good.
    doubtful = report["suspicious_2xx_bodies"]
    not_saved = save_results(report, plan, started_at, advance=code == EXIT_OK and not doubtful)
    if not_saved and code == EXIT_OK:
        code = EXIT_NOT_SAVED
    return RunOutcome(report, code, not_saved, failure)


def save_results(report: dict[str, Any], plan: RunPlan, started_at: dt.datetime,
                 advance: bool) -> tuple[str, ...]:
    """Writes the report and advances the watermark; what failed, one line each (never raises
    for a full or read-only disk: the summary is printed anyway and the run exits 7)."""
    opts, not_saved = plan.options, []
    if opts.report:
        try:
            run_report.write_report(report, opts.report)
        except OSError as error:
            not_saved.append(f"the report was not written to {opts.report}: {_why(error)}")
    if opts.state_file and advance and not opts.validate_only:
        try:
            write_watermark(opts.state_file, started_at, {
                k: report[k] for k in ("rows_read", "events_accepted", "events_dead_lettered",
                                       "events_skipped", "started_at")}, plan.watermark)
        except StateFileChanged as changed:
            not_saved.append(str(changed))
        except OSError as error:
            not_saved.append(f"the watermark was not advanced in {opts.state_file}: "
                             f"{_why(error)}; the next run reads from the old one again")
    return tuple(not_saved)


def _why(error: OSError) -> str:
    return error.strerror or str(error).splitlines()[0][:200]


def dry_run(options: PipelineOptions, plan: RunPlan) -> RunOutcome:
    """DataflowRunner's dry run: the graph translated as for a submission, then described; no
    preflight, nothing read, sent, staged or written (`pipeline.dataflow`)."""
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | "SyncToCapi" >> SyncToCapi(plan)
    job = dataflow.describe_dry_run(pipeline.run(), options)
    return RunOutcome({}, EXIT_OK, printout=dataflow.format_dry_run(job))
