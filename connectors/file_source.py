"""Reading Parquet, JSONL and CSV exports (local, gs://, globs) into RowChunks.

The graph, as Beam's own file IO does it:

    patterns -> MatchAll -> distinct paths -> ReadMatches -> PlanSplits -> Reshuffle -> ReadSplits

`PlanSplits` turns every Parquet file into one split per row group (JSONL and CSV files are one
split each, read as a stream of lines), and the Reshuffle spreads the splits over workers, so a
10 GB Parquet export is read in parallel while memory stays at about one row group per worker.

Source references are `<path>#row=<N>`, N counted from 1 in every format:
- Parquet: the Nth row of the file (row groups counted in order);
- JSONL: line N of the file (blank lines are skipped but still counted, so `sed -n Np` finds it);
- CSV: the Nth data record after the header (line N+1 when no field spans several lines); each
  line of a broken multi-line record counts as one (see `read_csv`).

Rows that cannot be read (a JSONL line that is not valid UTF-8, not JSON or not an object; a CSV
record with invalid UTF-8, broken quoting or the wrong number of fields; every physical line of a
broken record that spans several) become `DeadLetter(reason=mapping_error)`
on the `dead_letters` output. Their detail names the file, line and problem, never the content
(a raw line may hold PII).
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import json
import logging
import posixpath
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from connectors.rows import ChunkBuilder, RowChunk, source_ref
from transforms import json_text, metrics
from transforms.deadletter import DEAD_LETTERS, DeadLetter
from transforms.reasons import MAPPING_ERROR

_LOG = logging.getLogger(__name__)

AUTO, PARQUET, JSONL, CSV = "auto", "parquet", "jsonl", "csv"
FILE_FORMATS = (AUTO, PARQUET, JSONL, CSV)

CHUNKS = "chunks"                 # main output tag of ReadFiles

_FORMAT_BY_EXTENSION = {
    ".parquet": PARQUET, ".pq": PARQUET,
    ".jsonl": JSONL, ".ndjson": JSONL, ".json": JSONL,
    ".csv": CSV,
}
_PARQUET_BUFFER_BYTES = 8 << 20   # stream column chunks instead of loading them whole


def detect_format(path: str) -> str:
    """The file format from the name: `x.parquet` -> parquet, `x.jsonl.gz` -> jsonl, ...

    Raises ValueError for a name whose extension says nothing (pass `file_format` then).
    """
    name = path.lower()
    compression = CompressionTypes.detect_compression_type(name)
    if compression != CompressionTypes.UNCOMPRESSED:
        name = posixpath.splitext(name)[0]
    file_format = _FORMAT_BY_EXTENSION.get(posixpath.splitext(name)[1])
    if file_format is None:
        raise ValueError(
            f"Cannot tell the format of {path} from its extension (expected .parquet/.pq, "
            f".jsonl/.ndjson/.json or .csv, optionally compressed like .jsonl.gz); "
            f"pass the format explicitly (--input-format parquet|jsonl|csv)."
        )
    if file_format == PARQUET and compression != CompressionTypes.UNCOMPRESSED:
        raise ValueError(
            f"{path}: Parquet files compress their pages themselves; a compressed Parquet file "
            f"({compression}) cannot be read. Decompress it first."
        )
    return file_format


WILDCARDS = "*?["


def has_wildcard(pattern: str) -> bool:
    """Whether FileSystems.match reads `pattern` as a glob (`*`, `?` or `[...]`)."""
    return any(char in pattern for char in WILDCARDS)


def match_paths(pattern: str) -> list[str]:
    """The paths `pattern` matches (local or gs://), in FileSystems.match's order.

    A glob may match none. A path without a wildcard must name a file: FileNotFoundError
    otherwise. (Beam's `EmptyMatchTreatment.ALLOW_IF_WILDCARD` counts only `*` as a wildcard
    and raises a bare `ValueError: ALLOW_IF_WILDCARD` for any other pattern that matches
    nothing, so the readers match with this instead of `fileio.MatchAll`.)
    """
    paths = [metadata.path for metadata in FileSystems.match([pattern])[0].metadata_list]
    if not paths and not has_wildcard(pattern):
        name = posixpath.basename(pattern.rstrip("/"))
        folder = "" if "." in name else \
            f" (a folder? name its files: {pattern.rstrip('/')}/*.parquet)"
        raise FileNotFoundError(f"{pattern}: no such file{folder}. A path without a wildcard "
                                f"must name an existing file; a glob may match none.")
    return paths


def column_selector(columns: Sequence[str] | None) -> Callable[[str], bool] | None:
    """Which columns to keep: None keeps all.

    A column is kept when it is requested, when it is a flat column named by a dotted path under
    a requested column (`user.email` when `user` is requested), or when a requested dotted path
    starts in it (struct `user` when `user.email` is requested). Requested columns that a file
    does not have are simply absent from its rows.
    """
    if columns is None:
        return None
    wanted = set(columns)
    for column in columns:
        parts = column.split(".")
        wanted.update(".".join(parts[:end]) for end in range(1, len(parts)))
    prefixes = tuple(column + "." for column in columns)
    return lambda name: name in wanted or name.startswith(prefixes)


@dataclasses.dataclass(frozen=True)
class FileSplit:
    """One unit of reading work: a whole JSONL/CSV file or one Parquet row group."""

    path: str
    file_format: str
    row_group: int | None = None    # Parquet only
    first_row: int = 1              # row number (from 1) of the split's first row
    unreadable: str | None = None   # why the file cannot be read at all (a corrupt footer)


def open_file(path: str, file_format: str) -> IO[bytes]:
    """A binary stream through Beam's FileSystems (local, gs://, ...); text formats decompress
    by extension (.gz, .bz2, .zst, ...). A local Parquet file is opened by pyarrow itself: its
    reads then skip a Python file object (~0.5 us of CPU per row)."""
    if file_format == PARQUET and FileSystems.get_scheme(path) is None:
        return pa.OSFile(path)
    compression = (CompressionTypes.UNCOMPRESSED if file_format == PARQUET
                   else CompressionTypes.AUTO)
    return FileSystems.open(path, mime_type="application/octet-stream",
                            compression_type=compression)


def plan_parquet_splits(path: str, handle: IO[bytes]) -> Iterator[FileSplit]:
    """One split per row group, read from the file footer only."""
    metadata = pq.ParquetFile(handle).metadata
    first_row = 1
    for index in range(metadata.num_row_groups):
        yield FileSplit(path, PARQUET, index, first_row)
        first_row += metadata.row_group(index).num_rows


def read_parquet_row_group(handle: IO[bytes], split: FileSplit,
                           keep: Callable[[str], bool] | None,
                           chunk_size: int) -> Iterator[RowChunk]:
    """The rows of one row group as Arrow-backed chunks (`RowChunk.of_arrow`)."""
    parquet_file = pq.ParquetFile(handle, buffer_size=_PARQUET_BUFFER_BYTES)
    names = parquet_file.schema_arrow.names
    columns = None if keep is None else [name for name in names if keep(name)]
    row_number = split.first_row
    for batch in parquet_file.iter_batches(batch_size=chunk_size, row_groups=[split.row_group],
                                           columns=columns, use_threads=False):
        yield RowChunk.of_arrow(batch, split.path, row_number)
        row_number += batch.num_rows


# A reader yields (row, source) for a good row and a DeadLetter for an unreadable one.
RowOrDeadLetter = tuple[dict[str, Any], str] | DeadLetter


def text_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """Lines one at a time, a UTF-8 BOM before the first removed (memory stays flat; Beam's
    CompressedFile has readline, not iter). Every text reader, and the launcher's peeks at CSV
    headers and JSONL records, read lines through this."""
    first = True
    for line in iter(handle.readline, b""):
        if first and line.startswith(codecs.BOM_UTF8):
            line = line[len(codecs.BOM_UTF8):]
        first = False
        yield line


def _unreadable(detail: str, source: str) -> DeadLetter:
    return DeadLetter(reason=MAPPING_ERROR, detail=detail, source=source)


def _json_lines(handle: IO[bytes], path: str) -> Iterator[tuple[str, str, Any]]:
    """(source, "line N of path", parsed value) per non-blank line; a line that is not UTF-8 or
    not JSON comes with its `mapping_error` DeadLetter as the value (never its content).

    A file that is one JSON document spread over lines (its first line `[`, `{`, or the
    unfinished start of an array) is one DeadLetter for the whole file instead of one per line.
    """
    first = True
    for line_number, line in enumerate(text_lines(handle), start=1):
        text = line.strip()
        if not text:
            continue
        source = source_ref(path, line_number)
        where = f"line {line_number} of {path}"
        try:
            value = json_text.loads(line.decode("utf-8"))
        except UnicodeDecodeError as error:
            value = _unreadable(
                f"{where} is not valid UTF-8 (byte {error.start + 1} of the line)", source)
        except json.JSONDecodeError as error:
            if first and (text in (b"[", b"{") or text.startswith(b"[")):
                yield path, path, _json_document(path, text[:1].decode())
                return
            value = _unreadable(
                f"{where} is not valid JSON: {error.msg} (column {error.colno})", source)
        first = False
        yield source, where, value


def _json_document(path: str, opener: str) -> DeadLetter:
    name = posixpath.basename(path)
    stem = name.split(".", 1)[0]
    what, jq = ("an array", "'.[]'") if opener == "[" else ("an object", ".")
    return _unreadable(
        f"{path} is one JSON document ({what} over several lines), not JSON Lines (one object "
        f"per line); none of its rows were read. Convert it first, e.g. "
        f"jq -c {jq} {name} > {stem}.jsonl", path)


def read_jsonl(handle: IO[bytes], path: str,
               keep: Callable[[str], bool] | None = None) -> Iterator[RowOrDeadLetter]:
    """One JSON object per line."""
    for source, where, value in _json_lines(handle, path):
        if isinstance(value, DeadLetter):
            yield value
            continue
        if not isinstance(value, dict):
            yield _unreadable(f"{where} is a JSON {_json_kind(value)}, not an object", source)
            continue
        if keep is not None:
            value = {key: item for key, item in value.items() if keep(key)}
        yield value, source


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


class _Utf8Lines:
    """Decodes lines for the csv module and remembers whether one was not valid UTF-8.

    csv.reader pulls exactly the lines of one record before returning it (no read-ahead), so
    the flag, checked and cleared after each record, belongs to that record.
    """

    def __init__(self, lines: Iterable[bytes]) -> None:
        self._lines = iter(lines)
        self.invalid = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            self.invalid = True
            return line.decode("utf-8", "replace")


def read_csv(handle: IO[bytes], path: str,
             keep: Callable[[str], bool] | None = None) -> Iterator[RowOrDeadLetter]:
    """A header row, then records; every value a string, empty values None.

    Quoting is read strictly (`csv` strict mode): a quote must close a field and be followed by
    a comma or the end of the line. A quoted field may hold line breaks, so an unbalanced quote
    would otherwise swallow every following line into one record. A record that spans several
    physical lines and is broken (a quote never closed, text after a closing quote, the wrong
    number of fields, invalid UTF-8) therefore becomes one dead letter per physical line, each
    naming the span: nothing hides inside one record, and the report's row count matches the
    lines a user counts (`wc -l` minus the header, blank lines aside).
    """
    lines = _Utf8Lines(text_lines(handle))
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as error:
        yield _unreadable(f"the header (line 1) of {path} cannot be parsed: {error}; no record "
                          f"of the file was read", source_ref(path, 1))
        return
    if header is None:
        return
    if lines.invalid:
        _LOG.warning("The header of %s is not valid UTF-8; undecodable bytes in column names "
                     "were replaced by U+FFFD.", path)
    width = len(header)
    kept = [(index, name) for index, name in enumerate(header) if keep is None or keep(name)]
    record_number = 0
    while True:
        lines.invalid = False
        first_line = reader.line_num + 1
        try:
            record, problem = next(reader), None
        except StopIteration:
            return
        except csv.Error as error:
            record, problem = None, f"cannot be parsed: {error}"
        if problem is None and not record:          # a blank line is not a record
            continue
        if problem is None and lines.invalid:
            problem = "is not valid UTF-8"
        elif problem is None and len(record) != width:
            problem = f"has {_fields(len(record))}; the header has {_fields(width)}"
        last_line = reader.line_num
        if problem is None:
            record_number += 1
            yield {name: record[index] or None for index, name in kept}, source_ref(
                path, record_number)
        elif last_line == first_line:
            record_number += 1
            yield _unreadable(f"CSV record {record_number} (line {first_line}) of {path} "
                              f"{problem}", source_ref(path, record_number))
        else:
            for line in range(first_line, last_line + 1):
                record_number += 1
                yield _unreadable(
                    f"line {line} of {path} is one of lines {first_line}-{last_line}, read as one "
                    f"CSV record that {problem}: a quote opened on line {first_line} and was not "
                    f"closed where it should be? Each of the {last_line - first_line + 1} lines "
                    f"is dead-lettered; fix the quoting and send the file again.",
                    source_ref(path, record_number))


def _fields(count: int) -> str:
    return f"{count} field" if count == 1 else f"{count} fields"


_TEXT_READERS = {JSONL: read_jsonl, CSV: read_csv}


class _PlanSplitsFn(beam.DoFn):
    """ReadableFile -> FileSplit(s): one per Parquet row group, one per text file."""

    def __init__(self, file_format: str) -> None:
        self._file_format = file_format
        self._files = Metrics.counter(metrics.NAMESPACE, metrics.SOURCE_FILES)

    def process(self, readable: fileio.ReadableFile) -> Iterator[FileSplit]:
        path = readable.metadata.path
        self._files.inc()
        try:
            file_format = detect_format(path) if self._file_format == AUTO else self._file_format
        except ValueError as error:      # `exports/*` matched notes.txt
            yield FileSplit(path, AUTO, unreadable=f"{error} None of its rows were read.")
            return
        if file_format != PARQUET:
            yield FileSplit(path, file_format)
            return
        try:
            with open_file(path, PARQUET) as handle:
                splits = list(plan_parquet_splits(path, handle))
        except (pa.ArrowException, OSError) as error:    # empty, truncated, not Parquet at all
            yield FileSplit(path, PARQUET, unreadable=(
                f"{path} is not a readable Parquet file ({_first_line(error)}); none of its rows "
                f"were read. Export it again, or remove it from the input."))
            return
        yield from splits


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:300] if text else 'no message'}"


class _ReadSplitFn(beam.DoFn):
    """FileSplit -> RowChunks (main output) and DeadLetters (tagged `dead_letters`)."""

    def __init__(self, columns: Sequence[str] | None, chunk_size: int) -> None:
        self._columns = None if columns is None else list(columns)
        self._chunk_size = chunk_size
        self._keep: Callable[[str], bool] | None = None
        self._rows_read = Metrics.counter(metrics.NAMESPACE, metrics.SOURCE_ROWS_READ)
        self._unreadable = Metrics.counter(metrics.NAMESPACE, metrics.SOURCE_ROWS_UNREADABLE)

    def setup(self) -> None:
        self._keep = column_selector(self._columns)

    def process(self, split: FileSplit) -> Iterator[RowChunk | beam.pvalue.TaggedOutput]:
        if split.unreadable is not None:      # one dead letter stands for the whole file
            self._unreadable.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, _unreadable(split.unreadable, split.path))
            return
        with open_file(split.path, split.file_format) as handle:
            if split.file_format == PARQUET:
                yield from self._read_row_group(handle, split)
                return
            chunks = ChunkBuilder(self._chunk_size)
            for item in _TEXT_READERS[split.file_format](handle, split.path, self._keep):
                if isinstance(item, DeadLetter):
                    self._unreadable.inc()
                    yield beam.pvalue.TaggedOutput(DEAD_LETTERS, item)
                    continue
                self._rows_read.inc()
                chunk = chunks.add(*item)
                if chunk is not None:
                    yield chunk
            last = chunks.flush()
            if last is not None:
                yield last


    def _read_row_group(self, handle: IO[bytes],
                        split: FileSplit) -> Iterator[RowChunk | beam.pvalue.TaggedOutput]:
        row_number = split.first_row
        try:
            for chunk in read_parquet_row_group(handle, split, self._keep, self._chunk_size):
                self._rows_read.inc(len(chunk))
                row_number += len(chunk)
                yield chunk
        except (pa.ArrowException, OSError) as error:   # a corrupt page past a good footer
            self._unreadable.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, _unreadable(
                f"row group {split.row_group} of {split.path} cannot be read from row "
                f"{row_number} on ({_first_line(error)}); the rows before it were read.",
                source_ref(split.path, row_number)))


def _as_patterns(patterns: str | Iterable[str]) -> list[str]:
    result = [patterns] if isinstance(patterns, str) else list(patterns)
    if not result or not all(isinstance(p, str) and p for p in result):
        raise ValueError(f"ReadFiles needs at least one non-empty file pattern, got {patterns!r}")
    return result


class ReadFiles(beam.PTransform):
    """Parquet/JSONL/CSV files -> RowChunks, plus dead letters for unreadable rows.

    Usage::

        chunks, unreadable = pipeline | "ReadFiles" >> ReadFiles(["gs://b/export/*.parquet"])
        # or: result = pipeline | ReadFiles(...); result.chunks; result.dead_letters

    The result is a `beam.pvalue.DoOutputsTuple`: it unpacks as `(chunks, dead_letters)` and
    also has the attributes / keys `chunks` and `dead_letters`. `chunks` is a PCollection of
    `RowChunk` (at most `chunk_size` rows each); `dead_letters` a PCollection of `DeadLetter`
    (reason `mapping_error`) for rows that cannot be read. See the module docstring for the
    `#row=N` convention.

    Args:
      patterns: file patterns (local paths, gs://..., globs); a pattern without a wildcard must
        match a file, a glob may match none. A file matched by several patterns is read once.
      file_format: "auto" (by extension, per file), "parquet", "jsonl" or "csv".
      columns: the top-level columns to read (None = all); see `column_selector`. Parquet reads
        only these columns from storage.
      chunk_size: the most rows per RowChunk.
    """

    def __init__(self, patterns: str | Iterable[str], file_format: str = AUTO,
                 columns: Sequence[str] | None = None, chunk_size: int = 1000) -> None:
        super().__init__()
        if file_format not in FILE_FORMATS:
            raise ValueError(f"file_format must be one of {', '.join(FILE_FORMATS)}, "
                             f"got {file_format!r}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self._patterns = _as_patterns(patterns)
        self._file_format = file_format
        self._columns = None if columns is None else list(columns)
        self._chunk_size = chunk_size

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.pvalue.DoOutputsTuple:
        paths = (
            pbegin
            | "FilePatterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> beam.FlatMap(match_paths))
        if len(self._patterns) > 1:    # one pattern matches each file once: no shuffle needed
            paths = paths | "ReadEachFileOnce" >> beam.Distinct()
        return (
            paths
            | "OpenFiles" >> fileio.ReadMatches()
            | "PlanSplits" >> beam.ParDo(_PlanSplitsFn(self._file_format))
            | "SpreadSplits" >> beam.Reshuffle()
            | "ReadSplits" >> beam.ParDo(_ReadSplitFn(self._columns, self._chunk_size))
            .with_output_types(RowChunk).with_outputs(DEAD_LETTERS, main=CHUNKS)
        )

    def display_data(self) -> dict[str, Any]:
        return {"patterns": ", ".join(self._patterns), "file_format": self._file_format,
                "columns": ", ".join(self._columns or ["(all)"]),
                "chunk_size": self._chunk_size}


class _ReadDeadLettersFn(beam.DoFn):
    """A dead-letter JSONL file -> DeadLetter records (a corrupt line becomes a new one)."""

    def process(self, readable: fileio.ReadableFile) -> Iterator[DeadLetter]:
        path = readable.metadata.path
        with open_file(path, JSONL) as handle:
            yield from read_dead_letters(handle, path)


def read_dead_letters(handle: IO[bytes], path: str) -> Iterator[DeadLetter]:
    """Records written by `DeadLetter.to_json`, one per line; blank lines skipped.

    A line that is not such a record is itself dead-lettered (`mapping_error`, source
    `<path>#row=<line>`, no `event`), so replaying a damaged file loses nothing silently.
    """
    for source, where, value in _json_lines(handle, path):
        if isinstance(value, DeadLetter):
            yield value
            continue
        try:
            letter = DeadLetter.from_record(value)
        except (AttributeError, TypeError):      # valid JSON, but not an object
            letter = None
        if letter is None or not isinstance(letter.reason, str):
            yield _unreadable(f"{where} is not a dead-letter record (an object with a "
                              f"'reason')", source)
            continue
        yield letter


class ReadDeadLetters(beam.PTransform):
    """Dead-letter JSONL files (local, gs://, globs, .gz) -> PCollection[DeadLetter].

    For `--input-format dead-letter` replays: each record keeps its reason, source and
    (already mapped, hashed) event, so the pipeline can send `event` again.
    """

    def __init__(self, patterns: str | Iterable[str]) -> None:
        super().__init__()
        self._patterns = _as_patterns(patterns)

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pbegin
            | "DeadLetterPatterns" >> beam.Create(self._patterns)
            | "MatchFiles" >> beam.FlatMap(match_paths)
            | "ReadEachFileOnce" >> beam.Distinct()
            | "OpenFiles" >> fileio.ReadMatches()
            | "ReadDeadLetterLines" >> beam.ParDo(_ReadDeadLettersFn())
        )
