"""OpenAI's published Conversions API rules (issue #11), end to end on DirectRunner.

A Parquet export in the default mapping's shape, one row per case of the published page, runs
through the real launcher against the emulator. Each case must arrive exactly as the contract
says (written out here by hand: custom names lower-cased, source_url as origin and path, names
keeping non-ASCII punctuation, phones of 8-15 digits, the Android advertising id, the item
content type) or end as the right dead letter, with a reconciled report. A second run with
`--dedupe` re-sends custom events that share an id: the key is (pixel, event name, id) and the
API keeps the first event of each key.
"""
from __future__ import annotations

import pytest

from pipeline.run import EXIT_OK, run
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.pipeline.builders import (
    NOW,
    ca_row,
    expected_user,
    read_dead_letters,
    read_report,
    sha256,
    write_parquet,
)
from transforms.deadletter import DeadLetter

IN_PROCESS = ["--direct_num_workers", "1", "--direct_running_mode", "in_memory"]
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"
NAME_64_DIGIT = "a" * 63 + "7"
NAME_64_UNDERSCORE = "a" * 63 + "_"


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)


def custom_row(event_id: str, name: str, **overrides) -> dict:
    return row(event_id, name, **{"value": None, "currency": None, "items": None, **overrides})


def row(event_id: str, event_name: str = "purchase", *, phone: str = "+1 (415) 555-0100",
        advertising_id: str | None = None, **overrides) -> dict:
    built = ca_row(event_id, event_name, user__phone=phone, **overrides)
    built["context"]["device"]["advertising_id"] = advertising_id
    return built


def export_rows() -> list[dict]:
    return [
        custom_row("promo_1", "Promo_Click"),                          # sent as promo_click
        custom_row("promo_1", "promo_view"),                           # same id, another name
        custom_row("promo_1", "PROMO_CLICK", value=5.0, currency="USD"),  # same key: duplicate
        custom_row("promo_2", "_promo"),
        custom_row("promo_3", "promo-"),
        custom_row("promo_4", "-"),
        custom_row("promo_5", NAME_64_DIGIT),
        custom_row("promo_6", NAME_64_UNDERSCORE),
        row("order_relative", context__page={"url": "/checkout/thanks"}),
        row("order_bare_host", context__page={"url": "shop.example.com/p/9"}),
        row("order_query", context__page={
            "url": "https://shop.example.com/thanks?email=mary%40example.com&utm_source=ads#receipt"}),
        row("order_people", user__firstname="D\u2019Angelo", user__lastname="Anne\u2013Marie",
            phone="0044 20 7946 0958", advertising_id=GAID.upper(),
            items=[{"id": "sku_1", "quantity": 1, "content_type": "", "currency": None,
                    "product": {"name": "Starter bundle", "price": 25.99}}]),
        row("order_phone_7", phone="+683 4002", advertising_id="00000000-0000-0000-0000-000000000000"),
        row("order_phone_8", phone="+290 22334", advertising_id="not-a-uuid"),
        row("order_phone_15", phone="+49 30 12345678901"),
        row("order_phone_16", phone="+49 30 123456789012"),
    ]


def delivery_args(emulator, out, *extra) -> list[str]:
    return ["--pixel-id", EMULATOR_PIXEL_ID, "--endpoint", emulator.url,
            "--dead-letter", str(out / "dead"), "--report", str(out / "report.json"),
            "--progress-seconds", "0", *IN_PROCESS, *extra]


def recorded_by_key(emulator) -> dict[tuple[str, str], dict]:
    """(id, event name) -> the recorded event; the event name is custom_event_name for custom."""
    recorded = {}
    for event in emulator.recorded_events(EMULATOR_PIXEL_ID):
        name = event["custom_event_name"] if event["type"] == "custom" else event["type"]
        assert (event["id"], name) not in recorded
        recorded[(event["id"], name)] = event
    return recorded


