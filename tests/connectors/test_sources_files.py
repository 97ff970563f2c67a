"""ReadFiles / ReadDeadLetters through real Beam pipelines (DirectRunner) on real files."""
from __future__ import annotations

import datetime
import gzip
import itertools
import re
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors.file_source import column_selector, match_paths, read_csv, read_jsonl
from connectors.rows import ChunkBuilder, arrow_batch_to_rows
from connectors.sources import ReadDeadLetters, ReadFiles, RowChunk, detect_format
from transforms.deadletter import DeadLetter
from transforms.reasons import MAPPING_ERROR

UTC = datetime.timezone.utc

ORDER_SCHEMA = pa.schema([
    ("event_name", pa.string()),
    ("context", pa.struct([("event_id", pa.string()),
                           ("page", pa.struct([("url", pa.string())]))])),
    ("user", pa.struct([("email", pa.string()), ("phone", pa.string())])),
    ("items", pa.list_(pa.struct([("id", pa.string()), ("quantity", pa.int64()),
                                  ("product", pa.struct([("price", pa.decimal128(9, 2))]))]))),
    ("value", pa.decimal128(9, 2)),
    ("currency", pa.string()),
    ("event_time", pa.timestamp("ms", tz="UTC")),
    ("attributes", pa.map_(pa.string(), pa.string())),
    ("email_sha256", pa.binary()),
])


def order_row(n: int) -> dict:
    """A purchase row with nested struct, list-of-struct and map columns."""
    return {
        "event_name": "purchase",
        "context": {"event_id": f"o-{n}", "page": {"url": f"https://shop.example/p/{n}"}},
        "user": {"email": f"buyer{n}@example.com", "phone": None},
        "items": [{"id": f"sku-{n}", "quantity": n, "product": {"price": Decimal("19.99")}},
                  {"id": "gift", "quantity": 1, "product": {"price": Decimal("0.29")}}],
        "value": Decimal(f"{n}.99"),
        "currency": "USD",
        "event_time": datetime.datetime(2026, 3, n, 12, 30, tzinfo=UTC),
        "attributes": {"coupon": f"C{n}"},
        "email_sha256": bytes([n, 0xAB]),
    }


def as_read(row: dict) -> dict:
    """What the source yields for `order_row`: maps as dicts, binary as hex."""
    return {**row, "email_sha256": row["email_sha256"].hex()}


def write_parquet(path: Path, rows: list[dict], schema: pa.Schema | None = None,
                  row_group_size: int = 1000) -> str:
    table = pa.Table.from_pylist(rows, schema=schema)
    pq.write_table(table, path, row_group_size=row_group_size)
    return str(path)


def chunk(path: str, numbered_rows: list[tuple[int, dict]]) -> RowChunk:
    return RowChunk([row for _, row in numbered_rows],
                    [f"{path}#row={number}" for number, _ in numbered_rows])


def unreadable(detail: str, source: str) -> DeadLetter:
    return DeadLetter(reason=MAPPING_ERROR, detail=detail, source=source)


def run_read(read: ReadFiles, chunks: list[RowChunk],
             dead_letters: list[DeadLetter] | None = None) -> None:
    with BeamTestPipeline() as pipeline:
        result = pipeline | "Read" >> read
        assert_that(result.chunks, equal_to(chunks), label="CheckChunks")
        assert_that(result.dead_letters, equal_to(dead_letters or []),
                    label="CheckDeadLetters")


def test_parquet_nested_columns_row_groups_globs_and_repeated_patterns(tmp_path: Path) -> None:
    rows = [order_row(n) for n in range(1, 8)]
    first = write_parquet(tmp_path / "part-0.parquet", rows[:5], ORDER_SCHEMA, row_group_size=3)
    second = write_parquet(tmp_path / "part-1.pq", rows[5:], ORDER_SCHEMA, row_group_size=3)
    (tmp_path / "README.txt").write_text("not an export")
    expected = [as_read(row) for row in rows]

    run_read(
        # part-0 matches twice and is read once; README.txt matches no pattern.
        ReadFiles([str(tmp_path / "*.parquet"), first, str(tmp_path / "*.pq")], chunk_size=2),
        [
            # Chunks never span row groups (3 rows each in part-0); numbering runs on.
            chunk(first, [(1, expected[0]), (2, expected[1])]),
            chunk(first, [(3, expected[2])]),
            chunk(first, [(4, expected[3]), (5, expected[4])]),
            chunk(second, [(1, expected[5]), (2, expected[6])]),
        ],
    )


