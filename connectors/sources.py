"""The sources of the pipeline, in one place: files, SQL, BigQuery, dead-letter replays.

Every source yields `RowChunk`s (up to `chunk_size` rows with one source reference per row,
`<origin>#row=<N>`, N from 1) so the pipeline pays Beam's per-element cost once per chunk:

    chunks, unreadable = p | "ReadFiles" >> ReadFiles(["gs://b/*.parquet"], columns=[...])
    chunks = p | "ReadSql" >> ReadSql("postgresql://etl@db/prod",
                                      "SELECT * FROM orders WHERE ts >= %(since)s", {"since": ts})
    chunks = p | "ReadBigQuery" >> ReadBigQuery(table="proj:ds.events")
    chunks = p | "ReadBigQuery" >> ReadBigQuery(query="SELECT ... WHERE ts >= @since",
                                                params={"since": ts})
    letters = p | "ReadDeadLetters" >> ReadDeadLetters(["gs://b/dead/*.jsonl"])

Only ReadFiles can meet unreadable rows (bad JSON lines, broken CSV records); it returns them as
a second output of DeadLetters. The details of each source are in its module.
"""
from connectors.bigquery_source import ReadBigQuery, bigquery_row_to_plain
from connectors.file_source import (
    CHUNKS,
    DEAD_LETTERS,
    FILE_FORMATS,
    ReadDeadLetters,
    ReadFiles,
    detect_format,
)
from connectors.rows import RowChunk, source_ref, to_plain
from connectors.sql_source import ReadSql, SqlSourceError, redact_url

__all__ = [
    "CHUNKS", "DEAD_LETTERS", "FILE_FORMATS", "ReadBigQuery", "ReadDeadLetters", "ReadFiles",
    "ReadSql", "RowChunk", "SqlSourceError", "bigquery_row_to_plain", "detect_format",
    "redact_url", "source_ref", "to_plain",
]
