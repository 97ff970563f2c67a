"""`capi-sync preview`: mapped, hashed events and fill rates; no key, nothing sent."""
from __future__ import annotations

import json

import pytest

from pipeline.cli import main
from pipeline.preview import field_names
from tests.pipeline.builders import ca_row, sha256, write_parquet

CLEAR_PII = ("Mary.Jane@Example.COM", "mary.jane@example.com", "555-0100", "14155550100",
             "cust-42", "Mary-Jane", "O'Brien")


@pytest.fixture(autouse=True)
def no_api_key(monkeypatch):
    monkeypatch.delenv("OPENAI_CAPI_API_KEY", raising=False)


def run_preview(capsys, *args):
    code = main(["preview", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_preview_prints_hashed_events_and_fill_rates_without_a_key_or_a_send(
        emulator, tmp_path, capsys):
    rows = [ca_row("order_1"),
            ca_row("order_2", partners__openai__oppref=None),
            ca_row("order_old", minutes_ago=8 * 24 * 60),
            ca_row("lead_1", "generate_lead", value=None, currency=None, items=None)]
    export = write_parquet(tmp_path / "export.parquet", rows)
    code, out, _ = run_preview(capsys, "--input", str(export), "--endpoint", emulator.url,
                               "--pixel-id", "px_test")
    assert code == 0
    assert emulator.stats["requests"] == 0 and emulator.recorded_events() == []
    lines = out.splitlines()
    assert lines[0] == (f"capi-sync preview: the first 4 rows of {export} through "
                        "<default mapping> (nothing is sent)")
    assert lines[1] == f"row 1  {export}#row=1"
    assert lines[2].startswith("  source fields: event_name, type, value, currency, "
                               "context.event_id, context.event_timestamp, context.page.url, ")
    assert "items.X.product.price" in lines[2]
    event = json.loads(lines[3].removeprefix("  event: "))
    assert event["id"] == "order_1"
    assert event["user"]["emails_sha256"] == [sha256("mary.jane@example.com")]
    assert event["user"]["phone_numbers_sha256"] == [sha256("14155550100")]
    assert lines[7] == "row 3  " + f"{export}#row=3"
    assert lines[9].startswith("  dead letter: stale_timestamp: timestamp_ms is more than 7 days in the past")
    assert json.loads(lines[10].removeprefix("  event (would be dead-lettered): "))["id"] == \
        "order_old"
    for text in CLEAR_PII:
        assert text not in out
    fill = lines[lines.index("fill rate over the 4 rows read (3 would be sent):") + 1:]
    assert fill[0].split() == ["CAPI", "field", "rows", "rate", "mapping", "key"]
    table = {line.split()[0]: line.split()[1:] for line in fill[1:] if not line.startswith("note")}
    assert table["oppref"] == ["3", "75%", "event.oppref"]          # all 4 rows but order_2
    assert table["data.amount"] == ["3", "75%", "data.amount"]      # not the lead
    assert table["data.contents"] == ["3", "75%", "data.contents.path"]
    assert table["user.emails_sha256"] == ["4", "100%", "user.fields.email"]
    assert table["data.plan_id"] == ["0", "0%", "data.plan_id"]
    assert table["user.obref"] == ["0", "0%", "user.fields.obref"]


def test_preview_reads_the_first_five_rows_by_default_and_rows_on_request(tmp_path, capsys):
    export = write_parquet(tmp_path / "export.parquet", [ca_row(f"o{n}") for n in range(8)])
    _, out, _ = run_preview(capsys, "--input", str(export))
    assert [line.split()[2] for line in out.splitlines() if line.startswith("row ")] == \
        [f"{export}#row={n}" for n in range(1, 6)]
    _, out, _ = run_preview(capsys, "--input", str(export), "--rows", "2")
    assert sum(line.startswith("row ") for line in out.splitlines()) == 2


def test_preview_of_a_csv_with_a_wrong_path_is_a_configuration_error(tmp_path, capsys):
    export = tmp_path / "orders.csv"
    export.write_text("order_id,event_name,email\no1,purchase,a@example.com\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("version: 1\nevent: {id: order_id, type: event_name}\n"
                       "user: {fields: {email: emial}}\n")
    code, out, err = run_preview(capsys, "--input", str(export), "--mapping", str(mapping))
    assert code == 2 and out == ""
    assert "  - user.fields.email: `emial` matches no column; did you mean `email`?" in \
        err.splitlines()


@pytest.mark.parametrize("separator, name", [(";", "semicolons"), ("\t", "tabs"),
                                             ("|", "'|'")])
def test_a_csv_separated_by_something_else_than_commas_is_named_as_such(
        tmp_path, capsys, separator, name):
    # Before: `event.id: context.event_id matches no column`, for every path of the mapping.
    export = tmp_path / "orders.csv"
    export.write_text(separator.join(["context.event_id", "event_name", "user.email"])
                      + "\n" + separator.join(["o1", "purchase", "a@example.com"]) + "\n")
    code, out, err = run_preview(capsys, "--input", str(export))
    assert code == 2 and out == ""
    assert err == (f"capi-sync preview: configuration error: {export}: its header is one column "
                   f"holding {name}; capi-sync reads CSV separated by commas. Export the file "
                   f"with commas (or as Parquet or JSON Lines).\n")


def test_preview_of_jsonl_shows_an_unreadable_line_and_a_skip(tmp_path, capsys):
    export = tmp_path / "events.jsonl"
    export.write_text('{"id": "a1", "name": "test_order", "mail": "A@Example.com"}\n'
                      "not json\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("version: 1\nevent: {id: id, type: name, action_source: "
                       "{constant: offline}}\nevent_names: {exclude: [test_order]}\n"
                       "user: {fields: {email: mail}}\n")
    code, out, _ = run_preview(capsys, "--input", str(export), "--mapping", str(mapping))
    assert code == 0
    assert out.splitlines()[1:6] == [
        f"row 1  {export}#row=1",
        "  source fields: id, name, mail",
        "  skipped: excluded_event",
        f"row 2  {export}#row=2",
        "  source fields: (none)",
    ]
    assert out.splitlines()[6].startswith(f"  dead letter: mapping_error: line 2 of {export} "
                                          "is not valid JSON")
    assert "A@Example.com" not in out


def test_preview_of_duckdb_reading_a_file_itself(tmp_path, capsys):
    export = write_parquet(tmp_path / "export.parquet", [ca_row("o1"), ca_row("o2")])
    code, out, _ = run_preview(capsys, "--sql-url", "duckdb:///:memory:", "--sql-query",
                               f"SELECT * FROM read_parquet('{export}') ORDER BY 1", "--rows", "1")
    assert code == 0
    assert out.splitlines()[1] == "row 1  sql:read_parquet#row=1"
    assert json.loads(out.splitlines()[3].removeprefix("  event: "))["id"] in ("o1", "o2")


def test_preview_of_a_glob_matching_nothing_exits_5(tmp_path, capsys):
    code, _, err = run_preview(capsys, "--input", str(tmp_path / "none" / "*.parquet"))
    assert code == 5
    assert "no row was read" in err


def test_field_names_are_paths_never_values():
    row = {"user": {"email": "a@b.c", "phone": None}, "items": [{"sku": "1"}, {"qty": 2}],
           "tags": ["x"], "empty": ""}
    assert field_names(row) == ["user.email", "items.X.sku", "items.X.qty", "tags"]


def test_preview_of_a_postgresql_query(tmp_path, capsys, postgres_url):
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS preview_leads")
        connection.execute("CREATE TABLE preview_leads (lead_id text, email text, attrs jsonb)")
        connection.execute("INSERT INTO preview_leads VALUES ('l1', 'Lee@Example.com', "
                           "'{\"ip\": \"203.0.113.9\"}'), ('l2', NULL, NULL), ('l3', NULL, NULL)")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("version: 1\nevent: {id: lead_id, type: {constant: generate_lead},"
                       " action_source: {constant: offline}}\n"
                       "user: {fields: {email: email, ip_address: attrs.ip}}\n")
    code, out, err = run_preview(capsys, "--sql-url", postgres_url, "--sql-query",
                                 "SELECT * FROM preview_leads ORDER BY lead_id",
                                 "--mapping", str(mapping), "--rows", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[1:3] == ["row 1  sql:preview_leads#row=1", "  source fields: lead_id, email, attrs.ip"]
    event = json.loads(lines[3].removeprefix("  event: "))
    assert event["user"] == {"emails_sha256": [sha256("lee@example.com")],
                             "ip_address": "203.0.113.9"}
    assert "Lee@Example.com" not in out and "password" not in out
    fill = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  user.")}
    assert fill == {"user.emails_sha256": ["1", "50%", "user.fields.email"],
                    "user.ip_address": ["1", "50%", "user.fields.ip_address"]}


def test_preview_refuses_a_typod_flag_and_dead_letter_files(tmp_path, capsys):
    code, _, err = run_preview(capsys, "--input", "x.parquet", "--rowz", "3")
    assert code == 2 and "unknown option --rowz" in err
    code, _, err = run_preview(capsys, "--input", "x.jsonl", "--input-format", "dead-letter")
    assert code == 2
    assert "preview maps source rows; dead-letter files hold events mapped already" in err
