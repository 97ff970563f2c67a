"""ReadBigQuery: the graph builds without a GCP project; rows become plain Python chunks."""
from __future__ import annotations

import datetime
from decimal import Decimal

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from connectors.bigquery_source import RowsToChunks, bigquery_literal, bind_query_params
from connectors.sources import ReadBigQuery, bigquery_row_to_plain
from transforms.errors import ConfigError

UTC = datetime.timezone.utc


def own_steps(pipeline: beam.Pipeline, root: str) -> list[str]:
    """The labels of `root` and its direct children (Beam's inner steps left out)."""
    prefix = root + "/"
    return sorted(label for label in pipeline.applied_labels
                  if label == root or (label.startswith(prefix)
                                       and "/" not in label[len(prefix):]))


@pytest.mark.parametrize("kwargs", [
    {"table": "my-project:analytics.conversions"},
    {"table": "analytics.conversions", "columns": ["event_name", "context", "user"]},
    {"query": "SELECT * FROM `my-project.analytics.conversions` WHERE day = CURRENT_DATE()"},
    {"query": "SELECT * FROM `p.analytics.conversions` WHERE ts >= @since",
     "params": {"since": datetime.datetime(2026, 3, 1, tzinfo=UTC)}},
])
def test_graph_builds_without_a_project(kwargs: dict) -> None:
    pipeline = beam.Pipeline(options=PipelineOptions([]))     # no --project, never run

    chunks = pipeline | "ReadBigQuery" >> ReadBigQuery(**kwargs)

    assert isinstance(chunks, beam.PCollection)
    assert own_steps(pipeline, "ReadBigQuery") == [
        "ReadBigQuery", "ReadBigQuery/ReadFromBigQuery", "ReadBigQuery/ToRowChunks"]
    assert own_steps(pipeline, "ReadBigQuery/ToRowChunks") == [
        "ReadBigQuery/ToRowChunks", "ReadBigQuery/ToRowChunks/BatchRows",
        "ReadBigQuery/ToRowChunks/MakeChunks"]


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of table"),
    ({"table": "d.t", "query": "SELECT 1"}, "exactly one of table"),
    ({"query": "SELECT 1", "columns": ["a"]}, "columns apply to table reads"),
    ({"table": "d.t", "chunk_size": 0}, "chunk_size"),
    ({"table": "d.t", "params": {"since": 1}}, "params apply to queries"),
    ({"query": "SELECT * FROM t WHERE ts >= @since"}, "uses @since but no value"),
    ({"query": "SELECT @x", "params": {"x": [1]}}, "Cannot pass a list"),
])
def test_bad_arguments_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ReadBigQuery(**kwargs)


