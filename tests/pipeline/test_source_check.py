"""A wrong mapping path is caught from the source's columns before any row is read.

Each case runs the real command line against the emulator: exit 2, the message names the path
and the nearest column, and the emulator saw no request at all (not even the key preflight,
which the launcher makes before reading; rows are read only after it).
"""
from __future__ import annotations

import csv

import duckdb
import psycopg
import pytest
from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.gcp.internal.clients import bigquery as beam_bigquery
from apache_beam.io.localfilesystem import LocalFileSystem
from apache_beam.options.pipeline_options import PipelineOptions
from google.cloud.bigquery import SchemaField

from pipeline.cli import main
from tests.conftest import EMULATOR_API_KEY, EMULATOR_PIXEL_ID
from tests.pipeline.builders import ca_row, write_parquet
from transforms.mapping import load_mapping, parse_mapping
from transforms.schema_check import check_mapping, columns_from_bigquery

TYPO_MAPPING = "extends: default\nuser:\n  fields:\n    email: emial\n"
FLAT_MAPPING = """
version: 1
event:
  id: order_id
  type: {constant: purchase}
  timestamp_ms: {path: created_at, unit: iso}
  action_source: {constant: offline}
data:
  amount: {path: revenu, unit: major}
  currency: currency
user:
  fields:
    email: email
"""
FLAT_COLUMNS = ["order_id", "created_at", "revenue", "currency", "email"]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("OPENAI_CAPI_API_KEY", EMULATOR_API_KEY)


def run_cli(emulator, tmp_path, mapping_text, *source_args):
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(mapping_text)
    return main([*source_args, "--mapping", str(mapping), "--pixel-id", EMULATOR_PIXEL_ID,
                 "--endpoint", emulator.url, "--dead-letter", str(tmp_path / "dead" / "dead"),
                 "--report", str(tmp_path / "report.json"), "--progress-seconds", "0",
                 "--direct_num_workers", "1", "--direct_running_mode", "in_memory"])


def assert_caught(code, capsys, emulator, tmp_path, expected_line):
    err = capsys.readouterr().err
    assert code == 2
    assert expected_line in err.splitlines()
    assert emulator.stats["requests"] == 0 and emulator.recorded_events() == []
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "dead").exists()


def test_parquet_struct_field_typo(emulator, tmp_path, capsys):
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    code = run_cli(emulator, tmp_path, TYPO_MAPPING, "--input", str(export))
    assert_caught(code, capsys, emulator, tmp_path,
                  "  - user.fields.email: `emial` matches no column; did you mean `user.email`?")


def test_parquet_message_names_the_mapping_and_the_source(emulator, tmp_path, capsys):
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    run_cli(emulator, tmp_path, TYPO_MAPPING.replace("emial", "user.emial"), "--input",
            str(export))
    err = capsys.readouterr().err
    assert (f"capi-sync: configuration error: Mapping '{tmp_path / 'mapping.yaml'}' reads paths "
            f"that match no column of {export} (the file schema):") in err
    assert "  - user.fields.email: `user.emial` matches no column; did you mean `user.email`?" \
        in err.splitlines()


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_header_typo(emulator, tmp_path, capsys):
    export = write_csv(tmp_path / "orders.csv", FLAT_COLUMNS,
                       [["o1", "2026-01-01T00:00:00Z", "9.99", "USD", "a@example.com"]])
    code = run_cli(emulator, tmp_path, FLAT_MAPPING, "--input", str(export))
    assert_caught(code, capsys, emulator, tmp_path,
                  "  - data.amount: `revenu` matches no column; did you mean `revenue`?")


def make_duckdb(path):
    connection = duckdb.connect(str(path))
    connection.execute("CREATE TABLE orders (order_id VARCHAR, created_at TIMESTAMPTZ, revenue DOUBLE,"
                       " currency VARCHAR, email VARCHAR)")
    connection.execute("INSERT INTO orders VALUES ('o1', '2026-01-01 00:00:00+00', 9.99, 'USD', "
                       "'a@example.com')")
    connection.close()
    return path


