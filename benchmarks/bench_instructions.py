"""Instructions per row of the Parquet mapping path, counted by valgrind: steady on a noisy machine.

    python -m benchmarks.bench_instructions                         # this tree
    python -m benchmarks.bench_instructions --tree /tmp/previous    # another tree (git archive)
    python -m benchmarks.bench_instructions --parquet rows.parquet     # a file, the pipeline reader
    python -m benchmarks.bench_instructions --parquet ga4.parquet --mapping ga4  # a preset
    python -m benchmarks.bench_instructions --parquet rows.parquet --pipeline   # the whole job
    python -m benchmarks.bench_instructions --parquet rows.parquet --pipeline --postgresql
    python -m benchmarks.bench_instructions --compiled [--pipeline --parquet rows.parquet]

Wall and CPU time on a shared machine drift by ±20% within minutes, so two trees a few percent
apart cannot be told apart by timing. The number of instructions the mapper executes varies
far less (PYTHONHASHSEED=0; repeated counts at 5,000 rows differed by up to 2%, hence the
default of 20,000). Each figure is the difference between mapping `--large` (20,000) and
`--small` (1,000) rows under `valgrind --tool=cachegrind --cache-sim=no`, divided by the
difference in rows, so start-up (interpreter, imports, the plan) cancels out. What is mapped:
`ColumnarMapper.map_batch` (the pipeline's Parquet path) over 1,000-row Arrow batches, either of
generated rows (benchmarks.generate_rows, the mapper's clock set to the rows' own) or of a
Parquet file read by the pipeline's reader (`--parquet`, the wall clock). Needs valgrind
(`apt-get install valgrind`); each count takes a minute or two.

`--pipeline` counts the whole job instead: `python -m pipeline` with its defaults (two worker
processes on this machine) on the file's first `--small` and `--large` rows (10,000 and 30,000
by default), against the emulator (`--fast`, its own process, not counted), every process of
the job under `valgrind --trace-children=yes`. It prints instructions per row and the fixed
cost (start-up, graph, report). With `--postgresql` the job reads the same rows from a table of
a throwaway PostgreSQL server (bench_pipeline's: structs as dotted columns, the items as jsonb;
`SELECT * FROM t LIMIT n`); the server's own instructions are not counted. Threads that wait
with a timeout (gRPC, the sender pool) add a little that grows with the run's wall time, so
counts of one tree differ by ~1%. Each count takes a few minutes.

`--compiled` counts a copy of the tree whose mapping-core modules (COMPILED_MODULES) are
compiled by Cython as they are, no line changed: what compiling alone would buy (README,
Performance). It needs Cython (`pip install cython`), a benchmark tool only.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import re
import shutil
import subprocess
import sys

NOW_MS = 1_796_055_318_934      # generated rows and the mapper share this clock
BATCH_ROWS = 1000
# What `--compiled` builds with Cython, unchanged: the mapping core's per-row modules.
COMPILED_MODULES = tuple(f"transforms/{name}.py" for name in (
    "arrow_rows", "columnar", "events", "mapper", "mapping", "money", "normalize", "paths",
    "source_url", "timestamps", "user_fields", "validate"))


def _map_generated(rows: int) -> None:
    from benchmarks.bench_mapper import _arrow_batches
    from benchmarks.generate_rows import commanders_act_rows
    from transforms.columnar import ColumnarMapper
    from transforms.mapping import load_mapping
    batches = _arrow_batches(list(commanders_act_rows(4000, seed=0, now_ms=NOW_MS)))
    mapper = ColumnarMapper(load_mapping(), clock_ms=lambda: NOW_MS)
    _tune_gc()
    done = 0
    while done < rows:
        for batch in batches:
            if done >= rows:
                return
            for _ in mapper.map_batch(batch, ["s"] * batch.num_rows):
                pass
            done += batch.num_rows


def _map_parquet(rows: int, path: str, mapping: str | None = None) -> None:
    import pyarrow as pa

    from connectors.file_source import plan_parquet_splits, read_parquet_row_group
    from transforms.columnar import ColumnarMapper
    from transforms.mapping import load_mapping
    mapper = ColumnarMapper(load_mapping(mapping))
    _tune_gc()
    with pa.OSFile(path) as handle:
        split = next(iter(plan_parquet_splits(path, handle)))
    done = 0
    with pa.OSFile(path) as handle:
        for chunk in read_parquet_row_group(handle, split, None, BATCH_ROWS):
            for _ in mapper.map_batch(chunk.batch, chunk.sources):
                pass
            done += len(chunk)
            if done >= rows:
                return
    raise SystemExit(f"{path}: its first row group has fewer than {rows} rows")


def _tune_gc() -> None:
    from pipeline.steps import tune_gc_for_batch_work
    tune_gc_for_batch_work()


def _valgrind_instructions(tree: pathlib.Path, command: list[str], env: dict[str, str],
                           timeout_s: float, trace_children: bool = False) -> int:
    """Instructions valgrind counts for `command` run with `tree`'s code (summed over every
    process it starts when `trace_children`)."""
    valgrind = ["valgrind", "--tool=cachegrind", "--cache-sim=no",
                "--cachegrind-out-file=/dev/null",
                *(["--trace-children=yes"] if trace_children else [])]
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree), **env}
    done = subprocess.run(valgrind + command, cwd=tree, env=env, capture_output=True,
                          text=True, timeout=timeout_s, check=False)
    counts = re.findall(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or not counts:
        raise SystemExit(f"valgrind run failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return sum(int(count.replace(",", "")) for count in counts)


def count_instructions(tree: pathlib.Path, rows: int, parquet: str | None,
                       mapping: str | None = None) -> int:
    """Instructions valgrind counts for one process mapping `rows` rows with `tree`'s code."""
    command = [sys.executable, os.path.abspath(__file__), "--worker", str(rows),
               *(["--parquet", parquet] if parquet else []),
               *(["--mapping", mapping] if mapping else [])]
    return _valgrind_instructions(tree, command, {}, timeout_s=1800)


