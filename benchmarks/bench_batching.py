"""Which batching primitive? Measured, not assumed: time and peak memory on DirectRunner.

    python -m benchmarks.bench_batching --events 1000000

Each contender turns the same stream of mapped events (generated inside the pipeline, in lists of
1,000 as the mapper emits them) into requests of 1,000 events per pixel and counts them. Each runs
in its own process so peak RSS (ru_maxrss) is its own:
  bundle-batcher   pipeline.steps.BatchRequests: fills requests across the bundle, no shuffle
  BatchElements    beam.BatchElements(1000, 1000) after flattening to one element per event
  GroupIntoBatches key by pixel, beam.GroupIntoBatches(1000): a shuffle holding every event
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.steps import BatchRequests
from transforms.events import MappedEvent

CHUNK = 1000
CONTENDERS = ("bundle-batcher", "BatchElements", "GroupIntoBatches")


def _event(n: int) -> dict:
    return {"id": f"order_{n}", "type": "order_created", "timestamp_ms": 1_795_000_000_000 + n,
            "action_source": "web", "source_url": "https://shop.example.com/checkout/done",
            "user": {"emails_sha256": [f"{n:064x}"], "countries": ["US"], "cities": ["paris"]},
            "data": {"type": "contents", "amount": 2599, "currency": "USD",
                     "contents": [{"id": "sku_1", "quantity": 1, "amount": 2599}]}}


def _event_lists(chunk_index: int):
    start = chunk_index * CHUNK
    yield [MappedEvent("px_1", _event(n), f"bench#row={n}") for n in range(start, start + CHUNK)]


def _build(pipeline, contender: str, events: int):
    lists = (pipeline | "Chunks" >> beam.Create(range(events // CHUNK))
             | "Spread" >> beam.Reshuffle()
             | "Generate" >> beam.FlatMap(_event_lists))
    if contender == "bundle-batcher":
        batches = lists | "BatchRequests" >> beam.ParDo(BatchRequests(CHUNK))
    elif contender == "BatchElements":
        batches = (lists | "PerEvent" >> beam.FlatMap(lambda events: events)
                   | "BatchElements" >> beam.BatchElements(min_batch_size=CHUNK, max_batch_size=CHUNK))
    else:
        batches = (lists | "PerEvent" >> beam.FlatMap(lambda events: events)
                   | "KeyByPixel" >> beam.Map(lambda m: (m.pixel_id, m))
                   | "GroupIntoBatches" >> beam.GroupIntoBatches(CHUNK)
                   | "Values" >> beam.Values())
    return batches | "Sizes" >> beam.Map(len)


def run_one(contender: str, events: int) -> dict:
    options = PipelineOptions(["--direct_num_workers", "1", "--direct_running_mode", "in_memory"])
    started = time.monotonic()
    with beam.Pipeline(options=options) as pipeline:
        _build(pipeline, contender, events)
    seconds = time.monotonic() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"contender": contender, "events": events, "seconds": round(seconds, 2),
            "events_per_s": round(events / seconds), "peak_rss_mb": round(peak_mb)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--only", choices=CONTENDERS)
    args = parser.parse_args(argv)
    if args.only:
        print(json.dumps(run_one(args.only, args.events)))
        return
    print(f"{'contender':<18}{'events':>10}{'seconds':>9}{'events/s':>11}{'peak RSS MB':>13}")
    for contender in CONTENDERS:
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_batching", "--events",
                              str(args.events), "--only", contender],
                             capture_output=True, text=True, check=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"{r['contender']:<18}{r['events']:>10,}{r['seconds']:>9}{r['events_per_s']:>11,}"
              f"{r['peak_rss_mb']:>13,}")


if __name__ == "__main__":
    main()
