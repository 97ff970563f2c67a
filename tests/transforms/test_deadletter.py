from transforms.deadletter import DeadLetter


def test_dead_letter_round_trips_through_one_json_line():
    record = DeadLetter(reason="missing_id", detail="context.event_id is empty",
                        event_id=None, source="export.parquet#row=3", event={"type": "page_viewed"})
    line = record.to_json()
    assert "\n" not in line
    assert DeadLetter.from_json(line) == record


def test_a_lone_surrogate_is_escaped_so_the_line_is_still_utf8():
    record = DeadLetter(reason="mapping_error", detail="event is not valid JSON",
                        event_id="bad\ud800id", source="in.jsonl#row=2")
    line = record.to_json()
    line.encode("utf-8")
    assert DeadLetter.from_json(line) == record


def test_plain_non_ascii_stays_readable():
    assert "Île-de-France" in DeadLetter(reason="missing_id", detail="Île-de-France").to_json()
