"""Metric names: the one place where the counters users grep for are spelled.

Every counter lives in namespace "capi" (`Metrics.counter(NAMESPACE, ROWS_READ)`); the sink, the
mapper steps, the sources and the report import these names, so the figure a user finds in the
Dataflow UI has one spelling. This module imports nothing from Beam (it is a list of names).

    rows_read                    rows (or replayed dead-letter records) that entered the pipeline
    events_accepted              events the API acknowledged (validated, under --validate-only)
    dead_lettered.<reason>       dead-letter records written, by reason (counted once, where
                                 they are written; the report's only source for dead letters)
    skipped.<reason>             rows left out on purpose (excluded_event, duplicate, ...)
    requests, retries            HTTP requests sent and retries among them
    http_<status>                answers by status ("http_200") or "http_timeout" /
                                 "http_connection_error" for attempts that got none
    suspicious_2xx_bodies        2xx answers whose body was not JSON (a proxy's or captive
                                 portal's page?): counted as accepted, warned about
    mapper.<name>                what the mapper left out or defaulted (timestamp_defaulted)
    sent.<type>[.<identifier>]   sent events per event type, and those carrying each identifier
                                 (email, phone, oppref, ...: transforms/coverage.py)
    filled.<CAPI field>          sent events carrying the field (filled.data.amount, ...)
    source_files, source_rows_read, source_rows_unreadable    what the file/SQL sources read
"""
from __future__ import annotations

NAMESPACE = "capi"

ROWS_READ = "rows_read"
EVENTS_ACCEPTED = "events_accepted"
REQUESTS = "requests"
RETRIES = "retries"
SUSPICIOUS_2XX_BODIES = "suspicious_2xx_bodies"
SOURCE_FILES = "source_files"
SOURCE_ROWS_READ = "source_rows_read"
SOURCE_ROWS_UNREADABLE = "source_rows_unreadable"

DEAD_LETTERED_PREFIX = "dead_lettered."
SKIPPED_PREFIX = "skipped."
HTTP_PREFIX = "http_"
MAPPER_PREFIX = "mapper."
SENT_PREFIX = "sent."
FILLED_PREFIX = "filled."


def dead_lettered(reason: str) -> str:
    """`dead_lettered.rejected_by_api`: dead-letter records written with this reason."""
    return DEAD_LETTERED_PREFIX + reason


def skipped(reason: str) -> str:
    """`skipped.duplicate`: rows left out on purpose for this reason."""
    return SKIPPED_PREFIX + reason


def http_status(label: str) -> str:
    """`http_429`, `http_timeout`: attempts by the answer they got."""
    return HTTP_PREFIX + label


def mapper(name: str) -> str:
    """`mapper.timestamp_defaulted`: one of the mapper's own counters."""
    return MAPPER_PREFIX + name
