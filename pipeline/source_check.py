"""The mapping checked against the configured source's columns, by the launcher, before any
row is read (and by `capi-sync preview`).

    notes = check_source(opts, mapping_plan, since)   # raises MappingFileError (exit 2)

A path that matches no column fails the run naming the path and the nearest columns; what is
only worth a warning (a fallback that matches nothing, default-mapping fields the export lacks)
comes back as notes for the log and the report. Sources whose columns are not known in advance
(JSONL, replays of dead letters) are not checked here: the report warns about mapped fields
that stayed empty on every sent event instead.
"""
from __future__ import annotations

import datetime as dt
import logging

from pipeline.options import DEAD_LETTER_FORMAT
from transforms.errors import ConfigError
from transforms.schema_check import check_mapping, raise_for_problems

LOG = logging.getLogger(__name__)


NO_GOOGLE_CREDENTIALS = (
    "No Google credentials on this machine: BigQuery needs them to read the table or query, "
    "and Dataflow to submit the job. Run `gcloud auth application-default login`, or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service account's key file, then run again "
    "(a --dry_run True of a Dataflow job needs none).")


def sql_params(query: str, since: dt.datetime | None) -> dict | None:
    """The parameters the pipeline binds to a SQL query (pipeline/graph.py does the same)."""
    return {"since": since} if since is not None and "since" in query else None


def source_columns(opts, since: dt.datetime | None = None, project: str | None = None,
                   local: bool = True):
    """The SourceColumns of the configured source, or None for a replay of dead letters.
    `local`: this machine runs the workers too (DirectRunner), so what it cannot list, the run
    cannot read."""
    from connectors import source_peek

    if opts.input:
        try:
            if opts.input_format == DEAD_LETTER_FORMAT:
                source_peek.matched_files(opts.input)     # each path names a file
                return None
            return source_peek.columns_of_files(opts.input, opts.input_format)
        except (FileNotFoundError, IsADirectoryError) as error:   # --input names nothing
            raise ConfigError(f"--input {error}") from None
        except source_peek.InputNotListed as error:
            if local:   # before: MatchFiles failed in the run, a Beam traceback and exit 1
                raise ConfigError(f"{error}. Check the location, this machine's access to it "
                                  f"(for gs://: `gcloud auth application-default login`) and "
                                  f"its network.") from None
            LOG.warning("%s; the mapping was not checked against the files (the workers "
                        "list them with their own access).", error)
            return None
        except ValueError as error:     # a name whose extension says nothing: --input-format
            raise ConfigError(str(error)) from None
        except Exception as error:      # noqa: BLE001 - an unreadable file: the read decides
            LOG.warning("The file schemas could not be read (%s: %s); the mapping was not "
                        "checked against them.", type(error).__name__, str(error)[:200])
            return None
    if opts.sql_url:
        return source_peek.columns_of_sql(opts.sql_url, opts.sql_query,
                                          sql_params(opts.sql_query, since))
    try:
        return source_peek.columns_of_bigquery(opts.bigquery_table, opts.bigquery_query,
                                               project)
    except Exception as error:   # noqa: BLE001 - the read decides (e.g. no permission to look)
        from google.auth.exceptions import DefaultCredentialsError
        if isinstance(error, DefaultCredentialsError):
            # Reading (DirectRunner) and submitting (Dataflow) need them too: without them
            # Beam retried, read "anonymously" and waited on BigQuery for many minutes.
            raise ConfigError(NO_GOOGLE_CREDENTIALS) from None
        LOG.warning("The BigQuery schema could not be read (%s); the mapping was not checked "
                    "against it.", type(error).__name__)
        return None


def check_source(opts, mapping_plan, since: dt.datetime | None = None,
                 project: str | None = None, local: bool = True) -> tuple[str, ...] | None:
    """Raises MappingFileError for paths that match no column; returns the notes, or None
    when the source's columns are not known before the run (nothing was checked)."""
    from transforms.mapping import base_plan

    found = source_columns(opts, since, project, local)
    if found is None or found.columns is None:
        return None
    result = check_mapping(mapping_plan, found.columns, found.label, base_plan(mapping_plan))
    raise_for_problems(result, mapping_plan.name)
    for note in result.notes:
        LOG.warning("Mapping %s: %s", mapping_plan.name, note)
    return result.notes


def fields_to_watch(mapping_plan) -> dict[str, tuple[tuple[str, ...], bool]]:
    """For a run whose source was not checked: mapping location -> (the CAPI fields it fills,
    inherited from the default mapping?), for the report's empty-field warnings."""
    from transforms.coverage import mapped_capi_fields
    from transforms.mapping import load_mapping
    from transforms.schema_check import planned_paths

    inherited = {field.location for field in planned_paths(mapping_plan, load_mapping())
                 if field.inherited}
    return {location: (fields, location in inherited)
            for location, fields in mapped_capi_fields(mapping_plan).items()}