def test_a_glob_of_any_wildcard_may_match_nothing_a_plain_path_must_name_a_file(
        tmp_path: Path) -> None:
    # Beam's ALLOW_IF_WILDCARD counts only `*`: `part-?.parquet` matching nothing failed the
    # run with a bare `ValueError: ALLOW_IF_WILDCARD`, and so did a missing plain path.
    first = write_parquet(tmp_path / "part-0.parquet", [order_row(1)], ORDER_SCHEMA)
    run_read(ReadFiles([first, str(tmp_path / "part-?.pq"), str(tmp_path / "[xy]*.parquet")]),
             [chunk(first, [(1, as_read(order_row(1)))])])
    assert match_paths(str(tmp_path / "part-?.parquet")) == [first]
    assert match_paths(str(tmp_path / "nothing-*")) == []
    missing = str(tmp_path / "part-9.parquet")
    with pytest.raises(FileNotFoundError, match=re.escape(
            f"{missing}: no such file. A path without a wildcard must name an existing file; "
            f"a glob may match none.")):
        match_paths(missing)
    with pytest.raises(Exception, match=re.escape(f"{missing}: no such file.")):
        run_read(ReadFiles([first, missing]), [])
    with pytest.raises(Exception, match=re.escape(f"{missing}: no such file.")):
        with BeamTestPipeline() as pipeline:
            _ = pipeline | ReadDeadLetters([missing])


def test_parquet_column_projection_keeps_existing_columns_only(tmp_path: Path) -> None:
    full = write_parquet(tmp_path / "full.parquet", [
        {"id": 1, "user": {"email": "a@example.com"}, "context.event_id": "e-1",
         "note": "not requested"},
        {"id": 2, "user": {"email": "b@example.com"}, "context.event_id": "e-2",
         "note": "not requested"},
    ])
    narrow = write_parquet(tmp_path / "narrow.parquet", [{"id": 3, "note": "x"}])

    with BeamTestPipeline() as pipeline:
        projected = pipeline | "Projected" >> ReadFiles(
            [full, narrow], columns=["id", "user", "context", "absent"])
        nothing = pipeline | "NothingExists" >> ReadFiles([full], columns=["absent"])
        assert_that(projected.chunks, equal_to([
            chunk(full, [(1, {"id": 1, "user": {"email": "a@example.com"},
                              "context.event_id": "e-1"}),
                         (2, {"id": 2, "user": {"email": "b@example.com"},
                              "context.event_id": "e-2"})]),
            chunk(narrow, [(1, {"id": 3})]),
        ]), label="CheckProjected")
        # Rows are still emitted (and counted) when none of their columns was asked for.
        assert_that(nothing.chunks, equal_to([chunk(full, [(1, {}), (2, {})])]),
                    label="CheckNothing")


JSONL_LINES = [
    b'\xef\xbb\xbf{"event_name": "purchase", "context": {"event_id": "j-1"}, "value": 19.99}',
    b"   ",
    b'{"user": {"email": "leaky@example.com"}, "value": }',
    b'["leaky@example.com"]',
    b'{"user": {"firstname": "Ren\xe9e"}}',
    '{"user": {"email": "zoë@example.com"}, "items": [{"id": "a", "quantity": 2}]}'.encode(),
    b'"leaky@example.com"',
    b'{"context": {"event_id": "j-8"}, "opt_out": false, "n": null}',
]


