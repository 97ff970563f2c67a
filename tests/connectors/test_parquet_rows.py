"""file_source.parquet_batch_to_rows gives exactly what rows.arrow_batch_to_rows gives, faster."""
from __future__ import annotations

import datetime
import decimal
import pickle

import pyarrow as pa
import pytest

from connectors.rows import RowChunk, arrow_batch_to_rows, arrow_values, parquet_batch_to_rows

UTC = datetime.timezone.utc
ITEM = pa.struct([("id", pa.string()), ("qty", pa.int64()),
                  ("product", pa.struct([("name", pa.string()), ("price", pa.float64())]))])


def _batch(columns: dict[str, tuple[list, pa.DataType]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({name: pa.array(values, arrow_type)
                                       for name, (values, arrow_type) in columns.items()})


NESTED = _batch({
    "event_name": (["purchase", None, "page_view", "sign_up"], pa.string()),
    "context": ([{"id": "e1", "page": {"url": "https://x", "title": None}},
                 None,
                 {"id": None, "page": None},
                 {"id": "e4", "page": {"url": None, "title": "t"}}],
                pa.struct([("id", pa.string()),
                           ("page", pa.struct([("url", pa.string()), ("title", pa.string())]))])),
    "items": ([[{"id": "a", "qty": 1, "product": {"name": "n", "price": 1.5}},
                {"id": "b", "qty": None, "product": None}],
               None, [], [None]], pa.list_(ITEM)),
    "tags": ([["x", None], None, [], ["y"]], pa.large_list(pa.string())),
    "value": ([1.25, None, float("nan"), 0.0], pa.float64()),
    "opt_out": ([True, False, None, True], pa.bool_()),
})

SCALARS = _batch({
    "amount": ([decimal.Decimal("19.99"), None], pa.decimal128(10, 2)),
    "at": ([datetime.datetime(2026, 3, 1, 12, tzinfo=UTC), None], pa.timestamp("us", tz="UTC")),
    "day": ([datetime.date(2026, 3, 1), None], pa.date32()),
    "attributes": ([[("k", "v"), ("k", "w")], None], pa.map_(pa.string(), pa.string())),
    "nested_map": ([{"m": [("a", 1)]}, {"m": None}],
                   pa.struct([("m", pa.map_(pa.string(), pa.int64()))])),
    "fixed": ([[1, 2], None], pa.list_(pa.int32(), 2)),
    "label": (["a", "b"], pa.dictionary(pa.int8(), pa.string())),
    "empty": ([{}, None], pa.struct([])),
})

NEEDS_CONVERSION = _batch({
    "at": ([1_772_366_400_123_456_789], pa.timestamp("ns")),
    "user": ([{"id": b"\x0f"}], pa.struct([("id", pa.binary())])),
})


@pytest.mark.filterwarnings("ignore:Encountered key")   # a map's repeated key: the last wins
@pytest.mark.parametrize("batch", [
    NESTED, NESTED.slice(1, 2), NESTED.slice(3), SCALARS, SCALARS.slice(1), NEEDS_CONVERSION,
    NESTED.select([]), NESTED.slice(0, 0),
], ids=["nested", "nested-slice", "nested-tail", "scalars", "scalars-slice",
        "ns-and-binary", "no-columns", "no-rows"])
def test_same_rows_as_arrow_batch_to_rows(batch: pa.RecordBatch) -> None:
    expected = arrow_batch_to_rows(batch)
    rows = parquet_batch_to_rows(batch)
    assert repr(rows) == repr(expected)     # repr: NaN != NaN, and types must match too


def test_nested_rows_exact_values() -> None:
    assert parquet_batch_to_rows(NESTED.slice(0, 2)) == [
        {"event_name": "purchase",
         "context": {"id": "e1", "page": {"url": "https://x", "title": None}},
         "items": [{"id": "a", "qty": 1, "product": {"name": "n", "price": 1.5}},
                   {"id": "b", "qty": None, "product": None}],
         "tags": ["x", None], "value": 1.25, "opt_out": True},
        {"event_name": None, "context": None, "items": None, "tags": None, "value": None,
         "opt_out": False},
    ]


@pytest.mark.filterwarnings("ignore:Encountered key")
@pytest.mark.parametrize("batch", [NESTED, NESTED.slice(1, 2), SCALARS, NEEDS_CONVERSION],
                         ids=["nested", "nested-slice", "scalars", "ns-and-binary"])
def test_one_column_converts_as_it_appears_in_the_rows(batch: pa.RecordBatch) -> None:
    rows = arrow_batch_to_rows(batch)
    for name in batch.schema.names:
        assert repr(arrow_values(batch.column(name))) == repr([row[name] for row in rows]), name


def test_arrow_chunk_builds_rows_and_sources_only_when_asked_and_pickles_whole() -> None:
    batch = NESTED.select(["event_name", "context", "items", "tags"])   # no NaN: NaN != NaN
    chunk = RowChunk.of_arrow(batch, "gs://b/x.parquet", 41)
    assert len(chunk) == 4 and chunk.batch is batch
    assert chunk.sources[:2] == ["gs://b/x.parquet#row=41", "gs://b/x.parquet#row=42"]
    assert chunk == RowChunk(arrow_batch_to_rows(batch), chunk.sources)
    copy = pickle.loads(pickle.dumps(RowChunk.of_arrow(batch, "gs://b/x.parquet", 41)))
    assert copy.batch.equals(batch) and copy == chunk
    bare = pickle.loads(pickle.dumps(RowChunk.of_arrow(NESTED.select([]), "f", 1)))
    assert bare.rows == [{}, {}, {}, {}] and bare.sources[-1] == "f#row=4"


# ---------------------------------------------------------------- rebatch (SQL drivers' batches)

@pytest.mark.parametrize("sizes, rows, expected", [
    ([7000, 7000, 7000], 5000, [5000, 5000, 5000, 5000, 1000]),
    ([3, 0, 2, 4], 4, [4, 4, 1]),
    ([5000], 5000, [5000]),
    ([], 10, []),
])
def test_rebatch_hands_out_exact_row_counts_in_order(sizes, rows, expected) -> None:
    import pickle

    from connectors.rows import rebatch

    starts = [sum(sizes[:index]) for index in range(len(sizes))]
    batches = [pa.record_batch([pa.array(range(start, start + size))], names=["n"])
               for start, size in zip(starts, sizes, strict=True)]
    out = list(rebatch(batches, rows))
    assert [batch.num_rows for batch in out] == expected
    assert [n for batch in out for n in batch.column(0).to_pylist()] == list(range(sum(sizes)))
    # Each part owns its values: pickled, it is its own size, not its parent batch's.
    assert all(len(pickle.dumps(batch)) < batch.num_rows * 8 + 1000 for batch in out)
