"""The two Beam pipelines a user would write by hand, for `bench_pipeline` to compare against.

Both map rows with the project's own `RowMapper` and the default mapping, so the mapping,
hashing and validation work is the same as capi-sync's; they differ in how they read, batch and
send:

- naive: ReadFromParquet -> Map(map_row) -> random key -> GroupIntoBatches(1000) -> one blocking
  POST at a time. Beam's defaults (DirectRunner, one in-memory worker); the shuffle holds the
  whole input in memory.
- smart: ReadFromParquet -> Map(map_row) -> BatchElements(1000, 1000) -> one blocking POST at a
  time, on one worker process per core (--direct_num_workers <cores>
  --direct_running_mode multi_processing), no shuffle.

Run as a subprocess by the benchmark (the API key comes from OPENAI_CAPI_API_KEY):

    python -m benchmarks.peers smart --input 'rows/*.parquet' --endpoint URL --pixel-id px \\
        --report smart.json
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import time

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import PipelineOptions

NAMESPACE = "peer"
NAIVE, SMART = "naive", "smart"
BATCH_SIZE = 1000
NAIVE_KEYS = 10          # random.randint(0, 9): the "spread the load" key users reach for


class MapRow(beam.DoFn):
    """Row dict -> the CAPI event dict (RowMapper, default mapping); other outcomes counted."""

    def setup(self):
        from transforms.mapper import RowMapper
        from transforms.mapping import load_mapping
        self._mapper = RowMapper(load_mapping())
        self._rows = Metrics.counter(NAMESPACE, "rows_read")
        self._dead = Metrics.counter(NAMESPACE, "dead_lettered")
        self._skipped = Metrics.counter(NAMESPACE, "skipped")

    def process(self, row):
        self._rows.inc()
        result = self._mapper.map_row(row)
        if result.event is not None:
            yield result.event.event
        elif result.dead_letter is not None:
            self._dead.inc()
        else:
            self._skipped.inc()


class PostBatch(beam.DoFn):
    """One blocking POST per batch with a plain requests.Session; any HTTP error fails the run."""

    def __init__(self, endpoint: str, pixel_id: str, api_key_env: str):
        self._endpoint = endpoint
        self._pixel_id = pixel_id
        self._api_key_env = api_key_env

    def setup(self):
        import requests
        self._session = requests.Session()
        self._session.headers.update({
            "Authorization": f"Bearer {os.environ[self._api_key_env]}",
            "Content-Type": "application/json"})
        self._requests = Metrics.counter(NAMESPACE, "requests")
        self._sent = Metrics.counter(NAMESPACE, "events_accepted")

    def process(self, batch):
        if isinstance(batch, tuple):        # GroupIntoBatches: (key, events)
            batch = batch[1]
        events = list(batch)
        body = json.dumps({"validate_only": False, "integration_source": "capi-sync",
                           "events": events}, separators=(",", ":"))
        response = self._session.post(self._endpoint, params={"pid": self._pixel_id},
                                      data=body.encode("utf-8"), timeout=60)
        response.raise_for_status()
        self._requests.inc()
        self._sent.inc(len(events))

    def teardown(self):
        self._session.close()


def build(pipeline: beam.Pipeline, kind: str, pattern: str, endpoint: str, pixel_id: str,
          api_key_env: str) -> None:
    events = (pipeline
              | "ReadFromParquet" >> beam.io.ReadFromParquet(pattern)
              | "MapRow" >> beam.ParDo(MapRow()))
    if kind == NAIVE:
        batches = (events
                   | "RandomKey" >> beam.Map(lambda event: (random.randint(0, NAIVE_KEYS - 1), event))
                   | "GroupIntoBatches" >> beam.GroupIntoBatches(BATCH_SIZE))
    else:
        batches = events | "BatchElements" >> beam.BatchElements(
            min_batch_size=BATCH_SIZE, max_batch_size=BATCH_SIZE)
    _ = batches | "Post" >> beam.ParDo(PostBatch(endpoint, pixel_id, api_key_env))


def beam_args(kind: str, extra: list[str]) -> list[str]:
    """Beam's defaults for the naive peer; one worker process per core for the smart one."""
    if kind == SMART and not any(arg.startswith("--direct_num_workers") for arg in extra):
        return ["--direct_num_workers", str(os.cpu_count() or 1),
                "--direct_running_mode", "multi_processing", *extra]
    return list(extra)


def _counters(result) -> dict[str, int]:
    from apache_beam.metrics.metric import MetricsFilter
    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] = totals.get(counter.key.metric.name, 0) + (value or 0)
    return totals


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__)
    parser.add_argument("kind", choices=(NAIVE, SMART))
    parser.add_argument("--input", required=True, help="Parquet file pattern")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--pixel-id", required=True)
    parser.add_argument("--api-key-env", default="OPENAI_CAPI_API_KEY")
    parser.add_argument("--report", help="write the counters as JSON here")
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.WARNING)

    started = time.monotonic()
    pipeline = beam.Pipeline(options=PipelineOptions(beam_args(args.kind, extra)))
    build(pipeline, args.kind, args.input, args.endpoint, args.pixel_id, args.api_key_env)
    result = pipeline.run()
    result.wait_until_finish()
    report = {"kind": args.kind, "duration_s": round(time.monotonic() - started, 3),
              **_counters(result)}
    if args.report:
        with open(args.report, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