def count_job_instructions(tree: pathlib.Path, source: list[str], workdir: pathlib.Path) -> int:
    """Instructions of every process of one `python -m pipeline` run reading `source` (its
    arguments: `--input FILE` or `--sql-url URL --sql-query SQL`)."""
    from benchmarks.bench_pipeline import API_KEY, PIXEL_ID, EmulatorProcess
    emulator = EmulatorProcess()
    try:
        command = [sys.executable, "-m", "pipeline", *source, "--pixel-id", PIXEL_ID,
                   "--endpoint", emulator.url, "--report", str(workdir / "report.json"),
                   "--dead-letter", str(workdir / "dead" / "dead")]
        return _valgrind_instructions(tree, command, {"OPENAI_CAPI_API_KEY": API_KEY},
                                      timeout_s=3600, trace_children=True)
    finally:
        emulator.stop()


def compiled_copy(tree: pathlib.Path, scratch: pathlib.Path) -> pathlib.Path:
    """A copy of `tree` whose COMPILED_MODULES are built by Cython in place, their source
    unchanged (an extension module is imported before the .py beside it). Cython is a tool of
    this benchmark only, not a dependency of the product."""
    try:
        import Cython  # noqa: F401
    except ImportError:
        raise SystemExit("--compiled needs Cython: pip install cython") from None
    copy = scratch / "compiled"
    shutil.copytree(tree, copy, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "build", "*.so", "*.c"))
    done = subprocess.run([sys.executable, "-m", "Cython.Build.Cythonize", "-i", "-3", "-q",
                           "-j", str(os.cpu_count() or 1), *COMPILED_MODULES],
                          cwd=copy, capture_output=True, text=True, check=False)
    built = sorted(copy.glob("transforms/*.so"))
    if done.returncode != 0 or len(built) != len(COMPILED_MODULES):
        raise SystemExit(f"Cython build failed (exit {done.returncode}, {len(built)} of "
                         f"{len(COMPILED_MODULES)} modules built):\n{done.stderr[-2000:]}")
    return copy


