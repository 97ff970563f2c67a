import json
import pathlib

import pytest
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions
from google.protobuf import json_format

from pipeline.options import CapiSyncOptions, parse_options, validate_options
from pipeline.run import apply_local_plan
from pipeline.warm_handler import local_runner
from pipeline.warm_workers import plan_local_runner
from transforms.errors import ConfigError

PIPELINE_DIR = pathlib.Path(__file__).resolve().parents[2] / "pipeline"


def options(*argv):
    return PipelineOptions(list(argv)).view_as(CapiSyncOptions)


def option_dests():
    import argparse
    parser = argparse.ArgumentParser()
    CapiSyncOptions._add_argparse_args(parser)
    return {action.dest for action in parser._actions}


@pytest.mark.parametrize("argv, message", [
    ((), "exactly one source"),
    (("--input", "a.parquet", "--sql-url", "duckdb:///x.db", "--sql-query", "select 1"),
     "exactly one source"),
    (("--sql-url", "duckdb:///x.db"), "needs --sql-query"),
    (("--input", "a.parquet", "--batch-size", "1001"), "within 1..1000"),
    (("--input", "a.parquet", "--batch-size", "0"), "within 1..1000"),
    (("--input", "a.parquet", "--max-in-flight", "0"), "within 1..32"),
    (("--input", "a.parquet", "--progress-seconds", "-1"),
     r"--progress-seconds must be 0 \(no progress lines\) or more, got -1\.$"),
    (("--input", "a.parquet", "--endpoint", "http://api.example.com/v1/events"), "https://"),
    (("--input", "a.parquet", "--api-key-secret", "capi-key"), "projects/my-project/secrets"),
    (("--input", "a.parquet", "--api-key-env", "sk-svcacct-abc"), "NAME of an environment variable"),
    (("--input", "a.parquet", "--api-key-env", "OPENAI_CAPI_API_KEY=sk-svcacct-abc123"),
     "NAME of an environment variable"),
    (("--input", "a.parquet", "--api-key-env", " sk-svcacct-abc123"), "NAME of an environment variable"),
    (("--input", "a.parquet", "--api-key-env", "Bearer sk-svcacct-abc123"),
     "NAME of an environment variable"),
    (("--input", "a.parquet", "--api-key-env", "MY KEY"), "letters, digits and _"),
])
def test_bad_options_fail_fast_with_the_fix(argv, message):
    with pytest.raises(ConfigError, match=message):
        validate_options(options(*argv))


@pytest.mark.parametrize("value", ["OPENAI_CAPI_API_KEY=sk-svcacct-abc123", " sk-svcacct-abc123",
                                   "Bearer sk-svcacct-abc123", "sk-svcacct-abc123"])
def test_a_key_given_to_api_key_env_is_refused_without_echoing_it(value):
    with pytest.raises(ConfigError) as refused:
        validate_options(options("--input", "a.parquet", "--api-key-env", value))
    assert "abc123" not in str(refused.value)


def test_several_paths_after_one_input_are_all_kept():
    # What the shell makes of an unquoted `--input exports/*.parquet`.
    opts = parse_options(["--input", "a.parquet", "b.parquet", "c.parquet", "--input", "d.jsonl",
                          "--pixel-id", "px_1"]).view_as(CapiSyncOptions)
    assert opts.input == ["a.parquet", "b.parquet", "c.parquet", "d.jsonl"]


@pytest.mark.parametrize("argv, message", [
    (["--input", "a.parquet", "--api-key", "sk-svcacct-abc123"],
     "unknown option --api-key sk-svcacct-[masked] (did you mean --api-key-env?)"),
    (["--input", "a.parquet", "--pixelid", "px_1"],
     "unknown option --pixelid px_1 (did you mean --pixel-id?)"),
    (["--input=a.parquet", "--dedup"], "unknown option --dedup (did you mean --dedupe?)"),
    (["b.parquet", "--input", "a.parquet"],
     "stray value b.parquet (several paths go right after one --input"),
    (["--input", "a.parquet", "--batch-size", "sk-svcacct-abc123"],
     "invalid int value: 'sk-svcacct-[masked]'"),
    (["--input", "a.parquet", "--input-format", "xml"], "invalid choice: 'xml'"),
])
def test_an_argument_beam_would_discard_is_a_configuration_error(argv, message, caplog):
    with pytest.raises(ConfigError) as refused:
        parse_options(argv)
    assert message in str(refused.value)
    assert "abc123" not in str(refused.value) + caplog.text
    assert "Discarding" not in caplog.text


