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
from transforms.coverage import IDENTIFIER_LABELS, IDENTIFIERS, coverage_by_type
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


# mapper counter suffix -> what the summary calls it (transforms/mapper.py, user_fields.py)
_CHANGE_KINDS = (("invalid", ".invalid", "left out as invalid"),
                 ("over_limit", ".over_limit", "values over the 3-value limit"),
                 ("not_allowed", ".not_allowed", "left out: not allowed for the event type"),
                 ("defaulted", ".defaulted", "default used"))


def mapper_changes(mapper_counters: Mapping[str, int]) -> dict[str, Any]:
    """What the mapper changed on the rows: `{"timestamp_defaulted": 80,
    "invalid": {"user.ip_address": 64}, ...}` (dead-letter counts are in dead_letter_reasons)."""
    changes: dict[str, Any] = {"timestamp_defaulted": mapper_counters.get("timestamp_defaulted", 0)}
    for key, suffix, _ in _CHANGE_KINDS:
        changes[key] = {name[:-len(suffix)]: count for name, count in mapper_counters.items()
                        if name.endswith(suffix) and count}
    changes["empty_items"] = mapper_counters.get("data.contents.empty_item", 0)
    return changes


def empty_field_warnings(counters: Mapping[str, int], events_sent: int,
                         mapped_fields: Mapping[str, tuple[tuple[str, ...], bool]]) -> list[str]:
    """Mapped fields that stayed empty on every sent event (a wrong path, when the source's
    schema could not be checked before the run). `mapped_fields`: location -> (the CAPI fields
    it fills, inherited from the default mapping?); inherited ones share one line."""
    if not events_sent:
        return []
    empty = [(location, inherited) for location, (fields, inherited) in mapped_fields.items()
             if fields and not any(counters.get(metrics.FILLED_PREFIX + f, 0) for f in fields)]
    warnings = [f"{location} was empty on all {events_sent:,} sent events: check its path in "
                f"the mapping (`capi-sync preview` shows what each row gives)"
                for location, inherited in empty if not inherited]
    inherited = [location for location, inherited in empty if inherited]
    if inherited:
        warnings.append("fields of the default mapping empty on every sent event: "
                        + ", ".join(inherited))
    return warnings


def build_report(counters: Mapping[str, int], *,
                 mapped_fields: Mapping[str, tuple[tuple[str, ...], bool]] | None = None,
                 schema_notes: tuple[str, ...] = (), **run_facts: Any) -> dict[str, Any]:
    """`mapped_fields`: see empty_field_warnings (pipeline.source_check.fields_to_watch)."""
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
    report["mapper_changes"] = mapper_changes(report["mapper_counters"])
    report["identifier_coverage"] = coverage_by_type(counters)
    report["filled_fields"] = _with_prefix(counters, metrics.FILLED_PREFIX)
    report["warnings"] = [*schema_notes, *empty_field_warnings(
        counters, report["events_accepted"], mapped_fields or {})]
    accounted = report["events_accepted"] + report["events_dead_lettered"] + report["events_skipped"]
    report["reconciled"] = report["rows_read"] == accounted
    report.update(run_facts)
    return report


def write_report(report: Mapping[str, Any], path: str) -> None:
    text = json.dumps(report, indent=2, sort_keys=False, default=str)
    write_file(path, mask_secrets(text).encode())   # paths and options a user typed


def _change_lines(changes: Mapping[str, Any]) -> list[tuple[str, int]]:
    lines = []
    if changes["timestamp_defaulted"]:
        lines.append(("timestamps defaulted to now", changes["timestamp_defaulted"]))
    for key, _, label in _CHANGE_KINDS:
        for field, count in changes[key].items():
            lines.append((f"{label}: {field}", count))
    if changes["empty_items"]:
        lines.append(("empty contents items left out", changes["empty_items"]))
    return lines


def format_coverage(coverage: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per event type, the share of sent events carrying each identifier."""
    if not coverage:
        return []
    headers = ["sent events by type", "events", *(IDENTIFIER_LABELS[i] for i in IDENTIFIERS)]
    rows = [[event_type, f"{row['events']:,}",
             *(f"{row[i]['share']:.1%}" for i in IDENTIFIERS)]
            for event_type, row in coverage.items()]
    widths = [max(len(r[c]) for r in [headers, *rows]) for c in range(len(headers))]
    return ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w)
                      for c, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in [headers, *rows]]


def format_summary(report: Mapping[str, Any]) -> str:
    """The end-of-run table printed by the command line."""
    changes = _change_lines(report["mapper_changes"]) if "mapper_changes" in report else []
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
    header = (["VALIDATE-ONLY run: the API checked every event and recorded none "
               "(accepted = validated)"]
              if report.get("validate_only") else [])
    coverage = format_coverage(report.get("identifier_coverage") or {})
    if changes:     # its own block: field names are long
        change_width = max(len(label) for label, _ in changes) + 2
        coverage = ["what the mapper changed (rows mapped)",
                    *(f"  {label:<{change_width}}{count:>10,}" for label, count in changes),
                    *coverage]
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
    footer.extend(f"warning: {warning}" for warning in report.get("warnings") or ())
    if report.get("failure"):
        footer.append(f"FAILED (exit {report['exit_code']}): {report['failure']}")
    return "\n".join([*header, rule, *table, rule, *([*coverage, rule] if coverage else []),
                      *footer])
