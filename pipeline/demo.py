"""`capi-sync demo`: the real pipeline on the bundled example export, against the bundled emulator.

No credentials and no network: the emulator listens on 127.0.0.1 with a throwaway key. The
example's timestamps are shifted so its newest event is an hour old (the API only takes the last
7 days); the pipeline itself never restamps an event.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import pathlib
import shutil

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline.options import DEFAULT_API_KEY_ENV

EXAMPLE = pathlib.Path(__file__).resolve().parent / "demo_data" / "commanders_act_export.parquet"
DEMO_KEY = "sk-svcacct-demo-not-a-real-key"
DEMO_PIXEL = "px_demo"
REJECTED_BY_DEMO_API = "purchase_10044"   # the emulator refuses it although it passes local checks


def rebase_example(target: pathlib.Path, now: dt.datetime) -> None:
    """Writes the example with context.event_timestamp shifted so the newest is `now - 1h`."""
    table = pq.read_table(EXAMPLE)
    context = table.column("context").combine_chunks()
    stamps = context.field("event_timestamp")
    shift = pa.scalar(now - dt.timedelta(hours=1) - pc.max(stamps).as_py(), pa.duration("us"))
    shifted = pc.add(stamps, shift)
    fields = [shifted if name == "event_timestamp" else context.field(name)
              for name in (f.name for f in context.type)]
    rebased = pa.StructArray.from_arrays(fields, fields=list(context.type), mask=context.is_null())
    table = table.set_column(table.schema.get_field_index("context"), "context", rebased)
    pq.write_table(table, target)


def run_demo(extra_args: list[str], output_dir: str = "capi-sync-demo") -> int:
    """Runs the demo; the report, dead letters and recorded events stay in `output_dir`."""
    from connectors.emulator import Emulator
    from pipeline import run as runner
    from pipeline.report import format_summary

    out = pathlib.Path(output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out / "dead", ignore_errors=True)   # the previous demo's: a run keeps its own
    with Emulator(api_key=DEMO_KEY, pixel_id=DEMO_PIXEL) as emulator:
        export = out / "commanders_act_export.parquet"   # kept: the dead letters' sources
        rebase_example(export, dt.datetime.now(dt.timezone.utc))
        emulator.reject_event_ids([REJECTED_BY_DEMO_API])
        os.environ[DEFAULT_API_KEY_ENV] = DEMO_KEY
        argv = ["--input", str(export), "--pixel-id", DEMO_PIXEL, "--endpoint", emulator.url,
                "--dead-letter", str(out / "dead" / "dead"), "--report", str(out / "report.json"),
                "--progress-seconds", "0", *extra_args]
        print(f"capi-sync demo: sending {EXAMPLE.name} to the emulator at {emulator.url}")
        outcome = runner.run(argv)
        recorded = emulator.recorded_events(DEMO_PIXEL)
    (out / "recorded_events.json").write_text(json.dumps(recorded, indent=2))
    print(format_summary(outcome.report))
    print(f"emulator recorded {len(recorded)} events for pixel {DEMO_PIXEL} "
          f"(all in {out / 'recorded_events.json'})")
    for line in _first_dead_letters(out / "dead", 3):
        print(f"  dead letter: {line}")
    print("Next: `capi-sync --print-default-mapping > mapping.yaml`, edit it, and run with "
          "--input, --mapping, --pixel-id and --validate-only against the real API.")
    return outcome.exit_code


def _first_dead_letters(folder: pathlib.Path, limit: int) -> list[str]:
    lines = []
    for path in sorted(folder.glob("*.jsonl")):
        lines.extend(line[:200] for line in path.read_text().splitlines() if line)
    return lines[:limit]