def test_beam_and_flex_template_spellings_still_parse():
    argv = ["--input=gs://b/x/*.parquet", "--pixel_id=px_1", "--runner", "DataflowRunner",
            "--project", "p", "--region", "europe-west1", "--temp_location", "gs://b/tmp",
            "--experiments", "use_runner_v2", "--direct_num_workers", "2", "--setup_file", "./setup.py"]
    opts = parse_options(argv).view_as(CapiSyncOptions)
    assert (opts.input, opts.pixel_id) == (["gs://b/x/*.parquet"], "px_1")


@pytest.mark.parametrize("endpoint", ["http://127.0.0.1:8080/v1/events", "http://localhost:9/v1/events",
                                      "http://[::1]:8080/v1/events", "https://bzr.openai.com/v1/events"])
def test_https_or_loopback_endpoints_are_accepted(endpoint):
    validate_options(options("--input", "a.parquet", "--endpoint", endpoint))


def test_flags_answer_to_dashed_and_underscore_spellings():
    opts = options("--pixel_id", "px_1", "--input", "a", "--input", "b", "--batch-size", "10")
    assert (opts.pixel_id, opts.input, opts.batch_size) == ("px_1", ["a", "b"], 10)


def test_direct_runner_defaults_to_a_worker_per_core_unless_chosen():
    chosen = PipelineOptions(["--direct_num_workers", "1"])
    apply_local_plan(chosen, plan_local_runner(["--direct_num_workers", "1"]))
    assert chosen.view_as(DirectOptions).direct_running_mode == "in_memory"
    default = PipelineOptions([])
    apply_local_plan(default, plan_local_runner([]))
    direct = default.view_as(DirectOptions)
    assert direct.direct_num_workers >= 1
    if direct.direct_num_workers > 1:
        assert direct.direct_running_mode == "multi_processing"


@pytest.mark.parametrize("argv", [[], ["--runner", "direct"], ["--runner=DirectRunner"]])
def test_direct_runner_runs_on_the_fn_api_runner_with_the_options_not_on_prism(argv):
    chosen = PipelineOptions(argv + ["--pixel-id", "px_1"])
    apply_local_plan(chosen, plan_local_runner(argv))
    runner = local_runner(plan_local_runner(argv), chosen)
    assert type(runner).__name__ == "FnApiRunner"       # DirectRunner would try Prism first
    workers_see = json_format.MessageToDict(runner._provision_info.provision_info.pipeline_options)
    assert workers_see["beam:option:pixel_id:v1"] == "px_1"   # as DirectRunner's FnApiRunner
    assert workers_see["beam:option:direct_running_mode:v1"] == \
        chosen.view_as(DirectOptions).direct_running_mode


def test_other_runners_are_left_to_beam():
    for argv in (["--runner", "DataflowRunner"], ["--runner", "PrismRunner"]):
        assert local_runner(plan_local_runner(argv), PipelineOptions(argv)) is None


def test_flex_template_metadata_names_every_required_parameter():
    metadata = json.loads((PIPELINE_DIR / "flex_template_metadata.json").read_text())
    names = {p["name"] for p in metadata["parameters"]}
    required = {p["name"] for p in metadata["parameters"] if not p.get("isOptional", False)}
    assert required == {"pixel_id", "api_key_secret"}
    assert names <= option_dests(), names - option_dests()
    sources = {"input", "bigquery_table", "bigquery_query", "sql_url", "sql_query"}
    assert sources <= names
    assert "api_key" not in names and "api_key_env" not in names  # the key is never a parameter


def test_dockerfile_runs_the_package_entry_point():
    dockerfile = (PIPELINE_DIR / "Dockerfile").read_text()
    assert 'FLEX_TEMPLATE_PYTHON_PY_FILE="${WORKDIR}/pipeline/__main__.py"' in dockerfile
    assert 'FLEX_TEMPLATE_PYTHON_SETUP_FILE="${WORKDIR}/setup.py"' in dockerfile


@pytest.mark.parametrize("pattern, writers", [
    ("exports/*.parquet", {"unreadable", "mapping", "delivery"}),  # a Parquet file can be corrupt
    ("exports/*.jsonl", {"unreadable", "mapping", "delivery"}),
])
def test_a_dead_letter_writer_per_step_that_can_have_dead_letters(pattern, writers):
    import apache_beam as beam

    from pipeline.graph import SyncToCapi
    from pipeline.run import plan_run

    options, plan = plan_run(["--input", pattern, "--pixel-id", "px_1"])
    pipeline = beam.Pipeline(options=options)
    _ = pipeline | "SyncToCapi" >> SyncToCapi(plan)
    steps = {label.split("/WriteDeadLetters-")[1].split("/")[0]
             for label in pipeline.applied_labels if "/WriteDeadLetters-" in label}
    assert steps == writers
