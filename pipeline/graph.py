"""The whole data flow on one screen: read -> map -> dedupe -> batch -> deliver -> account.

    rows ──MapToEvents──> event lists ──[DedupeRunWide]──> BatchRequests ──> Deliver ──> accepted
      │                        │                                               │
      └─> WriteDeadLetters     └─> WriteDeadLetters                            └─> WriteDeadLetters
          -unreadable              -mapping                                        -delivery
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import apache_beam as beam
from apache_beam.options.pipeline_options import TestOptions

from connectors.capi_client import RetryPolicy
from connectors.sink import DeliverBatches
from pipeline import steps
from pipeline.coders import EventList
from pipeline.options import DEAD_LETTER_FORMAT, CapiSyncOptions


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """What the launcher decided before building the graph (all picklable)."""

    options: CapiSyncOptions
    mapping_plan: object
    since: dt.datetime | None          # lower bound pushed down to the source
    filter_since_ms: int | None        # lower bound applied to mapped events (file sources)
    dead_letter_prefix: str
    watermark: dt.datetime | None = None   # what --state-file held at start (compare-and-swap)
    schema_notes: tuple[str, ...] | None = None  # mapping vs source columns; None: not checked


class SyncToCapi(beam.PTransform):
    """Reads the configured source and delivers it; returns the accepted counts per request.

    Dead letters go to `<dead-letter prefix>-<step>-NNNNN.jsonl`, one set of files per step that
    produced them (unreadable, mapping, delivery; replay when re-sending dead letters).
    """

    def __init__(self, run: RunPlan):
        super().__init__()
        self._run = run

    def expand(self, pbegin):
        opts, run = self._run.options, self._run
        if opts.input and opts.input_format == DEAD_LETTER_FORMAT:
            replayed = (pbegin
                        | "ReadDeadLetters" >> _read_dead_letters(opts)
                        | "ReplayEvents" >> beam.ParDo(steps.ReplayDeadLetters())
                        .with_output_types(EventList).with_outputs(steps.DEAD_LETTERS, main="events"))
            event_lists, dead_letters = replayed.events, {"replay": replayed[steps.DEAD_LETTERS]}
        else:
            chunks, unreadable = _read_rows(pbegin, run)
            map_step = steps.MapRowsToEvents(run.mapping_plan, run.filter_since_ms,
                                             opts.progress_seconds)
            if run.mapping_plan.group_by is not None:   # group_by: rows of a key -> one event
                chunks = (chunks
                          | "KeyRowsByGroup" >> beam.ParDo(steps.KeyRowsByGroup(run.mapping_plan))
                          | "GroupRowsByKey" >> beam.GroupByKey())
                map_step = steps.MapGroupsToEvents(run.mapping_plan, run.filter_since_ms,
                                                   opts.progress_seconds)
            mapped = (chunks
                      | "MapToEvents" >> beam.ParDo(map_step)
                      .with_output_types(EventList).with_outputs(steps.DEAD_LETTERS, main="events"))
            event_lists, dead_letters = mapped.events, {"mapping": mapped[steps.DEAD_LETTERS]}
            if unreadable is not None:
                dead_letters["unreadable"] = (
                    unreadable | "CountUnreadableRows" >> beam.ParDo(steps.CountUnreadableRows()))

        if opts.dedupe:
            event_lists = event_lists | "DedupeRunWide" >> steps.DedupeRunWide()
        delivered = (event_lists
                     | "BatchRequests" >> beam.ParDo(steps.BatchRequests(opts.batch_size))
                     .with_output_types(EventList)
                     | "Deliver" >> beam.ParDo(_sink(opts))
                     .with_outputs(DeliverBatches.DEAD_LETTERS, main="accepted"))
        accepted = delivered.accepted | "CountAccepted" >> beam.ParDo(
            steps.CountAccepted(opts.progress_seconds))
        dead_letters["delivery"] = delivered[DeliverBatches.DEAD_LETTERS]
        # One writer per step, not a Flatten into one: DirectRunner materializes a Flatten's
        # inputs in the launcher, which held every dead letter in its memory until the end.
        for step, records in dead_letters.items():
            _ = records | f"WriteDeadLetters-{step}" >> steps.WriteDeadLetters(
                f"{run.dead_letter_prefix}-{step}")
        return accepted


def _sink(opts: CapiSyncOptions) -> DeliverBatches:
    return DeliverBatches(
        endpoint=opts.endpoint, default_pixel_id=opts.pixel_id, api_key_env=opts.api_key_env,
        api_key_secret=opts.api_key_secret, validate_only=opts.validate_only,
        max_in_flight=opts.max_in_flight,
        retry=RetryPolicy(max_attempts=opts.max_attempts, max_elapsed_s=opts.retry_budget_seconds))


def _read_rows(pbegin, run: RunPlan):
    """The configured source -> (PCollection[RowChunk], PCollection[DeadLetter] or None)."""
    from connectors import sources

    opts = run.options
    since_param = {"since": run.since} if run.since is not None else {}
    if opts.input:
        read = sources.ReadFiles(
            opts.input, file_format=opts.input_format,
            columns=list(run.mapping_plan.required_columns) or None, chunk_size=opts.chunk_size)
        chunks, unreadable = pbegin | "ReadFiles" >> read
        return chunks, unreadable      # Parquet files too: a corrupt one is a dead letter
    if opts.sql_url:
        params = since_param if "since" in opts.sql_query else None
        return pbegin | "ReadSql" >> sources.ReadSql(
            opts.sql_url, opts.sql_query, params=params, chunk_size=opts.chunk_size,
            check_query=not opts.view_as(TestOptions).dry_run,      # a dry run reads nothing
            columns=list(run.mapping_plan.required_columns) or None), None
    params = since_param if opts.bigquery_query and "@since" in opts.bigquery_query else None
    return pbegin | "ReadBigQuery" >> sources.ReadBigQuery(
        table=opts.bigquery_table, query=opts.bigquery_query, params=params,
        chunk_size=opts.chunk_size), None


def _read_dead_letters(opts: CapiSyncOptions):
    from connectors import sources
    return sources.ReadDeadLetters(opts.input)
