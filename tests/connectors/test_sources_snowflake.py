"""The Snowflake source up to its driver: URL, options, credentials, and the conversion of the
Arrow batches Snowflake returns (built here with pyarrow, with the field metadata Snowflake
sets). No test reaches a Snowflake account: none can be reached from here (see the README)."""
from __future__ import annotations

import datetime
import json
from decimal import Decimal

import pyarrow as pa
import pytest

from connectors.rows import RowChunk
from connectors.snowflake_source import (
    SnowflakeTarget,
    connection_options,
    parse_snowflake_url,
    qmark_query,
    snowflake_batch,
)
from connectors.sql_source import ReadSql, dialect_of, redact_url
from transforms.columnar import ColumnarMapper
from transforms.errors import ConfigError
from transforms.mapping import parse_mapping

SECRET = "projects/acme/secrets/sf-etl-key"


@pytest.mark.parametrize("url, target", [
    ("snowflake://ETL_USER@myorg-myaccount/ANALYTICS/PUBLIC?warehouse=LOAD_WH&role=ETL",
     SnowflakeTarget("ETL_USER", "myorg-myaccount", "ANALYTICS", "PUBLIC",
                     (("warehouse", "LOAD_WH"), ("role", "ETL")))),
    ("snowflake://etl@xy12345.eu-west-1", SnowflakeTarget("etl", "xy12345.eu-west-1")),
    ("snowflake://etl@acct/DB", SnowflakeTarget("etl", "acct", "DB")),
    (f"snowflake://etl@acct/DB/S?private_key_secret={SECRET}",
     SnowflakeTarget("etl", "acct", "DB", "S", private_key_secret=SECRET + "/versions/latest")),
    (f"snowflake://etl@acct?password_secret={SECRET}/versions/3",
     SnowflakeTarget("etl", "acct", password_secret=SECRET + "/versions/3")),
    # the account copied from its URL: the driver adds the domain itself (before, it looked up
    # xy12345.eu-west-1.snowflakecomputing.com.snowflakecomputing.com for minutes)
    ("snowflake://etl@xy12345.eu-west-1.snowflakecomputing.com/DB",
     SnowflakeTarget("etl", "xy12345.eu-west-1", "DB")),
    ("snowflake://etl@MyOrg-Acct.SnowflakeComputing.com", SnowflakeTarget("etl", "MyOrg-Acct")),
    ("snowflake://etl@xy12345.us-east-1.privatelink.snowflakecomputing.com",
     SnowflakeTarget("etl", "xy12345.us-east-1.privatelink")),
])
def test_parse_snowflake_url(url: str, target: SnowflakeTarget) -> None:
    assert dialect_of(url) == "snowflake"
    assert parse_snowflake_url(url) == target