def test_each_published_rule_arrives_as_the_contract_says(emulator, tmp_path):
    export = write_parquet(tmp_path / "export.parquet", export_rows())
    outcome = run(["--input", str(export), *delivery_args(emulator, tmp_path / "first")])

    recorded = recorded_by_key(emulator)
    assert set(recorded) == {
        ("promo_1", "promo_click"), ("promo_1", "promo_view"), ("promo_5", NAME_64_DIGIT),
        ("order_query", "order_created"), ("order_people", "order_created"),
        ("order_phone_7", "order_created"), ("order_phone_8", "order_created"),
        ("order_phone_15", "order_created"), ("order_phone_16", "order_created")}
    click = recorded[("promo_1", "promo_click")]
    assert (click["type"], click["custom_event_name"], click["data"]) == (
        "custom", "promo_click", {"type": "custom"})   # the first of the key, not the USD one
    assert recorded[("promo_1", "promo_view")]["custom_event_name"] == "promo_view"
    assert recorded[("order_query", "order_created")]["source_url"] == \
        "https://shop.example.com/thanks"
    people = recorded[("order_people", "order_created")]
    assert people["user"] == expected_user(
        first_names_sha256=[sha256("d\u2019angelo")], last_names_sha256=[sha256("anne\u2013marie")],
        phone_numbers_sha256=[sha256("442079460958")], android_advertising_id=GAID)
    assert people["data"]["contents"] == [{"id": "sku_1", "name": "Starter bundle",
                                           "content_type": "product", "quantity": 1,
                                           "amount": 2599}]
    assert recorded[("order_phone_7", "order_created")]["user"] == expected_user(
        phone_numbers_sha256=None)
    assert recorded[("order_phone_8", "order_created")]["user"] == expected_user(
        phone_numbers_sha256=[sha256("29022334")])
    assert recorded[("order_phone_15", "order_created")]["user"] == expected_user(
        phone_numbers_sha256=[sha256("493012345678901")])
    assert recorded[("order_phone_16", "order_created")]["user"] == expected_user(
        phone_numbers_sha256=None)

    dead = sorted((d["reason"], d["event_id"], d["source"])
                  for d in read_dead_letters(tmp_path / "first"))
    assert dead == sorted([
        ("invalid_custom_event_name", "promo_2", f"{export}#row=4"),
        ("invalid_custom_event_name", "promo_3", f"{export}#row=5"),
        ("invalid_custom_event_name", "promo_4", f"{export}#row=6"),
        ("invalid_custom_event_name", "promo_6", f"{export}#row=8"),
        ("invalid_source_url", "order_relative", f"{export}#row=9"),
        ("invalid_source_url", "order_bare_host", f"{export}#row=10")])
    report = read_report(tmp_path / "first" / "report.json")
    assert (report["rows_read"], report["events_accepted"], report["events_dead_lettered"],
            report["events_skipped"]) == (16, 9, 6, 1)
    assert report["dead_letter_reasons"] == {"invalid_custom_event_name": 4,
                                             "invalid_source_url": 2}
    assert report["skip_reasons"] == {"duplicate": 1}
    assert {key: report["mapper_counters"].get(key) for key in (
        "user.phone.invalid", "user.android_advertising_id.invalid")} == {
        "user.phone.invalid": 2, "user.android_advertising_id.invalid": 2}
    assert report["reconciled"] is True and outcome.exit_code == EXIT_OK
    assert [n for _, n, validate_only in emulator.request_log if not validate_only] == [9]

    # Re-sent with --dedupe, one event per request: the custom pair sharing an id stays two
    # events, the repeat of a key is skipped before sending, and the API keeps the first event
    # of each key (the "fixed" amount changes nothing for an id it already accepted).
    resend = write_parquet(tmp_path / "resend.parquet", [
        custom_row("promo_1", "promo_click", value=7.0, currency="USD"),
        custom_row("promo_1", "Promo_View"),
        custom_row("promo_1", "promo_click", value=9.0, currency="USD")])
    second = run(["--input", str(resend), "--dedupe", "--batch-size", "1",
                  *delivery_args(emulator, tmp_path / "second")])
    report = read_report(tmp_path / "second" / "report.json")
    assert (report["rows_read"], report["events_accepted"], report["skip_reasons"],
            report["requests"]) == (3, 2, {"duplicate": 1}, 2)
    assert report["reconciled"] is True and second.exit_code == EXIT_OK
    assert emulator.stats["duplicates"] == 2      # both were already recorded: first one wins
    assert recorded_by_key(emulator)[("promo_1", "promo_click")]["data"] == {"type": "custom"}
    assert len(emulator.recorded_events(EMULATOR_PIXEL_ID)) == 9


def test_replayed_custom_events_sharing_an_id_are_two_events(emulator, tmp_path):
    now_ms = int(NOW.timestamp() * 1000) - 60_000

    def record(name: str) -> str:
        event = {"id": "promo_9", "type": "custom", "custom_event_name": name,
                 "timestamp_ms": now_ms, "action_source": "web",
                 "source_url": "https://shop.example.com/p", "data": {"type": "custom"}}
        return DeadLetter("retries_exhausted", "HTTP 503 after 1 attempt", "promo_9",
                          "export.parquet#row=1", event).to_json()

    dead = tmp_path / "dead-delivery-00000.jsonl"
    dead.write_text("\n".join([record("promo_click"), record("promo_view"),
                               record("Promo_Click")]) + "\n")
    replay = run(["--input", str(dead), "--input-format", "dead-letter",
                  *delivery_args(emulator, tmp_path / "replay")])

    assert sorted(recorded_by_key(emulator)) == [("promo_9", "promo_click"),
                                                 ("promo_9", "promo_view")]
    report = read_report(tmp_path / "replay" / "report.json")
    assert (report["rows_read"], report["events_accepted"], report["skip_reasons"]) == (
        3, 2, {"duplicate": 1})   # Promo_Click is promo_click to the API: the same key
    assert report["reconciled"] is True and replay.exit_code == EXIT_OK
