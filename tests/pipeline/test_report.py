from pipeline.report import build_report, format_summary


def counters(**extra):
    base = {"rows_read": 10, "events_accepted": 6, "dead_lettered.missing_id": 2,
            "dead_lettered.rejected_by_api": 1, "skipped.excluded_event": 1, "requests": 3,
            "retries": 1, "http_200": 2, "http_400": 1, "mapper.timestamp_defaulted": 4,
            "skipped.duplicate": 0}
    base.update(extra)
    return base


def test_report_sums_reasons_and_reconciles():
    report = build_report(counters(), validate_only=False)
    assert report["events_dead_lettered"] == 3
    assert report["dead_letter_reasons"] == {"missing_id": 2, "rejected_by_api": 1}
    assert report["events_skipped"] == 1
    assert report["skip_reasons"] == {"excluded_event": 1}
    assert report["http_statuses"] == {"200": 2, "400": 1}
    assert report["mapper_counters"] == {"timestamp_defaulted": 4}
    assert report["reconciled"] is True
    assert report["validate_only"] is False


def test_report_flags_a_row_that_is_not_accounted_for():
    report = build_report(counters(rows_read=11))
    assert report["reconciled"] is False
    assert "NOT RECONCILED" in format_summary(report)


def test_summary_lists_every_reason_with_its_count():
    summary = format_summary(build_report(counters()))
    assert "events accepted" in summary and "           6" in summary
    assert "  missing_id" in summary
    assert "reconciled: rows read = accepted + dead-lettered + skipped" in summary


def test_summary_points_at_the_dead_letter_files_or_says_there_are_none():
    with_letters = format_summary(build_report(counters(), dead_letter_prefix="dead/run/dead"))
    clean = format_summary(build_report(counters(**{"dead_lettered.missing_id": 0,
                                                    "dead_lettered.rejected_by_api": 0,
                                                    "rows_read": 7}),
                                        dead_letter_prefix="dead/run/dead"))
    assert "dead letters: dead/run/dead-*.jsonl" in with_letters.splitlines()
    assert "dead letters: none" in clean.splitlines()