def test_duckdb_result_columns_typo(emulator, tmp_path, capsys):
    database = make_duckdb(tmp_path / "w.db")
    code = run_cli(emulator, tmp_path, FLAT_MAPPING, "--sql-url", f"duckdb:///{database}",
                   "--sql-query", "SELECT * FROM orders WHERE created_at >= %(since)s")
    assert_caught(code, capsys, emulator, tmp_path,
                  "  - data.amount: `revenu` matches no column; did you mean `revenue`?")


def test_a_duckdb_url_with_three_slashes_before_an_absolute_path_names_the_file_it_meant(
        emulator, tmp_path, capsys, monkeypatch):
    # duckdb:///srv/w.db is srv/w.db, relative (SQLAlchemy's rule). Before, the launcher's check
    # opened it with DuckDB's own error, "Cannot reach ... IOException ... database does not
    # exist", naming neither the rule nor the file that was meant.
    database = make_duckdb(tmp_path / "w.db")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    url = f"duckdb://{database}"      # three slashes before the absolute path
    code = run_cli(emulator, tmp_path, FLAT_MAPPING, "--sql-url", url,
                   "--sql-query", "SELECT * FROM orders")
    relative = str(database)[1:]
    assert_caught(code, capsys, emulator, tmp_path,
                  f"capi-sync: No DuckDB file at {relative!r} (from {url!r}; relative to "
                  f"{elsewhere}). Write duckdb:///relative/path.db or "
                  f"duckdb:////absolute/path.db. There is a file at {database}: for it, write "
                  f"duckdb:///{database} (four slashes).")


def test_a_malformed_sql_url_is_a_configuration_error_not_an_unreachable_server(
        emulator, tmp_path, capsys):
    # Before: "capi-sync: Cannot reach duckdb:/w.db to check the query: ConfigError: ..."
    code = run_cli(emulator, tmp_path, FLAT_MAPPING, "--sql-url", "duckdb:/w.db",
                   "--sql-query", "SELECT * FROM orders")
    assert_caught(code, capsys, emulator, tmp_path,
                  "capi-sync: configuration error: Unsupported SQL URL 'duckdb:/w.db': use "
                  "duckdb:///path/to/file.db, postgresql://user@host:5432/database (Redshift: its "
                  "postgresql:// endpoint) or snowflake://user@account/database/schema?warehouse=WH.")


def test_duckdb_reading_files_itself_in_memory(emulator, tmp_path, capsys):
    export = write_parquet(tmp_path / "export.parquet", [ca_row("order_1")])
    code = run_cli(emulator, tmp_path, TYPO_MAPPING, "--sql-url", "duckdb:///:memory:",
                   "--sql-query", f"SELECT * FROM read_parquet('{export}')")
    assert_caught(code, capsys, emulator, tmp_path,
                  "  - user.fields.email: `emial` matches no column; did you mean `user.email`?")


def test_postgresql_result_columns_typo(emulator, tmp_path, capsys, postgres_url):
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS schema_check_orders")
        connection.execute("CREATE TABLE schema_check_orders (order_id text, created_at text,"
                           " revenue numeric, currency text, email text, attrs jsonb)")
        connection.execute("INSERT INTO schema_check_orders VALUES ('o1', '2026-01-01', 9.99,"
                           " 'USD', 'a@example.com', '{}')")
    mapping = FLAT_MAPPING + "    phone: attrs.phone\n"    # jsonb: any path below is possible
    code = run_cli(emulator, tmp_path, mapping, "--sql-url", postgres_url, "--sql-query",
                   "SELECT * FROM schema_check_orders;")
    err = capsys.readouterr().err
    assert code == 2
    assert "  - data.amount: `revenu` matches no column; did you mean `revenue`?" in \
        err.splitlines()
    assert "attrs" not in err and "password" not in err
    assert emulator.stats["requests"] == 0 and emulator.recorded_events() == []


@pytest.mark.parametrize("source", [["--bigquery-table", "my-project.shop.orders"],
                                    ["--bigquery-query", "SELECT * FROM shop.orders"]])
