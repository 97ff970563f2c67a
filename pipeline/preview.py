"""`capi-sync preview`: the first rows of a source through a mapping, before the first send.

    capi-sync preview --input 'exports/*.parquet' --mapping mapping.yaml [--rows 5]
    capi-sync preview --sql-url duckdb:///w.db --sql-file query.sql

For each of the first N rows (default 5): the source row's field names (never its values), then
the mapped event exactly as it would be sent (user fields normalized and hashed), or its
dead-letter reason, or why it is skipped; then the fill rate of every CAPI field over the rows
read. The mapping is checked against the source's columns first, as a run does. Nothing is
sent and no API key is needed: the rows are read by the source readers directly, without a
Beam pipeline. The API keeps the first event of each id, so this is the command to run before
the first real send.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from transforms.errors import ConfigError

DEFAULT_ROWS = 5
PREVIEW_HELP = f"""\
usage: capi-sync preview <source options> [--mapping FILE|PRESET] [--rows N]
                         [--since SINCE] [--state-file STATE_FILE]

Maps the first rows of the source (--rows, default {DEFAULT_ROWS}) exactly as a run would and
prints, per row, the source's field names (never their values) and the event as it would be
sent (user fields normalized and hashed), or its dead-letter reason; then the fill rate of
every CAPI field. The mapping is checked against the source's columns first. Nothing is sent
and no API key is needed.

  capi-sync preview --input 'exports/*.parquet' --mapping mapping.yaml
  capi-sync preview --sql-url duckdb:///w.db --sql-file query.sql --rows 20

The source options (--input, --input-format, --sql-url, --sql-query, --sql-file,
--bigquery-table, --bigquery-query) and --mapping are the run's: see `capi-sync --help`."""


@dataclasses.dataclass(frozen=True)
class PreviewRow:
    source: str | None
    field_names: tuple[str, ...]          # dotted paths of the row's non-empty values
    event: dict[str, Any] | None          # as it would be sent (hashed), or as dead-lettered
    dead_letter: str | None = None        # "reason: detail"
    skipped: str | None = None


@dataclasses.dataclass(frozen=True)
class Preview:
    source: str
    mapping: str
    rows: tuple[PreviewRow, ...]
    fill: tuple[tuple[str, int, str], ...]   # (CAPI field, rows whose event has it, mapping key)
    notes: tuple[str, ...] = ()

    @property
    def sendable(self) -> int:
        return sum(1 for row in self.rows if row.dead_letter is None and row.skipped is None)


