"""Reading a Snowflake query as Arrow record batches, through the ADBC Snowflake driver.

    --sql-url 'snowflake://ETL_USER@myorg-myaccount/ANALYTICS/PUBLIC?warehouse=LOAD_WH&role=ETL'

URL: `snowflake://USER@ACCOUNT[/DATABASE[/SCHEMA]][?warehouse=..&role=..]`, ACCOUNT as Snowflake
writes it (`myorg-myaccount`, or a locator like `xy12345.eu-west-1`; a trailing
`.snowflakecomputing.com`, copied from the account's URL, is dropped). A login gives up after
LOGIN_TIMEOUT. Needs the optional extra:
`pip install "capi-sync[snowflake]"`.

Credentials never travel in the URL or on the command line (a password in the URL is refused);
the worker reads them when it connects, first found wins:
1. key-pair (JWT) authentication: `private_key_secret=projects/P/secrets/NAME[/versions/V]` in the
   URL (a Secret Manager *name*, holding the PEM), else `SNOWFLAKE_PRIVATE_KEY` (the PEM text) or
   `SNOWFLAKE_PRIVATE_KEY_FILE` (its path) in the environment; an encrypted key's passphrase in
   `SNOWFLAKE_PRIVATE_KEY_PASSPHRASE`;
2. password authentication: `password_secret=projects/...` in the URL, else `SNOWFLAKE_PASSWORD`.

Parameters: `%(since)s` as for the other SQL sources, bound by the driver (`?` placeholders).

Values: VARIANT, OBJECT and ARRAY arrive from Snowflake as JSON text; they are marked as JSON, so
the mapper gets them parsed (dicts, lists), like PostgreSQL's jsonb. NUMBER(p, 0) becomes an int
when it fits in 64 bits (Snowflake's INTEGER is NUMBER(38, 0)); NUMBER(p, s) stays Decimal;
timestamps stay timestamps (nanoseconds truncated to microseconds by the mapper's reader).

Tested here up to the driver (URL, options, the conversion of the Arrow types Snowflake returns);
no test ran against a live Snowflake account (see the README).
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pyarrow as pa

from connectors.rows import rebatch
from transforms.arrow_rows import json_column
from transforms.errors import ConfigError

_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")
_SEMI_STRUCTURED = {"VARIANT", "OBJECT", "ARRAY"}
_TYPE_KEYS = (b"logicalType", b"SNOWFLAKE_TYPE")     # Snowflake's Arrow metadata; the driver's
_URL_OPTIONS = {"warehouse": "adbc.snowflake.sql.warehouse", "role": "adbc.snowflake.sql.role"}
_SECRET_OPTIONS = ("private_key_secret", "password_secret")
_RESULT_QUEUE = "4"     # result chunks the driver prefetches: memory stays a few chunks deep
# How long a login may take, retries included (the driver's default, 300 s, kept a launcher
# whose account name was mistyped waiting for minutes; a login normally takes a second or two).
LOGIN_TIMEOUT = "60s"
_ACCOUNT_DOMAIN = ".snowflakecomputing.com"

ENV_PRIVATE_KEY = "SNOWFLAKE_PRIVATE_KEY"
ENV_PRIVATE_KEY_FILE = "SNOWFLAKE_PRIVATE_KEY_FILE"
ENV_PRIVATE_KEY_PASSPHRASE = "SNOWFLAKE_PRIVATE_KEY_PASSPHRASE"
ENV_PASSWORD = "SNOWFLAKE_PASSWORD"


@dataclasses.dataclass(frozen=True)
class SnowflakeTarget:
    """What a `snowflake://` URL names; no credential in it."""

    user: str
    account: str
    database: str | None = None
    schema: str | None = None
    options: tuple[tuple[str, str], ...] = ()       # warehouse, role
    private_key_secret: str | None = None
    password_secret: str | None = None


def parse_snowflake_url(url: str) -> SnowflakeTarget:
    """`snowflake://ETL@myorg-acct/DB/SCHEMA?warehouse=WH` -> SnowflakeTarget; ConfigError when
    the URL holds a password, misses the user or account, or has an option we do not know."""
    parts = urlsplit(url)
    if parts.password is not None:
        raise ConfigError(
            "A Snowflake password never goes in --sql-url (it would show in process lists, logs "
            f"and job options): put it in {ENV_PASSWORD} on the workers, or name a Secret "
            "Manager secret with password_secret=projects/P/secrets/NAME; better, use key-pair "
            f"authentication ({ENV_PRIVATE_KEY_FILE} or private_key_secret=...).")
    if not parts.username or not parts.hostname:
        raise ConfigError(f"Snowflake URL {url!r} needs a user and an account: "
                          f"snowflake://USER@ACCOUNT/DATABASE/SCHEMA?warehouse=WH")
    path = [unquote(part) for part in parts.path.split("/") if part]
    if len(path) > 2:
        raise ConfigError(f"Snowflake URL {url!r}: the path is /DATABASE/SCHEMA, got "
                          f"{len(path)} parts")
    options, secrets = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _URL_OPTIONS:
            options.append((key, value))
        elif key in _SECRET_OPTIONS:
            from connectors.secrets import secret_version_name
            secrets[key] = secret_version_name(value)
        else:
            known = ", ".join([*_URL_OPTIONS, *_SECRET_OPTIONS])
            raise ConfigError(f"Snowflake URL option {key!r} is not one we pass on (known: "
                              f"{known}); credentials come from the environment or Secret "
                              f"Manager")
    # The account keeps its case and dots as written (urlsplit lower-cases `hostname`). The
    # driver appends the domain itself: an account copied with it would be looked up as
    # myorg-acct.snowflakecomputing.com.snowflakecomputing.com (and retried until the timeout).
    account = parts.netloc.rsplit("@", 1)[1].split(":", 1)[0]
    if account.lower().endswith(_ACCOUNT_DOMAIN):
        account = account[:-len(_ACCOUNT_DOMAIN)]
    return SnowflakeTarget(
        user=unquote(parts.username), account=account,
        database=path[0] if path else None, schema=path[1] if len(path) > 1 else None,
        options=tuple(options), private_key_secret=secrets.get("private_key_secret"),
        password_secret=secrets.get("password_secret"))


def snowflake_options(url: str) -> SnowflakeTarget:
    """The URL checked, for the launcher (reads no credential)."""
    return parse_snowflake_url(url)


def connection_options(target: SnowflakeTarget, environ: Mapping[str, str] | None = None,
                       read_secret: Callable[[str], str] | None = None) -> dict[str, str]:
    """The ADBC database options for `target`, credentials read from Secret Manager or the
    environment (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    if read_secret is None:
        from connectors.secrets import read_secret_manager as read_secret
    options = {"username": target.user, "adbc.snowflake.sql.account": target.account,
               "adbc.snowflake.sql.client_option.app_name": "capi-sync",
               "adbc.snowflake.sql.client_option.login_timeout": LOGIN_TIMEOUT}
    if target.database:
        options["adbc.snowflake.sql.db"] = target.database
    if target.schema:
        options["adbc.snowflake.sql.schema"] = target.schema
    for key, value in target.options:
        options[_URL_OPTIONS[key]] = value
    private_key = (read_secret(target.private_key_secret) if target.private_key_secret
                   else environ.get(ENV_PRIVATE_KEY, "").strip())
    key_file = environ.get(ENV_PRIVATE_KEY_FILE, "").strip()
    if private_key or (key_file and not target.password_secret):
        options["adbc.snowflake.sql.auth_type"] = "auth_jwt"
        if private_key:
            options["adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_value"] = private_key
        else:
            options["adbc.snowflake.sql.client_option.jwt_private_key"] = key_file
        passphrase = environ.get(ENV_PRIVATE_KEY_PASSPHRASE, "")
        if passphrase:
            options["adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_password"] = \
                passphrase
        return options
    password = (read_secret(target.password_secret) if target.password_secret
                else environ.get(ENV_PASSWORD, ""))
    if not password:
        raise ConfigError(
            f"No Snowflake credentials for user {target.user!r}: set {ENV_PRIVATE_KEY_FILE} "
            f"(key-pair, preferred) or {ENV_PASSWORD} on the workers, or name a Secret Manager "
            "secret in the URL (private_key_secret=... or password_secret=...).")
    options["adbc.snowflake.sql.auth_type"] = "auth_snowflake"
    options["password"] = password
    return options


def qmark_query(query: str, params: Mapping[str, Any] | None) -> tuple[str, tuple[Any, ...]]:
    """`... > %(since)s` -> (`... > ?`, (since,)): Snowflake binds positional `?` markers."""
    if params is None:
        return query, ()
    values: list[Any] = []

    def marker(match: re.Match) -> str:
        if match.group(1):
            values.append(params[match.group(1)])
            return "?"
        return "%"

    return _PLACEHOLDER.sub(marker, query), tuple(values)


def snowflake_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A batch as Snowflake's driver returns it -> the types the mapper expects (see the module
    docstring): semi-structured text marked JSON, NUMBER(p, 0) as int64 when every value fits."""
    columns, changed = [], False
    for field, column in zip(batch.schema, batch.columns, strict=True):
        converted = _column(field, column)
        changed |= converted is not column
        columns.append(converted)
    if not changed:
        return batch
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _column(field: pa.Field, column: pa.Array) -> pa.Array:
    if _snowflake_type(field) in _SEMI_STRUCTURED and pa.types.is_string(column.type):
        return json_column(column)
    if pa.types.is_decimal(column.type) and column.type.scale == 0:
        try:
            return column.cast(pa.int64())          # safe: fails on a value over 64 bits
        except pa.ArrowInvalid:
            return column
    return column


def _snowflake_type(field: pa.Field) -> str:
    metadata = field.metadata or {}
    for key in _TYPE_KEYS:
        if key in metadata:
            return metadata[key].decode().upper()
    return ""


_SECRET_OPTIONS_KEYS = ("password", "adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_value",
                        "adbc.snowflake.sql.client_option.jwt_private_key_pkcs8_password")


class SnowflakeError(Exception):
    """A driver error with every credential value replaced by `***`; keeps its SQLSTATE."""

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


def without_secrets(error: Exception, options: Mapping[str, str]) -> SnowflakeError:
    """`error` as a SnowflakeError whose text holds none of the credentials in `options`."""
    text = str(error)
    for key in _SECRET_OPTIONS_KEYS:
        value = options.get(key)
        if value:
            text = text.replace(value, "***")
    return SnowflakeError(f"{type(error).__name__}: {text}", getattr(error, "sqlstate", None))


def _connect(url: str) -> tuple[Any, dict[str, str]]:
    try:
        import adbc_driver_snowflake.dbapi as adbc_snowflake
    except ImportError:
        raise ConfigError('snowflake:// needs the ADBC Snowflake driver: pip install '
                          '"capi-sync[snowflake]"') from None
    options = connection_options(parse_snowflake_url(url))
    try:
        return adbc_snowflake.connect(db_kwargs=options), options
    except Exception as error:
        raise without_secrets(error, options) from None


def read_snowflake_batches(url: str, query: str, params: Mapping[str, Any] | None,
                           chunk_size: int) -> Iterator[pa.RecordBatch]:
    """The query's result, `chunk_size` rows a batch, converted by snowflake_batch."""
    connection, options = _connect(url)
    try:
        cursor = connection.cursor()
        cursor.adbc_statement.set_options(**{"adbc.rpc.result_queue_size": _RESULT_QUEUE})
        sql, values = qmark_query(query, params)
        cursor.execute(sql, values or None)
        for batch in rebatch(cursor.fetch_record_batch(), chunk_size):
            yield snowflake_batch(batch)
    except Exception as error:
        raise without_secrets(error, options) from None
    finally:
        connection.close()


def snowflake_result_columns(url: str, query: str, params: Mapping[str, Any] | None
                             ) -> list[str]:
    """The query's column names: Snowflake compiles it (ADBC ExecuteSchema), runs nothing."""
    connection, options = _connect(url)
    try:
        sql, values = qmark_query(query, params)
        return connection.cursor().adbc_execute_schema(sql, values or None).names
    except Exception as error:
        raise without_secrets(error, options) from None
    finally:
        connection.close()
