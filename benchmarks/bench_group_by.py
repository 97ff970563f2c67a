"""How group_by's shuffle should be fed: pre-grouped per chunk, or one element per row.

    python -m benchmarks.bench_group_by                 # 30,000 Shopify-like lines, 3 per order
    python -m benchmarks.bench_group_by --lines 60000 --shuffled

Both designs run the real steps on DirectRunner (in process) over the same RowChunks of
Shopify-shaped row dicts: "per chunk" is pipeline.steps.KeyRowsByGroup (rows grouped by key in
each chunk, then GroupByKey); "per row" keys every row and shuffles it alone. Each design runs in
its own subprocess, which reports wall and CPU seconds, the elements the shuffle received, and
its peak RSS. `--shuffled` puts every order's lines far apart (the case with no adjacency).
The figures are printed; nothing is asserted (the machine may be shared).
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import time
import tracemalloc

HEADER = ["Name", "Email", "Financial Status", "Paid at", "Currency", "Subtotal", "Shipping",
          "Taxes", "Total", "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price",
          "Lineitem sku", "Billing City", "Billing Zip", "Billing Country", "Phone", "Id", "Vendor"]


def shopify_lines(lines: int, per_order: int, shuffled: bool, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for n in range(lines):
        order, first = n // per_order, n % per_order == 0
        row = dict.fromkeys(HEADER, "")
        row.update({"Name": f"#{1000 + order}", "Lineitem quantity": str(rng.randint(1, 3)),
                    "Lineitem name": f"Product {rng.randrange(500)}",
                    "Lineitem price": f"{rng.uniform(1, 90):.2f}",
                    "Lineitem sku": f"SKU-{rng.randrange(5000)}", "Vendor": "Acme"})
        if first:
            row.update({"Email": f"buyer{order}@example.com", "Financial Status": "paid",
                        "Paid at": "2026-09-10 12:00:00 +0000", "Currency": "USD",
                        "Subtotal": "10.00", "Shipping": "0.00", "Taxes": "0.00",
                        "Total": "10.00", "Created at": "2026-09-10 12:00:00 +0000",
                        "Billing City": "Springfield", "Billing Zip": "12345",
                        "Billing Country": "US", "Id": str(5_000_000 + order)})
        rows.append(row)
    if shuffled:
        rng.shuffle(rows)
    return rows


def _run_design(design: str, lines: int, shuffled: bool, chunk_size: int) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from connectors.rows import RowChunk
    from pipeline import steps
    from transforms.mapping import load_mapping

    plan = load_mapping("shopify")
    rows = shopify_lines(lines, 3, shuffled)
    chunks = [RowChunk(rows[i:i + chunk_size],
                       [f"orders.csv#row={i + j + 1}" for j in range(len(rows[i:i + chunk_size]))])
              for i in range(0, len(rows), chunk_size)]

    class KeyEachRow(beam.DoFn):
        def process(self, chunk):
            for row, source in zip(chunk.rows, chunk.sources, strict=True):
                yield ("key", row["Name"]), [(steps._source_order(source), row, source)]

    keying = steps.KeyRowsByGroup(plan) if design == "per chunk" else KeyEachRow()
    started, cpu = time.perf_counter(), time.process_time()
    options = PipelineOptions(["--direct_num_workers", "1", "--direct_running_mode", "in_memory"])
    with beam.Pipeline(options=options) as pipeline:
        keyed = (pipeline | beam.Create(chunks, reshuffle=False)
                 | "Key" >> beam.ParDo(keying))
        _ = (keyed | "CountShuffled" >> beam.combiners.Count.Globally()
             | beam.Map(lambda n: print(json.dumps({"shuffled": n}), flush=True)))
        _ = (keyed | beam.GroupByKey()
             | "MapGroups" >> beam.ParDo(steps.MapGroupsToEvents(plan, None, 0))
             .with_outputs(steps.DEAD_LETTERS, main="events"))
    return {"design": design, "wall_s": time.perf_counter() - started,
            "cpu_s": time.process_time() - cpu,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _bytes_per_line() -> float:
    tracemalloc.start()
    rows = shopify_lines(10_000, 3, False)
    size, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return size / len(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=30_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--shuffled", action="store_true")
    parser.add_argument("--design", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.design:
        print(json.dumps(_run_design(args.design, args.lines, args.shuffled, args.chunk_size)))
        return
    print(f"{args.lines:,} lines, 3 per order, {'shuffled' if args.shuffled else 'adjacent'},"
          f" chunks of {args.chunk_size}; a line as a row dict: {_bytes_per_line():,.0f} bytes")
    for design in ("per chunk", "per row"):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_group_by", "--design", design,
             "--lines", str(args.lines), "--chunk-size", str(args.chunk_size),
             *(["--shuffled"] if args.shuffled else [])],
            capture_output=True, text=True, timeout=900, check=True).stdout.splitlines()
        figures = {}
        for line in out:
            if line.startswith("{"):
                figures.update(json.loads(line))
        print(f"{design:>9}: {figures['shuffled']:,} elements shuffled, wall {figures['wall_s']:.1f} s,"
              f" CPU {figures['cpu_s']:.1f} s ({args.lines / figures['cpu_s']:,.0f} lines per"
              f" CPU-s), peak RSS {figures['peak_rss_mb']:,.0f} MB")


if __name__ == "__main__":
    main()