def field_names(row: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The dotted paths of a row's non-empty values, as a mapping writes them:
    `{"user": {"email": "a@b"}, "items": [{"sku": "1"}]}` -> ["user.email", "items.X.sku"]."""
    names: list[str] = []
    for key, value in row.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            names.extend(field_names(value, path + "."))
        elif isinstance(value, (list, tuple)) and value and all(
                isinstance(item, Mapping) for item in value):
            merged: dict[str, None] = {}
            for item in value:
                merged.update(dict.fromkeys(field_names(item, path + ".X.")))
            names.extend(merged)
        elif value is not None and value != "" and value != [] and value != ():
            names.append(path)
    return names


def _parse(argv: list[str]):
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    from pipeline.options import (
        DEAD_LETTER_FORMAT,
        CapiSyncOptions,
        parse_options,
        validate_options,
    )

    parser = argparse.ArgumentParser(prog="capi-sync preview", add_help=False)
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    known, rest = parser.parse_known_args(argv)
    if known.rows < 1:
        raise ConfigError(f"--rows must be at least 1, got {known.rows}.")
    options = parse_options(rest)     # a typo'd flag is an error, as in a run
    opts = options.view_as(CapiSyncOptions)
    validate_options(opts)
    if opts.input and opts.input_format == DEAD_LETTER_FORMAT:
        raise ConfigError("preview maps source rows; dead-letter files hold events mapped "
                          "already. Re-send them with --validate-only to check them.")
    return opts, known.rows, options.view_as(GoogleCloudOptions).project


def _since(opts) -> dt.datetime:
    from pipeline.incremental import effective_since, parse_since, read_watermark

    now = dt.datetime.now(dt.timezone.utc)
    since = parse_since(opts.since, now) if opts.since else None
    watermark = read_watermark(opts.state_file, now) if opts.state_file else None
    return effective_since(since, watermark, now)


def _chunks(opts, limit: int, since: dt.datetime, project: str | None) -> Iterator[Any]:
    from connectors import source_peek
    from pipeline.source_check import sql_params

    if opts.input:
        yield from source_peek.first_chunks_of_files(opts.input, opts.input_format, limit)
    elif opts.sql_url:
        yield source_peek.first_rows_of_sql(opts.sql_url, opts.sql_query,
                                            sql_params(opts.sql_query, since), limit)
    else:
        yield source_peek.first_rows_of_bigquery(opts.bigquery_table, opts.bigquery_query,
                                                 project, limit)


def _label(opts) -> str:
    from connectors.sql_source import redact_url

    if opts.input:
        return ", ".join(opts.input)
    if opts.sql_url:
        return redact_url(opts.sql_url)
    return f"bigquery:{opts.bigquery_table or 'query'}"


def _preview_rows(chunks: Iterable[Any], mapper: Any) -> Iterator[PreviewRow]:
    from transforms.deadletter import DeadLetter

    for chunk in chunks:
        if isinstance(chunk, DeadLetter):       # a line the reader could not parse
            yield PreviewRow(chunk.source, (), None, f"{chunk.reason}: {chunk.detail}")
            continue
        results = (mapper.map_batch(chunk.batch, chunk.sources) if chunk.batch is not None
                   else [mapper.map_row(row, source)
                         for row, source in zip(chunk.rows, chunk.sources, strict=True)])
        for row, source, result in zip(chunk.rows, chunk.sources, results, strict=True):
            names = tuple(field_names(row))
            if result.event is not None:
                yield PreviewRow(source, names, result.event.event)
            elif result.dead_letter is not None:
                letter = result.dead_letter
                yield PreviewRow(source, names, letter.event,
                                 f"{letter.reason}: {letter.detail}")
            else:
                yield PreviewRow(source, names, None, skipped=result.skipped)


def fill_rates(rows: Iterable[PreviewRow], plan: Any) -> tuple[tuple[str, int, str], ...]:
    """Every CAPI field the mapping fills, and any other the events carry, with the number of
    rows whose event has it."""
    from transforms.coverage import filled_fields, mapped_capi_fields

    counts: Counter[str] = Counter()
    for row in rows:
        if row.event is not None:
            counts.update(filled_fields(row.event))
    keys: dict[str, str] = {}
    for location, fields in mapped_capi_fields(plan).items():
        for field in fields:
            keys.setdefault(field, location)
    for field in counts:
        keys.setdefault(field, "")
    return tuple((field, counts[field], location) for field, location in keys.items())


def preview(argv: list[str]) -> Preview:
    """Reads, checks and maps the first rows; raises ConfigError before reading a bad mapping."""
    from pipeline.source_check import check_source
    from transforms.columnar import ColumnarMapper
    from transforms.mapping import load_mapping

    opts, limit, project = _parse(argv)
    plan = load_mapping(opts.mapping)
    since = _since(opts)
    notes = check_source(opts, plan, since, project) or ()
    rows = tuple(_preview_rows(_chunks(opts, limit, since, project), ColumnarMapper(plan)))
    return Preview(_label(opts), plan.name, rows[:limit], fill_rates(rows[:limit], plan), notes)


def format_preview(result: Preview) -> str:
    count = "the first row" if len(result.rows) == 1 else f"the first {len(result.rows)} rows"
    lines = [f"capi-sync preview: {count} of {result.source} through {result.mapping} "
             "(nothing is sent)"]
    for number, row in enumerate(result.rows, start=1):
        lines.append(f"row {number}  {row.source or ''}".rstrip())
        lines.append("  source fields: " + (", ".join(row.field_names) or "(none)"))
        if row.skipped:
            lines.append(f"  skipped: {row.skipped}")
        elif row.dead_letter:
            lines.append(f"  dead letter: {row.dead_letter}")
        if row.event is not None:
            label = "event" if row.dead_letter is None else "event (would be dead-lettered)"
            lines.append(f"  {label}: {json.dumps(row.event, default=str, ensure_ascii=False)}")
    total = len(result.rows)
    lines.append(f"fill rate over the {total} row{'s' if total != 1 else ''} read "
                 f"({result.sendable} would be sent):")
    width = max([len("CAPI field"), *(len(field) for field, _, _ in result.fill)])
    lines.append(f"  {'CAPI field':<{width}}  {'rows':>5}  {'rate':>6}  mapping key")
    for field, count, location in result.fill:
        rate = f"{count / total:.0%}" if total else "-"
        lines.append(f"  {field:<{width}}  {count:>5}  {rate:>6}  {location}".rstrip())
    lines.extend(f"note: {note}" for note in result.notes)
    return "\n".join(lines)