def test_query_params_become_typed_literals_outside_strings_and_comments() -> None:
    query = ("SELECT * FROM `p.d.events@2026` WHERE ts >= @since AND day = @day\n"
             "  AND email NOT LIKE '%@example.com' AND note != \"it's @since\" -- @since\n"
             "  AND name = @name AND n > @n AND v = @v AND ok = @ok AND project = @@project_id")
    params = {
        "since": datetime.datetime(2026, 3, 1, 14, 0,
                                   tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
        "day": datetime.date(2026, 3, 1), "name": "O'Brien \\ Co", "n": 10,
        "v": Decimal("19.99"), "ok": True,
    }
    assert bind_query_params(query, params) == (
        "SELECT * FROM `p.d.events@2026` WHERE ts >= TIMESTAMP '2026-03-01 12:00:00+00:00' "
        "AND day = DATE '2026-03-01'\n"
        "  AND email NOT LIKE '%@example.com' AND note != \"it's @since\" -- @since\n"
        "  AND name = 'O\\'Brien \\\\ Co' AND n > 10 AND v = NUMERIC '19.99' AND ok = TRUE "
        "AND project = @@project_id")


@pytest.mark.parametrize("value, literal", [
    (None, "NULL"),
    (datetime.datetime(2026, 3, 1, 12, 0), "TIMESTAMP '2026-03-01 12:00:00+00:00'"),  # naive=UTC
    (datetime.datetime(2026, 3, 1, 12, 0, 0, 250000, tzinfo=UTC),
     "TIMESTAMP '2026-03-01 12:00:00.250000+00:00'"),
    (0.5, "CAST('0.5' AS FLOAT64)"),
    ("line\nbreak", "'line\\nbreak'"),
])
def test_bigquery_literal(value: object, literal: str) -> None:
    assert bigquery_literal(value) == literal


@pytest.mark.parametrize("value, plain", [
    (None, None),
    (True, True),
    (42, 42),
    (0.5, 0.5),
    ("purchase", "purchase"),
    (Decimal("19.99"), Decimal("19.99")),                       # NUMERIC stays exact
    (Decimal("12345678901234567890.123456789"), Decimal("12345678901234567890.123456789")),
    (datetime.datetime(2026, 3, 1, 12, 0, tzinfo=UTC),         # TIMESTAMP
     datetime.datetime(2026, 3, 1, 12, 0, tzinfo=UTC)),
    (datetime.datetime(2026, 3, 1, 12, 0), datetime.datetime(2026, 3, 1, 12, 0)),  # DATETIME
    ("2026-03-01T12:00:00", "2026-03-01T12:00:00"),             # DATETIME via Avro
    (datetime.date(2026, 3, 1), datetime.date(2026, 3, 1)),     # DATE
    (datetime.time(12, 30), datetime.time(12, 30)),             # TIME
    (bytes.fromhex("a1" * 32), "a1" * 32),                      # BYTES, e.g. SHA256(email)
    ('{"coupon": "C1"}', '{"coupon": "C1"}'),                   # JSON arrives as its text
    ({"email": "a@example.com", "hash": b"\x00\xff"},           # RECORD
     {"email": "a@example.com", "hash": "00ff"}),
    ([{"id": "sku-1", "price": Decimal("1.50")}, {"id": "sku-2", "price": None}],  # REPEATED
     [{"id": "sku-1", "price": Decimal("1.50")}, {"id": "sku-2", "price": None}]),
    ([b"\x01", b"\x02"], ["01", "02"]),
])
def test_bigquery_row_to_plain(value: object, plain: object) -> None:
    assert bigquery_row_to_plain({"column": value}) == {"column": plain}


def test_nested_row_keeps_its_shape() -> None:
    row = {
        "event_name": "purchase",
        "context": {"event_id": "bq-1", "page": {"url": "https://shop.example/"}},
        "user": {"email_sha256": bytes.fromhex("0f" * 32), "ids": [b"\x0a"]},
        "items": [{"id": "sku-1", "product": {"price": Decimal("19.99")}, "quantity": 2}],
        "event_time": datetime.datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    }
    assert bigquery_row_to_plain(row) == {
        "event_name": "purchase",
        "context": {"event_id": "bq-1", "page": {"url": "https://shop.example/"}},
        "user": {"email_sha256": "0f" * 32, "ids": ["0a"]},
        "items": [{"id": "sku-1", "product": {"price": Decimal("19.99")}, "quantity": 2}],
        "event_time": datetime.datetime(2026, 3, 1, 12, 0, tzinfo=UTC),
    }


def test_rows_become_chunks_of_at_most_chunk_size() -> None:
    rows = [{"id": n, "hash": bytes([n])} for n in range(5)]
    origin = "bigquery:my-project:analytics.conversions"

    def at_most_two_rows_each(sizes: list[int]) -> None:
        assert sorted(sizes, reverse=True)[0] == 2 and sum(sizes) == 5, sizes

    with BeamTestPipeline() as pipeline:
        chunks = (pipeline
                  | beam.Create(rows, reshuffle=False)
                  | RowsToChunks(origin, chunk_size=2))
        pairs = chunks | "Pairs" >> beam.FlatMap(
            lambda chunk: list(zip(chunk.sources, chunk.rows, strict=True)))
        assert_that(chunks | "Sizes" >> beam.Map(len), at_most_two_rows_each,
                    label="CheckSizes")
        assert_that(pairs, equal_to([(origin, {"id": n, "hash": f"{n:02x}"})
                                     for n in range(5)]), label="CheckRows")
