"""The run report (contract section 7): one JSON object, reconciled, plus a readable summary.

Every figure comes from Beam metrics in namespace "capi", so the same report works on
DirectRunner and Dataflow. Counter names (grep for them in the Dataflow UI):
  rows_read                    rows (or replayed dead-letter records) that entered the pipeline
  events_accepted              events the API acknowledged (validated, under --validate-only)
  dead_lettered.<reason>       dead-letter records written, by reason
  skipped.<reason>             rows left out on purpose (excluded_event, no_consent, duplicate, ...)
  requests, retries, http_<status>    delivery figures from the sink
  mapper.<name>                what the mapper left out or defaulted (e.g. timestamp_defaulted)
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from apache_beam.metrics.metric import MetricsFilter

from pipeline.outputs import write_file

NAMESPACE = "capi"


def counters_from_result(result) -> dict[str, int]:
    """Committed counter values of namespace 'capi', summed over steps."""
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
    return totals


def _with_prefix(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {name[len(prefix):]: value for name, value in sorted(counters.items())
            if name.startswith(prefix) and value}


def build_report(counters: Mapping[str, int], **run_facts: Any) -> dict[str, Any]:
    dead_letter_reasons = _with_prefix(counters, "dead_lettered.")
    skip_reasons = _with_prefix(counters, "skipped.")
    report = {
        "rows_read": counters.get("rows_read", 0),
        "events_accepted": counters.get("events_accepted", 0),
        "events_dead_lettered": sum(dead_letter_reasons.values()),
        "events_skipped": sum(skip_reasons.values()),
        "dead_letter_reasons": dead_letter_reasons,
        "skip_reasons": skip_reasons,
        "requests": counters.get("requests", 0),
        "retries": counters.get("retries", 0),
        "http_statuses": _with_prefix(counters, "http_"),
        "mapper_counters": _with_prefix(counters, "mapper."),
    }
    accounted = report["events_accepted"] + report["events_dead_lettered"] + report["events_skipped"]
    report["reconciled"] = report["rows_read"] == accounted
    report.update(run_facts)
    return report


def write_report(report: Mapping[str, Any], path: str) -> None:
    write_file(path, json.dumps(report, indent=2, sort_keys=False, default=str).encode())


def format_summary(report: Mapping[str, Any]) -> str:
    """The end-of-run table printed by the command line."""
    lines = [
        ("rows read", report["rows_read"]),
        ("events accepted", report["events_accepted"]),
        ("events dead-lettered", report["events_dead_lettered"]),
        *((f"  {reason}", count) for reason, count in report["dead_letter_reasons"].items()),
        ("events skipped", report["events_skipped"]),
        *((f"  {reason}", count) for reason, count in report["skip_reasons"].items()),
        ("requests", report["requests"]),
        ("retries", report["retries"]),
    ]
    width = max(len(label) for label, _ in lines)
    table = [f"{label:<{width}}  {value:>12,}" for label, value in lines]
    verdict = ("reconciled: rows read = accepted + dead-lettered + skipped" if report["reconciled"]
               else "NOT RECONCILED: rows read != accepted + dead-lettered + skipped")
    rule = "-" * (width + 14)
    footer = [verdict]
    files = dict(report)
    if files.get("dead_letter_prefix") is not None:     # one set of files per step, if any
        files["dead_letter_prefix"] = (f"{files['dead_letter_prefix']}-*.jsonl"
                                       if report["events_dead_lettered"] else "none")
    for key, label in (("duration_s", "duration (s)"), ("rows_per_s", "rows/s"),
                       ("dead_letter_prefix", "dead letters"), ("report_path", "report")):
        if files.get(key) is not None:
            footer.append(f"{label}: {files[key]}")
    return "\n".join([rule, *table, rule, *footer])