def test_jsonl_bad_lines_become_dead_letters_without_their_content(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(JSONL_LINES))   # no newline after the last line
    name = str(path)
    expected_dead = [
        unreadable(f"line 3 of {name} is not valid JSON: Expecting value (column 51)",
                   f"{name}#row=3"),
        unreadable(f"line 4 of {name} is a JSON array, not an object", f"{name}#row=4"),
        unreadable(f"line 5 of {name} is not valid UTF-8 (byte 28 of the line)",
                   f"{name}#row=5"),
        unreadable(f"line 7 of {name} is a JSON string, not an object", f"{name}#row=7"),
    ]

    run_read(ReadFiles([name], chunk_size=2), [
        chunk(name, [(1, {"event_name": "purchase", "context": {"event_id": "j-1"},
                          "value": 19.99}),
                     (6, {"user": {"email": "zoë@example.com"},
                          "items": [{"id": "a", "quantity": 2}]})]),
        chunk(name, [(8, {"context": {"event_id": "j-8"}, "opt_out": False, "n": None})]),
    ], expected_dead)
    assert not any("leaky" in letter.detail or "Ren" in letter.detail
                   for letter in expected_dead)


CSV_LINES = [
    b"event_id,email,value",
    b"c-1,a@example.com,19.99",
    b"c-2,,5",
    b"c-3,too,many,fields",
    b"",
    b'c-4,"multi',
    b'line",1',
    b"c-5,Ren\xe9e@example.com,2",
    b"c-6",
    b"c-7,b@example.com,3",
]


@pytest.mark.parametrize("document, what, jq", [
    (b'[\n  {"id": "o-1", "email": "leaky@example.com"},\n  {"id": "o-2"}\n]\n',
     "an array", "'.[]'"),
    (b'\xef\xbb\xbf  \n[{"id": "o-1", "email": "leaky@example.com"},\n {"id": "o-2"}]\n',
     "an array", "'.[]'"),
    (b'{\n  "rows_read": 200,\n  "email": "leaky@example.com"\n}\n', "an object", "."),
])
def test_a_json_document_over_several_lines_is_one_dead_letter_not_one_per_line(
        tmp_path: Path, document: bytes, what: str, jq: str) -> None:
    # Before, a pretty-printed export.json became a `not valid JSON` dead letter per line.
    path = tmp_path / "export.json"
    path.write_bytes(document)
    name = str(path)
    run_read(ReadFiles([name]), [], [unreadable(
        f"{name} is one JSON document ({what} over several lines), not JSON Lines (one object "
        f"per line); none of its rows were read. Convert it first, e.g. jq -c {jq} export.json "
        f"> export.jsonl", name)])