def _job_figures(tree: pathlib.Path, parquet: str, small: int, large: int,
                 postgresql: bool = False) -> None:
    import tempfile

    import pyarrow.parquet as pq
    table = pq.read_table(parquet)
    if table.num_rows < large:
        raise SystemExit(f"{parquet} has fewer than {large} rows")
    counts = []
    server = None
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as scratch:
        try:
            if postgresql:   # the rows in a table of bench_pipeline's throwaway server
                from benchmarks.bench_pipeline import PostgresDataset
                rows_dir = pathlib.Path(scratch) / "table"
                rows_dir.mkdir()
                pq.write_table(table.slice(0, large), rows_dir / "rows.parquet")
                server = PostgresDataset()
                sql_table = server.table(str(rows_dir / "rows.parquet"), large)
            for rows in (small, large):
                workdir = pathlib.Path(scratch) / str(rows)
                (workdir / "dead").mkdir(parents=True)
                if server is not None:
                    source = ["--sql-url", server.server.url, "--sql-query",
                              f"SELECT * FROM {sql_table} LIMIT {rows}"]
                else:
                    part = workdir / "rows.parquet"
                    pq.write_table(table.slice(0, rows), part, row_group_size=50_000)
                    source = ["--input", str(part)]
                counts.append(count_job_instructions(tree, source, workdir))
        finally:
            if server is not None:
                server.stop()
    per_row = (counts[1] - counts[0]) / (large - small)
    what = f"a PostgreSQL table of {parquet}'s rows" if postgresql else parquet
    print(f"{tree}: {per_row:,.0f} instructions per row, {counts[0] - per_row * small:,.0f} fixed "
          f"(python -m pipeline, every process; {what}, {small:,} and {large:,} rows)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=pathlib.Path, default=pathlib.Path.cwd(),
                        help="the source tree to measure (default: the current directory)")
    parser.add_argument("--parquet", help="map the first rows of this Parquet file instead")
    parser.add_argument("--pipeline", action="store_true",
                        help="count the whole job (needs --parquet; see the module docstring)")
    parser.add_argument("--small", type=int, help="rows of the small count (default 1,000; "
                        "10,000 with --pipeline)")
    parser.add_argument("--large", type=int, help="rows of the large count (default 20,000; "
                        "30,000 with --pipeline)")
    parser.add_argument("--postgresql", action="store_true",
                        help="with --pipeline: the job reads the file's rows from a PostgreSQL "
                        "table (a throwaway server, not counted) instead of the file")
    parser.add_argument("--mapping", help="with --parquet: a preset (ga4, ...) or mapping file"
                        " instead of the default mapping")
    parser.add_argument("--compiled", action="store_true",
                        help="count a copy of the tree whose mapping-core modules "
                        "(COMPILED_MODULES) are compiled by Cython, unchanged (needs Cython)")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        if args.parquet:
            _map_parquet(args.worker, args.parquet, args.mapping)
        else:
            _map_generated(args.worker)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    args.small = args.small or (10_000 if args.pipeline else 1000)
    args.large = args.large or (30_000 if args.pipeline else 20_000)
    if not args.small < args.large:
        raise SystemExit("--small must be less than --large")
    if args.mapping and not args.parquet:
        raise SystemExit("--mapping needs --parquet FILE (rows of that mapping's shape)")
    if args.pipeline and not args.parquet:
        raise SystemExit("--pipeline needs --parquet FILE (e.g. a bench_pipeline data file)")
    tree = args.tree.resolve()
    if args.compiled:
        import tempfile
        with tempfile.TemporaryDirectory(prefix="bench-compiled-") as scratch:
            _count(args, compiled_copy(tree, pathlib.Path(scratch)))
        return
    _count(args, tree)


def _count(args: argparse.Namespace, tree: pathlib.Path) -> None:
    if args.pipeline:
        _job_figures(tree, args.parquet, args.small, args.large, args.postgresql)
        return
    small = count_instructions(tree, args.small, args.parquet, args.mapping)
    large = count_instructions(tree, args.large, args.parquet, args.mapping)
    what = args.parquet or "generated rows"
    print(f"{tree}: {(large - small) / (args.large - args.small):,.0f} instructions per row "
          f"(ColumnarMapper.map_batch, {what}; {args.small:,} and {args.large:,} rows)")


if __name__ == "__main__":
    main()
