"""Command-line options (contract section 8) as a Beam PipelineOptions subclass.

The same flags work on DirectRunner and Dataflow; Beam's own flags (--runner, --project, ...)
pass through untouched. Secrets never travel here: the options name *where* the API key is
(an environment variable or a Secret Manager resource), never the key itself.
"""

from __future__ import annotations

import argparse
import difflib
import re
from collections.abc import Sequence

from apache_beam.options.pipeline_options import PipelineOptions

from connectors.endpoint import parse_endpoint
from transforms.errors import ConfigError
from transforms.events import DEFAULT_ENDPOINT, MAX_EVENTS_PER_REQUEST

DEFAULT_API_KEY_ENV = "OPENAI_CAPI_API_KEY"
DEAD_LETTER_FORMAT = "dead-letter"    # --input-format of a replay: the files hold dead letters
INPUT_FORMATS = ("auto", "parquet", "jsonl", "csv", DEAD_LETTER_FORMAT)
_SECRET_RESOURCE = re.compile(r"^projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What a key looks like in any text: "sk-" and key characters (sk-svcacct-..., sk-proj-...).


class CapiSyncOptions(PipelineOptions):
    """Options of `capi-sync`; see the README's option table."""

    # Every dashed flag also answers to its underscore spelling (--pixel_id): Dataflow Flex
    # Templates pass parameters that way.
    @classmethod
    def _add_argparse_args(cls, parser):
        source = parser.add_argument_group("source (exactly one of)")
        # nargs="+": an unquoted glob reaches us already expanded by the shell into several
        # paths (--input a.parquet b.parquet); every one of them is read.
        source.add_argument(
            "--input",
            action="extend",
            nargs="+",
            default=None,
            metavar="PATTERN",
            help="Parquet/JSONL/CSV files, local or gs://, globs allowed; several paths and "
                 "repeated --input are all read",
        )
        source.add_argument(
            "--input-format",
            "--input_format",
            dest="input_format",
            default="auto",
            choices=INPUT_FORMATS,
            help="file format; 'dead-letter' re-sends the events of dead-letter files",
        )
        source.add_argument(
            "--bigquery-table",
            "--bigquery_table",
            dest="bigquery_table",
            default=None,
            help="PROJECT:DATASET.TABLE read with Beam's native BigQuery reader",
        )
        source.add_argument(
            "--bigquery-query",
            "--bigquery_query",
            dest="bigquery_query",
            default=None,
            help="standard-SQL query; may use @since for incremental syncs",
        )
        source.add_argument(
            "--sql-url",
            "--sql_url",
            dest="sql_url",
            default=None,
            help="duckdb:///relative/path.db (duckdb:////absolute/path.db), "
                 "postgresql://user@host/db (Redshift too) or "
                 "snowflake://user@account/database/schema?warehouse=WH",
        )
        source.add_argument(
            "--sql-query",
            "--sql_query",
            dest="sql_query",
            default=None,
            help="query for --sql-url; may use %%(since)s for incremental syncs",
        )
        source.add_argument(
            "--sql-file",
            "--sql_file",
            dest="sql_file",
            default=None,
            metavar="FILE",
            help="file holding the query for --sql-url (instead of --sql-query)",
        )

        source.add_argument(
            "--chunk-size",
            "--chunk_size",
            dest="chunk_size",
            type=int,
            default=1000,
            help="rows per element handed from the source to the mapper (memory vs. overhead)",
        )

        mapping = parser.add_argument_group("mapping")
        mapping.add_argument(
            "--mapping", default=None, metavar="FILE|PRESET",
            help="YAML mapping file, or a preset: ga4, segment, rudderstack, snowplow, shopify;"
                 " omitted = the default mapping"
        )

        delivery = parser.add_argument_group("delivery")
        delivery.add_argument(
            "--pixel-id",
            "--pixel_id",
            dest="pixel_id",
            default=None,
            help="pixel to send to (rows may override it via the mapping)",
        )
        delivery.add_argument(
            "--api-key-env",
            "--api_key_env",
            dest="api_key_env",
            default=DEFAULT_API_KEY_ENV,
            help="environment variable holding the Conversions API key",
        )
        delivery.add_argument(
            "--api-key-secret",
            "--api_key_secret",
            dest="api_key_secret",
            default=None,
            help="GCP Secret Manager resource projects/P/secrets/S/versions/V",
        )
        delivery.add_argument(
            "--endpoint", default=DEFAULT_ENDPOINT, help="CAPI endpoint; plain http:// only to loopback"
        )
        delivery.add_argument(
            "--validate-only",
            "--validate_only",
            dest="validate_only",
            action="store_true",
            default=False,
            help="test mode: the API validates, records nothing",
        )
        delivery.add_argument(
            "--batch-size",
            "--batch_size",
            dest="batch_size",
            type=int,
            default=MAX_EVENTS_PER_REQUEST,
            help="events per request, 1..1000",
        )
        delivery.add_argument(
            "--max-in-flight",
            "--max_in_flight",
            dest="max_in_flight",
            type=int,
            default=4,
            help="concurrent requests per worker (1..32); backs off on 429",
        )
        delivery.add_argument(
            "--max-attempts",
            "--max_attempts",
            dest="max_attempts",
            type=int,
            default=8,
            help="attempts per request before retries_exhausted",
        )
        delivery.add_argument(
            "--retry-budget-seconds",
            "--retry_budget_seconds",
            dest="retry_budget_seconds",
            type=float,
            default=300.0,
            help="total time per request across retries",
        )
        delivery.add_argument(
            "--dedupe",
            action="store_true",
            default=False,
            help="run-wide dedup on (pixel, event name, id); costs a shuffle",
        )
        delivery.add_argument(
            "--skip-preflight",
            "--skip_preflight",
            dest="skip_preflight",
            action="store_true",
            default=False,
            help="do not check the key before reading data",
        )

        output = parser.add_argument_group("output")
        output.add_argument(
            "--dead-letter",
            "--dead_letter",
            dest="dead_letter",
            default=None,
            metavar="PREFIX",
            help="dead-letter JSONL prefix, its own per run (default dead_letters/<run id>/dead)",
        )
        output.add_argument(
            "--max-dead-letter-rate",
            "--max_dead_letter_rate",
            dest="max_dead_letter_rate",
            type=float,
            default=None,
            metavar="RATE",
            help="fail the run (exit 8) when dead letters / rows read exceeds RATE (0..1)",
        )
        output.add_argument("--report", default=None, metavar="PATH", help="write the JSON run report here")
        output.add_argument(
            "--progress-seconds",
            "--progress_seconds",
            dest="progress_seconds",
            type=float,
            default=10.0,
            help="seconds between progress lines per worker (0: none)",
        )

        incremental = parser.add_argument_group("incremental sync")
        incremental.add_argument(
            "--since", default=None, help="only rows at/after this ISO time or duration ago (36h, 2d)"
        )
        incremental.add_argument(
            "--state-file",
            "--state_file",
            dest="state_file",
            default=None,
            help="JSON watermark file (local or gs://) for scheduled runs",
        )

        local = parser.add_argument_group("local runner")
        local.add_argument(
            "--no-warm-workers",
            "--no_warm_workers",
            dest="no_warm_workers",
            action="store_true",
            default=False,
            help="DirectRunner as Beam ships it: no worker in the launcher, no worker processes "
            "started ahead, no direct FnApiRunner (see pipeline/warm_workers.py)",
        )


class _ParserBuilt(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__("parser built")
        self.parser = parser


def _beam_parser(options: PipelineOptions) -> argparse.ArgumentParser:
    """The parser Beam itself builds from every PipelineOptions subclass (ours, Dataflow's,
    ...), taken through get_all_options' public `add_extra_args_fn` hook before Beam parses
    with it (and logs "Discarding unparseable args" with the arguments' text)."""
    def stop(parser: argparse.ArgumentParser) -> None:
        raise _ParserBuilt(parser)
    try:
        options.get_all_options(add_extra_args_fn=stop)
    except _ParserBuilt as built:
        return built.parser
    raise AssertionError("PipelineOptions.get_all_options did not call add_extra_args_fn")


def _refuse(message: str) -> None:
    raise ConfigError(message)   # masked by ConfigError itself (transforms/masking.py)


def parse_options(argv: Sequence[str]) -> PipelineOptions:
    """argv -> PipelineOptions, refusing every argument Beam would discard or choke on.

    Beam keeps what it knows and drops the rest with a warning; for us a dropped argument is a
    configuration error (exit 2): a typo'd flag (--pixelid), an option that does not exist
    (--api-key sk-...: the message masks the key) or a stray value.
    """
    argv = list(argv)
    parser = _beam_parser(PipelineOptions(argv))
    parser.exit_on_error = False
    parser.error = _refuse     # argparse's own errors ("invalid int value: ...") without exit
    try:
        _, unparsed = parser.parse_known_args(argv)
    except argparse.ArgumentError as error:
        _refuse(f"{error}.")
    if unparsed:
        _refuse(_unparsed_message(unparsed, parser))
    return PipelineOptions(argv)


def _unparsed_message(unparsed: list[str], parser: argparse.ArgumentParser) -> str:
    """'unknown option --pixelid px_1 (did you mean --pixel-id?)', 'stray value b.parquet'."""
    known = [action.option_strings[0] for action in parser._actions if action.option_strings]
    problems = []
    for arg in unparsed:
        if arg.startswith("-") or not problems:
            flag = arg.split("=", 1)[0]
            if arg.startswith("-"):
                close = difflib.get_close_matches(flag, known, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append([f"unknown option {arg}", hint])
            else:
                problems.append([f"stray value {arg}", " (several paths go right after one "
                                 "--input: --input a.parquet b.parquet)"])
        else:
            problems[-1][0] += f" {arg}"
    listed = "; ".join(text + hint for text, hint in problems)
    return (f"{listed}. Every argument must be an option of `capi-sync --help` or of Beam "
            f"(--runner, --project, ...); capi-sync ignores none.")


def validate_options(opts: CapiSyncOptions) -> None:
    """Fails fast, before any data is read, with a message that says how to fix the options."""
    sources = [
        name
        for name, value in (
            ("--input", opts.input),
            ("--bigquery-table", opts.bigquery_table),
            ("--bigquery-query", opts.bigquery_query),
            ("--sql-url", opts.sql_url),
        )
        if value
    ]
    if len(sources) != 1:
        found = ", ".join(sources) or "none"
        raise ConfigError(
            f"Give exactly one source: --input, --bigquery-table, --bigquery-query or "
            f"--sql-url (found: {found})."
        )
    if opts.sql_file:
        if opts.sql_query:
            raise ConfigError("Give the query once: --sql-query or --sql-file, not both.")
        opts.sql_query = read_sql_file(opts.sql_file)
    if opts.sql_url and not opts.sql_query:
        raise ConfigError("--sql-url needs --sql-query or --sql-file (the SELECT that returns "
                          "the rows to send).")
    if opts.sql_query and not opts.sql_url:
        raise ConfigError("--sql-query needs --sql-url (duckdb:///file.db or postgresql://...).")
    rate = opts.max_dead_letter_rate
    if rate is not None and not 0 <= rate <= 1:
        raise ConfigError(f"--max-dead-letter-rate is a share of the rows read, within 0..1 "
                          f"(0.05 = 5%), got {rate:g}.")
    if not 1 <= opts.batch_size <= MAX_EVENTS_PER_REQUEST:
        raise ConfigError(
            f"--batch-size must be within 1..{MAX_EVENTS_PER_REQUEST} "
            f"(the API takes at most 1,000 events per request), got {opts.batch_size}."
        )
    if opts.chunk_size < 1:
        raise ConfigError(f"--chunk-size must be at least 1, got {opts.chunk_size}.")
    if not 1 <= opts.max_in_flight <= 32:
        raise ConfigError(f"--max-in-flight must be within 1..32, got {opts.max_in_flight}.")
    if opts.progress_seconds < 0:
        raise ConfigError(f"--progress-seconds must be 0 (no progress lines) or more, got "
                          f"{opts.progress_seconds:g}.")
    if opts.max_attempts < 1:
        raise ConfigError(f"--max-attempts must be at least 1, got {opts.max_attempts}.")
    if opts.api_key_secret and not _SECRET_RESOURCE.match(opts.api_key_secret):
        raise ConfigError(
            "--api-key-secret must be a Secret Manager resource name like "
            "projects/my-project/secrets/capi-key/versions/latest."
        )
    if opts.api_key_env is not None and not _ENV_NAME.match(opts.api_key_env):
        # Never echo the value: "OPENAI_CAPI_API_KEY=sk-...", " sk-..." or "Bearer sk-..."
        # all hold the key itself.
        if looks_like_api_key(opts.api_key_env):
            raise ConfigError(
                "--api-key-env takes the NAME of an environment variable, and its value "
                "looks like a key. Put the key in the environment (export "
                "OPENAI_CAPI_API_KEY=...) and revoke this one: it is in your shell history.")
        raise ConfigError(
            "--api-key-env takes the NAME of an environment variable (letters, digits and _, "
            "like OPENAI_CAPI_API_KEY); the value given is not such a name.")
    parse_endpoint(opts.endpoint)   # https://, or http:// to loopback only (one rule)


def read_sql_file(path: str) -> str:
    """The query text of --sql-file; read once, by the launcher."""
    try:
        with open(path, encoding="utf-8") as handle:
            query = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--sql-file {path!r} cannot be read ({type(exc).__name__}). Fix: give "
                          "the path of a UTF-8 text file holding the SELECT.") from None
    if not query.strip():
        raise ConfigError(f"--sql-file {path!r} is empty; write the SELECT in it.")
    return query


def looks_like_api_key(value: str) -> bool:
    return "sk-" in value or "bearer" in value.lower()