def test_only_the_first_line_can_make_a_file_one_json_document(tmp_path: Path) -> None:
    # A one-line array stays a line that is not an object; `[` or `{` later is a bad line; a
    # broken first object is a bad first line, and the rows after it are read.
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"id": "o-1", "v": \n[1, 2]\n{\n{"id": "o-4"}\n')
    name = str(path)
    run_read(ReadFiles([name]), [chunk(name, [(4, {"id": "o-4"})])], [
        unreadable(f"line 1 of {name} is not valid JSON: Expecting value (column 1)",
                   f"{name}#row=1"),
        unreadable(f"line 2 of {name} is a JSON array, not an object", f"{name}#row=2"),
        unreadable(f"line 3 of {name} is not valid JSON: Expecting property name enclosed in "
                   f"double quotes (column 1)", f"{name}#row=3"),
    ])


def test_csv_values_as_strings_and_broken_records_as_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(b"\n".join(CSV_LINES) + b"\n")
    name = str(path)

    run_read(ReadFiles([name], chunk_size=3), [
        chunk(name, [(1, {"event_id": "c-1", "email": "a@example.com", "value": "19.99"}),
                     (2, {"event_id": "c-2", "email": None, "value": "5"}),
                     (4, {"event_id": "c-4", "email": "multi\nline", "value": "1"})]),
        chunk(name, [(7, {"event_id": "c-7", "email": "b@example.com", "value": "3"})]),
    ], [
        unreadable(f"CSV record 3 (line 4) of {name} has 4 fields; the header has 3 fields",
                   f"{name}#row=3"),
        unreadable(f"CSV record 5 (line 8) of {name} is not valid UTF-8", f"{name}#row=5"),
        unreadable(f"CSV record 6 (line 9) of {name} has 1 field; the header has 3 fields",
                   f"{name}#row=6"),
    ])


def test_compressed_files_are_read_by_extension(tmp_path: Path) -> None:
    jsonl = tmp_path / "events.jsonl.gz"
    jsonl.write_bytes(gzip.compress(b'{"id": 1}\nnot json\n{"id": 3}\n'))
    csv_file = tmp_path / "events.csv.gz"
    csv_file.write_bytes(gzip.compress(b"id,email\n1,a@example.com\n"))

    run_read(ReadFiles([str(tmp_path / "events.*.gz")], columns=["id"]), [
        chunk(str(jsonl), [(1, {"id": 1}), (3, {"id": 3})]),
        chunk(str(csv_file), [(1, {"id": "1"})]),
    ], [
        unreadable(f"line 2 of {jsonl} is not valid JSON: Expecting value (column 1)",
                   f"{jsonl}#row=2"),
    ])


def test_explicit_format_overrides_the_extension(tmp_path: Path) -> None:
    path = tmp_path / "export-2026-03-01.txt"
    path.write_text('{"id": "x-1"}\n')

    run_read(ReadFiles(str(path), file_format="jsonl"),
             [chunk(str(path), [(1, {"id": "x-1"})])])


def test_read_dead_letters_replays_records_and_flags_damaged_lines(tmp_path: Path) -> None:
    stale = DeadLetter(reason="stale_timestamp", detail="event is 8 days old",
                       event_id="o-1", source="gs://b/x.parquet#row=3",
                       event={"id": "o-1", "type": "order_created"})
    rejected = DeadLetter(reason="rejected_by_api", detail="events[0]: invalid", event_id="o-2")
    path = tmp_path / "dead-letters-00000-of-00001.jsonl"
    path.write_text("\n".join([stale.to_json(), "", rejected.to_json(), "{truncated",
                               '{"detail": "no reason"}']) + "\n")
    name = str(path)

    with BeamTestPipeline() as pipeline:
        letters = pipeline | ReadDeadLetters(str(tmp_path / "dead-letters-*.jsonl"))
        assert_that(letters, equal_to([
            stale,
            rejected,
            unreadable(f"line 4 of {name} is not valid JSON: Expecting property name enclosed "
                       f"in double quotes (column 2)", f"{name}#row=4"),
            unreadable(f"line 5 of {name} is not a dead-letter record (an object with a "
                       f"'reason')", f"{name}#row=5"),
        ]))


class EndlessExport:
    """A file handle that never ends: reading it whole would never return."""

    def __init__(self, header: bytes, line: bytes) -> None:
        self._header = header
        self._line = line

    def readline(self) -> bytes:
        header, self._header = self._header, b""
        return header or self._line


@pytest.mark.parametrize("reader, header, line, first", [
    (read_jsonl, b"", b'{"id": 1}\n', {"id": 1}),
    (read_csv, b"id\n", b"1\n", {"id": "1"}),
])
def test_text_readers_stream_line_by_line(reader, header: bytes, line: bytes,
                                          first: dict) -> None:
    items = reader(EndlessExport(header, line), "gs://b/huge")
    assert list(itertools.islice(items, 3)) == [
        (first, "gs://b/huge#row=1"), (first, "gs://b/huge#row=2"),
        (first, "gs://b/huge#row=3")]


@pytest.mark.parametrize("path, file_format", [
    ("gs://bucket/export/part-0.parquet", "parquet"),
    ("/data/x.PQ", "parquet"),
    ("x.jsonl", "jsonl"),
    ("x.ndjson.gz", "jsonl"),
    ("x.json.bz2", "jsonl"),
    ("x.CSV", "csv"),
    ("x.csv.zst", "csv"),
])
def test_detect_format(path: str, file_format: str) -> None:
    assert detect_format(path) == file_format


@pytest.mark.parametrize("path, message", [
    ("gs://bucket/export/part-0", "Cannot tell the format"),
    ("x.txt.gz", "Cannot tell the format"),
    ("x.parquet.gz", "compressed Parquet"),
])
def test_detect_format_refuses_unknown_names(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detect_format(path)


@pytest.mark.parametrize("columns, name, kept", [
    (None, "anything", True),
    (["user"], "user", True),
    (["user"], "user.email", True),        # a flat column named by a path under `user`
    (["user"], "username", False),
    (["user.email"], "user", True),         # the struct a requested path starts in
    (["user.email"], "user.phone", False),
    (["context.page.url"], "context.page", True),
    (["id"], "note", False),
])
def test_column_selector(columns: list[str] | None, name: str, kept: bool) -> None:
    keep = column_selector(columns)
    assert (keep is None and columns is None) or keep(name) is kept


@pytest.mark.parametrize("kwargs, message", [
    ({"patterns": []}, "at least one"),
    ({"patterns": ["x.csv"], "file_format": "xml"}, "file_format must be one of"),
    ({"patterns": ["x.csv"], "chunk_size": 0}, "chunk_size"),
])
def test_read_files_rejects_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReadFiles(**kwargs)


def test_arrow_rows_truncate_nanoseconds_and_hex_binary() -> None:
    nanos = 1_772_366_400_123_456_789          # 2026-03-01 12:00:00.123456789 UTC
    batch = pa.RecordBatch.from_pydict({
        "at": pa.array([nanos], pa.timestamp("ns", tz="UTC")),
        "context": pa.array([{"at": nanos, "id": b"\x0f"}],
                            pa.struct([("at", pa.timestamp("ns")), ("id", pa.binary())])),
        "history": pa.array([[nanos]], pa.list_(pa.timestamp("ns"))),
        "attributes": pa.array([[("k", "v")]], pa.map_(pa.string(), pa.string())),
    })
    micros = datetime.datetime(2026, 3, 1, 12, 0, 0, 123456)

    assert arrow_batch_to_rows(batch) == [{
        "at": micros.replace(tzinfo=UTC),
        "context": {"at": micros, "id": "0f"},
        "history": [micros],
        "attributes": {"k": "v"},
    }]


def test_row_chunk_needs_one_source_per_row() -> None:
    with pytest.raises(ValueError, match="one source per row"):
        RowChunk([{"id": 1}], [])


def test_chunk_builder_hands_out_full_chunks_then_the_rest() -> None:
    builder = ChunkBuilder(2)
    handed = [builder.add({"n": n}, f"f#row={n}") for n in (1, 2, 3)]
    assert handed == [None, RowChunk([{"n": 1}, {"n": 2}], ["f#row=1", "f#row=2"]), None]
    assert builder.flush() == RowChunk([{"n": 3}], ["f#row=3"])
    assert builder.flush() is None


def test_a_corrupt_empty_or_unknown_file_in_a_glob_is_one_dead_letter_naming_it(tmp_path: Path) -> None:
    good = write_parquet(tmp_path / "part-0.parquet", [order_row(1)], ORDER_SCHEMA)
    (tmp_path / "part-1.parquet").write_bytes(b"")
    (tmp_path / "part-2.parquet").write_bytes(b"this is not a parquet file at all")
    (tmp_path / "notes.txt").write_text("hello\n")
    empty, garbage, notes = (str(tmp_path / name) for name in ("part-1.parquet", "part-2.parquet",
                                                               "notes.txt"))
    run_read(ReadFiles([str(tmp_path / "*")]), [chunk(str(good), [(1, as_read(order_row(1)))])], [
        unreadable(f"{empty} is not a readable Parquet file (ArrowInvalid: Parquet file size is 0 "
                   "bytes); none of its rows were read. Export it again, or remove it from the "
                   "input.", empty),
        unreadable(f"{garbage} is not a readable Parquet file (ArrowInvalid: Parquet magic bytes "
                   "not found in footer. Either the file is corrupted or this is not a parquet "
                   "file.); none of its rows were read. Export it again, or remove it from the "
                   "input.", garbage),
        unreadable(f"Cannot tell the format of {notes} from its extension (expected .parquet/.pq, "
                   ".jsonl/.ndjson/.json or .csv, optionally compressed like .jsonl.gz); pass the "
                   "format explicitly (--input-format parquet|jsonl|csv). None of its rows were "
                   "read.", notes),
    ])


def test_a_local_parquet_file_is_opened_by_pyarrow_and_text_through_beam(tmp_path: Path) -> None:
    from connectors.file_source import CSV, PARQUET, open_file

    parquet = write_parquet(tmp_path / "part-0.parquet", [order_row(1)], ORDER_SCHEMA)
    text = tmp_path / "rows.csv"
    text.write_text("a,b\n1,2\n")
    with open_file(parquet, PARQUET) as handle:   # no Python file object between reads
        assert isinstance(handle, pa.NativeFile)
        assert pq.ParquetFile(handle).metadata.num_rows == 1
    with open_file(str(text), CSV) as handle:
        assert not isinstance(handle, pa.NativeFile) and handle.read() == b"a,b\n1,2\n"


def csv_with_bad_quote(bad_record: int, bad_line: bytes, records: int = 100) -> bytes:
    lines = [b"id,email,value"] + [f"r{n},u{n}@example.com,{n}".encode() for n in range(1, records + 1)]
    lines[bad_record] = bad_line
    return b"\n".join(lines) + b"\n"


@pytest.mark.parametrize("bad_line", [
    b'r5,u5@example.com,"5',        # the quote opens the last field and never closes
    b'r5,"u5@example.com,5',        # ... a middle field
])
def test_an_unbalanced_quote_hides_no_line_every_line_of_its_span_is_a_dead_letter(
        tmp_path: Path, bad_line: bytes) -> None:
    path = tmp_path / "events.csv"
    path.write_bytes(csv_with_bad_quote(5, bad_line))
    items = list(read_csv(path.open("rb"), str(path)))
    rows = [item for item in items if not isinstance(item, DeadLetter)]
    dead = [item for item in items if isinstance(item, DeadLetter)]
    assert [source for _, source in rows] == [f"{path}#row={n}" for n in range(1, 5)]
    assert len(rows) + len(dead) == 100                         # the data lines a user counts
    assert [letter.source for letter in dead] == [f"{path}#row={n}" for n in range(5, 101)]
    assert {letter.reason for letter in dead} == {MAPPING_ERROR}
    assert dead[0].detail == (
        f"line 6 of {path} is one of lines 6-101, read as one CSV record that cannot be parsed: "
        "unexpected end of data: a quote opened on line 6 and was not closed where it should be? "
        "Each of the 96 lines is dead-lettered; fix the quoting and send the file again.")
    assert dead[-1].detail.startswith(f"line 101 of {path} is one of lines 6-101,")


def test_a_quote_closed_lines_later_dead_letters_the_lines_between_and_reading_goes_on(
        tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    # Line 3 opens a quote; line 5 closes one ("...,4"" ends it) followed by text: broken there.
    path.write_bytes(b'id,email,value\nr1,a@example.com,1\nr2,"b@example.com,2\nr3,c,3\n'
                     b'r4,"d",4\nr5,e@example.com,5\n')
    items = list(read_csv(path.open("rb"), str(path)))
    assert [item[0]["id"] for item in items if not isinstance(item, DeadLetter)] == ["r1", "r5"]
    dead = [item for item in items if isinstance(item, DeadLetter)]
    assert [letter.source for letter in dead] == [f"{path}#row={n}" for n in (2, 3, 4)]
    assert dead[0].detail.startswith(f"line 3 of {path} is one of lines 3-5, read as one CSV "
                                     "record that cannot be parsed: ',' expected after '\"'")
    assert items[-1] == ({"id": "r5", "email": "e@example.com", "value": "5"}, f"{path}#row=5")
