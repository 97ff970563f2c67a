from transforms.deadletter import DeadLetter


def test_dead_letter_round_trips_through_one_json_line():
    record = DeadLetter(reason="missing_id", detail="context.event_id is empty",
                        event_id=None, source="export.parquet#row=3", event={"type": "page_viewed"})
    line = record.to_json()
    assert "\n" not in line
    assert DeadLetter.from_json(line) == record
