"""The run report (contract section 7): one JSON object, reconciled, plus a readable summary.

Every figure comes from Beam metrics in namespace "capi", so the same report works on
DirectRunner and Dataflow. The counter names (grep for them in the Dataflow UI) are listed and
spelled in transforms/metrics.py.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from apache_beam.metrics.metric import MetricsFilter

from pipeline.outputs import write_file
from transforms import metrics
from transforms.masking import mask_secrets


def counters_from_result(result) -> dict[str, int]:
    """Committed counter values of namespace 'capi', summed over steps."""
    query = result.metrics().query(MetricsFilter().with_namespace(metrics.NAMESPACE))
    totals: dict[str, int] = {}
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
    return totals


def _with_prefix(counters: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {name[len(prefix):]: value for name, value in sorted(counters.items())
            if name.startswith(prefix) and value}


def build_report(counters: Mapping[str, int], **run_facts: Any) -> dict[str, Any]:
    dead_letter_reasons = _with_prefix(counters, metrics.DEAD_LETTERED_PREFIX)
    skip_reasons = _with_prefix(counters, metrics.SKIPPED_PREFIX)
    report = {
        "rows_read": counters.get(metrics.ROWS_READ, 0),
        "events_accepted": counters.get(metrics.EVENTS_ACCEPTED, 0),
        "events_dead_lettered": sum(dead_letter_reasons.values()),
        "events_skipped": sum(skip_reasons.values()),
        "dead_letter_reasons": dead_letter_reasons,
        "skip_reasons": skip_reasons,
        "requests": counters.get(metrics.REQUESTS, 0),
        "retries": counters.get(metrics.RETRIES, 0),
        "http_statuses": _with_prefix(counters, metrics.HTTP_PREFIX),
        # 2xx answers whose body was not JSON: accepted, but maybe not from the API (README)
        "suspicious_2xx_bodies": counters.get(metrics.SUSPICIOUS_2XX_BODIES, 0),
        "mapper_counters": _with_prefix(counters, metrics.MAPPER_PREFIX),
    }
    accounted = report["events_accepted"] + report["events_dead_lettered"] + report["events_skipped"]
    report["reconciled"] = report["rows_read"] == accounted
    report.update(run_facts)
    return report


def write_report(report: Mapping[str, Any], path: str) -> None:
    text = json.dumps(report, indent=2, sort_keys=False, default=str)
    write_file(path, mask_secrets(text).encode())   # paths and options a user typed


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
    if report.get("suspicious_2xx_bodies"):
        footer.append(f"WARNING: {report['suspicious_2xx_bodies']:,} answers were 2xx with a body "
                      "that is not JSON: a proxy or captive portal may have answered instead of "
                      "the API (see the README, Delivery)")
    files = dict(report)
    if files.get("dead_letter_prefix") is not None:     # one set of files per step, if any
        files["dead_letter_prefix"] = (f"{files['dead_letter_prefix']}-*.jsonl"
                                       if report["events_dead_lettered"] else "none")
    for key, label in (("duration_s", "duration (s)"), ("rows_per_s", "rows/s"),
                       ("dead_letter_prefix", "dead letters"), ("report_path", "report")):
        if files.get(key) is not None:
            footer.append(f"{label}: {files[key]}")
    return "\n".join([rule, *table, rule, *footer])
