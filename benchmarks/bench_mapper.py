"""How many rows per second RowMapper maps on one core with the default mapping.

    python -m benchmarks.bench_mapper                  # 100k rows, best of 3
    python -m benchmarks.bench_mapper --rows 20000 --baseline --json --profile
    python -m benchmarks.bench_mapper --arrow          # + the Parquet path: dicts vs columnar
    python -m benchmarks.bench_mapper --ga4            # + the GA4 preset on GA4-shaped batches

Rows are generated before timing (benchmarks.generate_rows: high-cardinality Commanders-Act
shape). The garbage collector is tuned as on the pipeline's workers (`--default-gc` to keep
Python's defaults: the columnar mapper, which holds a batch at a time, then loses its lead).
`--baseline` also times a straightforward row-by-row mapper (phonenumbers.parse for
every phone, uncached pycountry look-ups, plain dict building) for comparison; `--json` adds
json.dumps of each event (what the sink does before sending). Wall-clock figures vary on a
shared machine; rows per CPU-second (process time) are steadier. Run a few times.
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import statistics
import time
import unicodedata
from decimal import ROUND_HALF_UP, Decimal

import phonenumbers
import pycountry

from benchmarks.generate_rows import commanders_act_rows
from connectors.rows import parquet_batch_to_rows
from pipeline.steps import tune_gc_for_batch_work
from transforms.columnar import ColumnarMapper
from transforms.mapper import RowMapper
from transforms.mapping import load_mapping
from transforms.validate import validate_event


def _time(fn, rows, sources, tune_gc: bool) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process): CPU time is steadier on a shared machine."""
    if tune_gc:
        tune_gc_for_batch_work()
    wall, cpu = time.perf_counter(), time.process_time()
    fn(rows, sources)
    return time.perf_counter() - wall, time.process_time() - cpu


def _run_mapper(mapper: RowMapper, encode: bool):
    def run(rows, sources):
        dumps = json.dumps
        for row, source in zip(rows, sources, strict=True):
            result = mapper.map_row(row, source)
            if encode and result.event is not None:
                dumps(result.event.event, separators=(",", ":"))
    return run


# --- the straightforward baseline ----------------------------------------------------------------

_TYPES = {"purchase": "order_created", "page_view": "page_viewed", "add_to_cart": "items_added",
          "view_item": "contents_viewed", "begin_checkout": "checkout_started",
          "sign_up": "registration_completed", "generate_lead": "lead_created",
          "subscribe": "subscription_created", "app_open": "app_opened"}
_DATA = {"order_created": "contents", "page_viewed": "contents", "items_added": "contents",
         "contents_viewed": "contents", "checkout_started": "contents",
         "registration_completed": "customer_action", "lead_created": "customer_action",
         "subscription_created": "plan_enrollment", "app_opened": "customer_action",
         "custom": "custom"}
_EXP = {"USD": 2, "EUR": 2, "GBP": 2, "JPY": 0}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def naive_map(row: dict, now_ms: int) -> dict | None:
    """The default mapping written as one plain function, no caches or fast paths."""
    ctx, user, openai = row["context"], row["user"], row["partners"]["openai"]
    event_type = _TYPES.get(row["event_name"].lower(), "custom")
    ts = ctx["event_timestamp"]
    if isinstance(ts, str):
        ts = int(__import__("datetime").datetime.fromisoformat(ts).timestamp() * 1000)
    event = {"id": ctx["event_id"], "type": event_type, "timestamp_ms": ts,
             "action_source": row["type"] or "web"}
    if event_type == "custom":
        event["custom_event_name"] = row["event_name"].lower()
    if ctx["page"]["url"]:
        event["source_url"] = ctx["page"]["url"]
    if openai["oppref"]:
        event["oppref"] = openai["oppref"]
    u = {}
    u["emails_sha256"] = [_sha(unicodedata.normalize("NFC", user["email"].strip()).lower())]
    try:
        country = pycountry.countries.lookup(user["country"]).alpha_2
        u["countries"] = [country]
    except LookupError:
        country = None
    try:
        number = phonenumbers.parse(user["phone"], country)
        if phonenumbers.is_possible_number(number):
            u["phone_numbers_sha256"] = [_sha(phonenumbers.format_number(
                number, phonenumbers.PhoneNumberFormat.E164)[1:])]
    except phonenumbers.NumberParseException:
        pass
    u["external_ids_sha256"] = [_sha(user["id"].strip())]
    for key, wire in (("firstname", "first_names_sha256"), ("lastname", "last_names_sha256")):
        text = unicodedata.normalize("NFC", user[key].strip()).lower()
        u[wire] = [_sha("".join(c for c in text if unicodedata.category(c)[0] not in "PZ"))]
    u["cities"] = [unicodedata.normalize("NFC", user["city"].strip()).lower()]
    u["regions"] = [unicodedata.normalize("NFC", user["state"].strip()).lower()]
    u["postal_codes"] = [user["zipcode"].strip()]
    u["ip_address"] = str(__import__("ipaddress").ip_address(ctx["device"]["ip"]))
    u["user_agent"] = ctx["device"]["user_agent"]
    event["user"] = u
    data = {"type": _DATA[event_type]}
    if row["currency"]:
        data["currency"] = row["currency"]
    if row["value"] is not None:
        data["amount"] = int((Decimal(repr(row["value"])) * 10 ** _EXP[row["currency"]])
                             .quantize(Decimal(1), ROUND_HALF_UP))
    if row["items"] and data["type"] in ("contents", "custom", "plan_enrollment"):
        data["contents"] = [{
            "id": item["id"], "name": item["product"]["name"], "quantity": item["quantity"],
            "content_type": item["content_type"] or row["content_type"] or "product",
            "amount": int((Decimal(repr(item["product"]["price"]))
                           * 10 ** _EXP[item["currency"] or row["currency"]])
                          .quantize(Decimal(1), ROUND_HALF_UP)),
        } for item in row["items"]]
    event["data"] = data
    return event if validate_event(event, now_ms) is None else None