@pytest.mark.parametrize("url, message", [
    ("snowflake://etl:hunter2@acct/DB", "never goes in --sql-url"),
    ("snowflake://acct/DB", "needs a user and an account"),
    ("snowflake://etl@acct/DB/S/extra", "the path is /DATABASE/SCHEMA"),
    ("snowflake://etl@acct/DB?password=hunter2", "option 'password' is not one we pass on"),
    ("snowflake://etl@acct/DB?private_key_secret=sf-key", "not a Secret Manager resource"),
])
def test_bad_snowflake_urls_fail_when_the_graph_is_built(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as failure:
        ReadSql(url, "SELECT 1", check_query=False)
    assert "hunter2" not in str(failure.value)


BASE = {"username": "etl", "adbc.snowflake.sql.account": "acct",
        "adbc.snowflake.sql.client_option.app_name": "capi-sync",
        # a login gives up within a minute (the driver's own default: 300 s)
        "adbc.snowflake.sql.client_option.login_timeout": "60s",
        "adbc.snowflake.sql.db": "DB", "adbc.snowflake.sql.warehouse": "WH"}
PEM = "-----BEGIN PRIVATE KEY-----\nMIIB...\n-----END PRIVATE KEY-----"


@pytest.mark.parametrize("query, environ, secrets, extra", [
    ("", {"SNOWFLAKE_PRIVATE_KEY_FILE": "/keys/etl.p8", "SNOWFLAKE_PASSWORD": "pw"}, {},
     {"adbc.snowflake.sql.auth_type": "auth_jwt",
      "adbc.snowflake.sql.client_option.jwt_private_key": "/keys/etl.p8"}),
    ("", {"SNOWFLAKE_PRIVATE_KEY": PEM, "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE": "phrase"}, {},
     {"adbc.snowflake.sql.auth_type": "auth_jwt",
      "adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_value": PEM,
      "adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_password": "phrase"}),
    (f"&private_key_secret={SECRET}", {"SNOWFLAKE_PASSWORD": "pw"},
     {SECRET + "/versions/latest": PEM},
     {"adbc.snowflake.sql.auth_type": "auth_jwt",
      "adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_value": PEM}),
    ("", {"SNOWFLAKE_PASSWORD": "pw-from-env"}, {},
     {"adbc.snowflake.sql.auth_type": "auth_snowflake", "password": "pw-from-env"}),
    (f"&password_secret={SECRET}", {"SNOWFLAKE_PRIVATE_KEY_FILE": "/keys/etl.p8"},
     {SECRET + "/versions/latest": "pw-from-secret"},
     {"adbc.snowflake.sql.auth_type": "auth_snowflake", "password": "pw-from-secret"}),
])
def test_credentials_come_from_the_environment_or_secret_manager(
        query: str, environ: dict, secrets: dict, extra: dict) -> None:
    target = parse_snowflake_url(f"snowflake://etl@acct/DB?warehouse=WH{query}")
    assert connection_options(target, environ, secrets.__getitem__) == {**BASE, **extra}


def test_the_driver_takes_every_option_we_give_it() -> None:
    # The ADBC database is made and its options parsed without a network round trip (the
    # login happens when a connection opens): a value the driver cannot read, such as a
    # login_timeout without its unit ("60"), fails here.
    import adbc_driver_snowflake
    target = parse_snowflake_url("snowflake://etl@myorg-acct/DB/S?warehouse=WH&role=ETL")
    database = adbc_driver_snowflake.connect(
        db_kwargs=connection_options(target, {"SNOWFLAKE_PASSWORD": "pw"}, lambda name: ""))
    database.close()


def test_no_credentials_is_a_configuration_error() -> None:
    target = parse_snowflake_url("snowflake://etl@acct/DB")
    with pytest.raises(ConfigError, match="No Snowflake credentials for user 'etl': set "
                                          "SNOWFLAKE_PRIVATE_KEY_FILE"):
        connection_options(target, {}, lambda name: pytest.fail("no secret named"))


def test_the_url_in_labels_and_display_data_holds_no_secret() -> None:
    url = f"snowflake://etl@acct/DB?warehouse=WH&private_key_secret={SECRET}"
    read = ReadSql(url, "SELECT * FROM ORDERS", check_query=False)
    assert redact_url(url) == url      # nothing to hide: only the secret's name is in it
    assert read.display_data()["label"] == "ORDERS"


@pytest.mark.parametrize("query, params, sql, values", [
    ("SELECT * FROM T WHERE TS > %(since)s AND N LIKE 'a%%' OR TS2 > %(since)s",
     {"since": 7}, "SELECT * FROM T WHERE TS > ? AND N LIKE 'a%' OR TS2 > ?", (7, 7)),
    ("SELECT 'a%%'", None, "SELECT 'a%%'", ()),
])
def test_qmark_query(query: str, params: dict | None, sql: str, values: tuple) -> None:
    assert qmark_query(query, params) == (sql, values)


def snowflake_field(name: str, arrow_type: pa.DataType, logical_type: str) -> pa.Field:
    return pa.field(name, arrow_type, metadata={"logicalType": logical_type})


def snowflake_like_batch() -> pa.RecordBatch:
    """Types as the ADBC Snowflake driver returns them (use_high_precision on)."""
    schema = pa.schema([
        snowflake_field("ORDER_ID", pa.decimal128(38, 0), "FIXED"),
        snowflake_field("BIG", pa.decimal128(38, 0), "FIXED"),
        snowflake_field("VALUE", pa.decimal128(12, 2), "FIXED"),
        snowflake_field("CONTEXT", pa.string(), "OBJECT"),
        snowflake_field("ITEMS", pa.string(), "ARRAY"),
        snowflake_field("PAYLOAD", pa.string(), "VARIANT"),
        snowflake_field("EMAIL", pa.string(), "TEXT"),
        snowflake_field("CREATED_AT", pa.timestamp("ns", "UTC"), "TIMESTAMP_TZ"),
    ])
    return pa.record_batch([
        pa.array([Decimal(1001), Decimal(1002)], pa.decimal128(38, 0)),
        pa.array([Decimal(2) ** 70, Decimal(1)], pa.decimal128(38, 0)),
        pa.array([Decimal("19.99"), None], pa.decimal128(12, 2)),
        pa.array(['{\n  "event_id": "e1",\n  "page": {"url": "https://x.example/"}\n}', None]),
        pa.array(['[\n  {"id": "sku_1", "quantity": 2}\n]', "[]"]),
        pa.array(['"just text"', "12.5"]),
        pa.array(["ann@example.com", None]),
        pa.array([1_795_000_000_123_456_789, None], pa.timestamp("ns", "UTC")),
    ], schema=schema)


def test_snowflake_batches_convert_to_the_values_the_mapper_expects() -> None:
    batch = snowflake_batch(snowflake_like_batch())
    rows = RowChunk.of_arrow(batch, "sql:ORDERS", 1).rows
    assert rows == [
        {"ORDER_ID": 1001, "BIG": Decimal(2) ** 70, "VALUE": Decimal("19.99"),
         "CONTEXT": {"event_id": "e1", "page": {"url": "https://x.example/"}},
         "ITEMS": [{"id": "sku_1", "quantity": 2}], "PAYLOAD": "just text",
         "EMAIL": "ann@example.com",
         "CREATED_AT": datetime.datetime(2026, 11, 18, 11, 6, 40, 123456,
                                         tzinfo=datetime.timezone.utc)},
        {"ORDER_ID": 1002, "BIG": Decimal(1), "VALUE": None, "CONTEXT": None, "ITEMS": [],
         "PAYLOAD": 12.5, "EMAIL": None, "CREATED_AT": None},
    ]
    assert batch.schema.field("ORDER_ID").type == pa.int64()
    assert batch.schema.field("BIG").type == pa.decimal128(38, 0)   # over 64 bits: kept exact


def test_snowflake_batches_map_like_their_rows() -> None:
    plan = parse_mapping(json.dumps({
        "version": 1,
        "event": {"id": "order_{ORDER_ID}", "type": {"constant": "order_created"},
                  "timestamp_ms": {"path": "CREATED_AT", "unit": "ms"},
                  "action_source": {"constant": "web"}, "source_url": "CONTEXT.page.url"},
        "data": {"amount": {"path": "VALUE", "unit": "major"}, "currency": {"constant": "USD"},
                 "contents": {"path": "ITEMS", "fields": {"id": "ITEMS.X.id",
                                                          "quantity": "ITEMS.X.quantity"}}},
        "user": {"fields": {"email": "EMAIL"}}}), "snowflake.yaml")
    now_ms = 1_795_000_100_000
    batch = snowflake_batch(snowflake_like_batch())
    sources = ["sql:ORDERS#row=1", "sql:ORDERS#row=2"]
    mapper = ColumnarMapper(plan, clock_ms=lambda: now_ms)
    results = list(mapper.map_batch(batch, sources))
    from transforms.mapper import RowMapper
    by_rows = RowMapper(plan, clock_ms=lambda: now_ms)
    assert results == [by_rows.map_row(row, source) for row, source
                       in zip(RowChunk.of_arrow(batch, "sql:ORDERS", 1).rows, sources, strict=True)]
    event = results[0].event.event
    assert (event["id"], event["source_url"], event["data"]["amount"],
            event["data"]["contents"]) == ("order_1001", "https://x.example/", 1999,
                                           [{"id": "sku_1", "quantity": 2}])


def test_the_driver_of_the_extra_is_installed() -> None:
    import adbc_driver_snowflake.dbapi  # noqa: F401  (pip install -e ".[snowflake]")


def test_driver_errors_lose_every_credential() -> None:
    from connectors.snowflake_source import without_secrets

    class DriverError(Exception):
        sqlstate = "28000"

    options = {"password": "pw-Secret-1", "username": "etl",
               "adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_value": PEM,
               "adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_password": "phrase-2"}
    error = without_secrets(DriverError(f"login failed for etl/pw-Secret-1 key {PEM} phrase-2"),
                            options)
    assert str(error) == "DriverError: login failed for etl/*** key *** ***"
    assert error.sqlstate == "28000"