def test_bigquery_without_google_credentials_exits_2_before_anything(emulator, tmp_path, source):
    # Before: a warning, then Beam retried the credentials, read "anonymously" and waited on
    # BigQuery for many minutes (offline: more than 5).
    import os
    import subprocess
    import sys

    from pipeline.source_check import NO_GOOGLE_CREDENTIALS
    env = {key: value for key, value in os.environ.items()
           if key != "GOOGLE_APPLICATION_CREDENTIALS"}
    env.update(OPENAI_CAPI_API_KEY=EMULATOR_API_KEY, CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
               NO_GCE_CHECK="True")     # no gcloud login, no metadata server
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", *source, "--pixel-id", EMULATOR_PIXEL_ID,
         "--endpoint", emulator.url, "--dead-letter", str(tmp_path / "dead" / "dead"),
         "--temp_location", str(tmp_path / "tmp")],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.endswith(f"capi-sync: configuration error: {NO_GOOGLE_CREDENTIALS}\n"
                                "Run `capi-sync --help` for the options.\n")
    assert "Traceback" not in done.stderr
    assert emulator.request_log == []


class _UnlistableFileSystem(LocalFileSystem):
    """`unlistable://…`: a file system (found by Beam through its scheme, as gcsio is) whose
    every listing fails, as gs:// does for a bucket this machine has no access to."""

    @classmethod
    def scheme(cls) -> str:
        return "unlistable"

    def match(self, patterns, limits=None):
        raise BeamIOError("Match operation failed", {
            pattern: PermissionError("403 storage.objects.list denied") for pattern in patterns})


def test_an_input_this_machine_cannot_list_exits_2_before_anything(emulator, tmp_path, capsys):
    # Before: a warning, then MatchFiles failed inside the run: a Beam traceback and exit 1
    # (offline, for gs://, after four minutes).
    code = main(["--input", "unlistable://my-bucket/exports/*.parquet", "--pixel-id",
                 EMULATOR_PIXEL_ID, "--endpoint", emulator.url, "--dead-letter",
                 str(tmp_path / "dead" / "dead"), "--direct_num_workers", "1",
                 "--direct_running_mode", "in_memory"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.endswith(
        "capi-sync: configuration error: --input unlistable://my-bucket/exports/*.parquet "
        "cannot be listed (PermissionError: 403 storage.objects.list denied). Check the location, "
        "this machine's access to it (for gs://: `gcloud auth application-default login`) and "
        "its network.\nRun `capi-sync --help` for the options.\n")
    assert "Traceback" not in err and emulator.request_log == []


def test_on_dataflow_an_input_the_launcher_cannot_list_is_left_to_the_workers(caplog):
    from pipeline.options import CapiSyncOptions
    from pipeline.source_check import source_columns
    opts = PipelineOptions(["--input", "unlistable://b/*.parquet"]).view_as(CapiSyncOptions)
    assert source_columns(opts, local=False) is None
    assert ("--input unlistable://b/*.parquet cannot be listed (PermissionError: 403 "
            "storage.objects.list denied); the mapping was not checked against the files (the "
            "workers list them with their own access).") in caplog.text


def test_bigquery_table_schema_from_schema_objects():
    """No GCP here: the schema objects BigQuery's client and Beam's reader hand out."""
    mapping = parse_mapping(FLAT_MAPPING, "mapping.yaml")
    client_schema = [SchemaField(name, "STRING") for name in FLAT_COLUMNS]
    beam_schema = beam_bigquery.TableSchema(fields=[
        beam_bigquery.TableFieldSchema(name=name, type="STRING", mode="NULLABLE")
        for name in FLAT_COLUMNS])
    for schema in (client_schema, beam_schema.fields):
        result = check_mapping(mapping, columns_from_bigquery(schema), "bigquery:p:d.orders",
                               load_mapping())
        assert result.problems == (
            "data.amount: `revenu` matches no column; did you mean `revenue`?",)


def test_a_file_whose_format_cannot_be_told_is_a_configuration_error(emulator, tmp_path, capsys):
    (tmp_path / "export.txt").write_text("hello\n")
    code = run_cli(emulator, tmp_path, TYPO_MAPPING, "--input", str(tmp_path / "export.txt"))
    assert code == 2
    assert "pass the format explicitly (--input-format parquet|jsonl|csv)" in \
        capsys.readouterr().err
    assert emulator.stats["requests"] == 0