def _arrow_batches(rows: list[dict]) -> list:
    """The rows as 1,000-row record batches in the benchmark's Parquet schema."""
    import pyarrow as pa

    from benchmarks.generate_rows import parquet_schema
    schema = parquet_schema()
    copies = []
    for row in rows:
        context = row["context"]
        if not isinstance(context["event_timestamp"], int):     # as write_parquet does
            row = {**row, "context": {**context, "event_timestamp": None}}
        copies.append(row)
    return pa.Table.from_pylist(copies, schema=schema).to_batches(max_chunksize=1000)


def _run_on_batches(batches: list, mapper, columnar: bool):
    def run(rows, sources):
        for batch in batches:
            names = sources[:batch.num_rows]
            if columnar:
                for _ in mapper.map_batch(batch, names):
                    pass
            else:
                for row, source in zip(parquet_batch_to_rows(batch), names, strict=True):
                    mapper.map_row(row, source)
    return run


def _run_on_chunks(mapper: ColumnarMapper, chunk: int = 1000):
    """The pipeline's path for row dicts (MapRowsToEvents): chunks read into columns."""
    def run(rows, sources):
        for start in range(0, len(rows), chunk):
            for _ in mapper.map_rows(rows[start:start + chunk], sources[start:start + chunk]):
                pass
    return run


def _run_naive(now_ms: int, encode: bool):
    def run(rows, sources):
        for row in rows:
            event = naive_map(row, now_ms)
            if encode and event is not None:
                json.dumps(event, separators=(",", ":"))
    return run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", action="store_true", help="also time the naive loop")
    parser.add_argument("--json", action="store_true", help="also json.dumps every event")
    parser.add_argument("--profile", action="store_true", help="print the top functions")
    parser.add_argument("--default-gc", action="store_true",
                        help="keep Python's default garbage-collector settings (the pipeline's"
                             " workers tune them: pipeline.steps.tune_gc_for_batch_work)")
    parser.add_argument("--arrow", action="store_true",
                        help="also map the rows as 1,000-row Arrow batches (the Parquet path):"
                             " row dicts + RowMapper, and ColumnarMapper")
    parser.add_argument("--ga4", action="store_true",
                        help="also map GA4-export-shaped Arrow batches with the ga4 preset"
                             " (benchmarks.generate_ga4), columnar and from row dicts")
    args = parser.parse_args(argv)

    now_ms = int(time.time() * 1000)
    rows = list(commanders_act_rows(args.rows, seed=args.seed, now_ms=now_ms))
    sources = [f"bench#row={i}" for i in range(len(rows))]
    plan = load_mapping()

    runs = [("RowMapper (default mapping)", lambda: _run_mapper(
        RowMapper(plan, clock_ms=lambda: now_ms), args.json)),
            ("ColumnarMapper.map_rows on 1,000-row chunks of dicts (CSV/JSONL/BigQuery path)",
             lambda: _run_on_chunks(ColumnarMapper(plan, clock_ms=lambda: now_ms)))]
    if args.arrow:
        batches = _arrow_batches(rows)
        runs.append(("RowMapper on Arrow batches (to_pylist, then map_row)",
                     lambda: _run_on_batches(batches, RowMapper(plan, clock_ms=lambda: now_ms),
                                             columnar=False)))
        runs.append(("ColumnarMapper on Arrow batches",
                     lambda: _run_on_batches(batches, ColumnarMapper(plan, clock_ms=lambda: now_ms),
                                             columnar=True)))
    if args.baseline:
        runs.append(("straightforward loop", lambda: _run_naive(now_ms, args.json)))
    if args.ga4:
        from benchmarks.generate_ga4 import ga4_batches
        ga4_plan = load_mapping("ga4")
        ga4 = ga4_batches(args.rows, now_ms, seed=args.seed)
        runs.append(("GA4 preset, ColumnarMapper on GA4 batches", lambda: _run_on_batches(
            ga4, ColumnarMapper(ga4_plan, clock_ms=lambda: now_ms), columnar=True)))
        runs.append(("GA4 preset, RowMapper on GA4 row dicts", lambda: _run_on_batches(
            ga4, RowMapper(ga4_plan, clock_ms=lambda: now_ms), columnar=False)))

    for label, make in runs:
        timings = [_time(make(), rows, sources, not args.default_gc) for _ in range(args.repeat)]
        wall = [len(rows) / w for w, _ in timings]
        cpu = [len(rows) / c for _, c in timings]
        print(f"{label}{' + json.dumps' if args.json else ''} ({len(rows):,} rows x {args.repeat}):"
              f" wall best {max(wall):,.0f} / median {statistics.median(wall):,.0f} rows/s;"
              f" CPU best {max(cpu):,.0f} / median {statistics.median(cpu):,.0f} rows per CPU-s")

    mapper = RowMapper(plan, clock_ms=lambda: now_ms)
    outcomes = {"events": 0, "dead_letters": 0, "skipped": 0}
    for row, source in zip(rows, sources, strict=True):
        result = mapper.map_row(row, source)
        outcomes["events" if result.event else
                 "dead_letters" if result.dead_letter else "skipped"] += 1
    print("outcomes:", outcomes, "| counters:", dict(mapper.counters.most_common(6)))

    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(_run_mapper(RowMapper(plan, clock_ms=lambda: now_ms), args.json),
                         rows, sources)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
