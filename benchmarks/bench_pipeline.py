"""End-to-end throughput, memory and accounting of capi-sync next to two hand-written peers.

    python -m benchmarks.bench_pipeline --rows 200000 --rows 1000000 --latency-ms 0,50
    python -m benchmarks.bench_pipeline --rows 5000000 --latency-ms 0 --skip-peers --repeat 1
    python -m benchmarks.bench_pipeline --rows 1000000 --latency-ms 0 --sources parquet,duckdb,postgresql

What one run does:
1. Generates high-cardinality Commanders-Act-shaped rows (benchmarks.generate_rows) as Parquet,
   once per size, into a cache dir (parts of at most 1M rows, 50k-row row groups; a 5M input
   reuses the 1M part). Parts older than 12 hours are regenerated: their timestamps must stay
   inside the API's 7-day window.
2. Starts the emulator (`python -m connectors.emulator --fast`) as its own process, like a
   remote API: its CPU is not counted in the contenders' figures, but it runs on the same
   cores, so it still competes with them for CPU (its CPU seconds are printed per run).
3. Runs each contender as a subprocess, in turn, `--repeat` times: capi-sync with its defaults
   (`python -m pipeline --input ... --pixel-id ... --endpoint ... --report ...`, preflight
   included), the smart peer and the naive peer (benchmarks/peers.py). Wall time is the
   subprocess's life (interpreter start to exit); peak RSS is polled every 0.2 s over the
   contender's whole process tree (Beam's worker processes are children).
   With `--sources duckdb,postgresql`, capi-sync also reads the same rows from a DuckDB table
   (built once from the Parquet parts, cached) and from a table in a throwaway PostgreSQL server
   (structs as dotted column names, the items list as jsonb; loaded once per run), through
   `--sql-url`/`--sql-query`. The database server's CPU is printed apart, like the emulator's.
4. Checks every row is accounted for: events the emulator recorded + dead letters + skips = rows.
5. Prints one table per (rows, latency): best and median seconds, rows/s of the best run, the
   ratio to the smart peer, peak RSS of the largest process and of the whole tree, requests as
   the emulator counted them (capi-sync's include its one validate_only preflight).

The naive peer shuffles the whole input through memory; it is skipped above 200k rows unless
--force-naive. Figures on a shared machine vary: look at best and median, and at `others CPU s`
(CPU used meanwhile by processes other than the contender and the emulator).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent import futures

import psutil

API_KEY = "sk-svcacct-bench-not-a-real-key"
PIXEL_ID = "px_bench"
PART_ROWS = 1_000_000
ROW_GROUP_ROWS = 50_000
MAX_PART_AGE_S = 12 * 3600
NAIVE_MAX_ROWS = 200_000
POLL_S = 0.2
CAPI_SYNC, SMART, NAIVE = "capi-sync", "smart peer", "naive peer"
CAPI_SYNC_PLAIN = "capi-sync --no-warm-workers"      # Beam's DirectRunner, same workers
PARQUET, DUCKDB, POSTGRESQL = "parquet", "duckdb", "postgresql"
SQL_TABLE = "conversions"
REPO = pathlib.Path(__file__).resolve().parent.parent
DEFAULT_CACHE = pathlib.Path(os.environ.get(
    "CAPI_SYNC_BENCH_CACHE", pathlib.Path.home() / ".cache" / "capi-sync-bench"))


# -- data ---------------------------------------------------------------------------------------

def _compile_project() -> None:
    """Byte-compiles the project's packages once, as `pip install` does for an installed package.

    From an editable checkout in an environment with PYTHONDONTWRITEBYTECODE set, every process
    (each contender's launcher and workers) would otherwise compile them again at start.
    """
    import compileall
    for package in ("pipeline", "transforms", "connectors", "benchmarks"):
        compileall.compile_dir(str(REPO / package), quiet=1)


def _generate_part(path: str, rows: int, seed: int, bad_fraction: float) -> str:
    from benchmarks.generate_rows import write_parquet
    tmp = path + ".tmp"
    write_parquet(tmp, rows, seed=seed, bad_fraction=bad_fraction, chunk_rows=ROW_GROUP_ROWS)
    os.replace(tmp, path)
    return path


def dataset(cache: pathlib.Path, rows: int, bad_fraction: float) -> str:
    """A glob over `rows` generated rows (parts of <= 1M rows, seed = part number)."""
    parts_dir, set_dir = cache / "parts", cache / f"rows-{rows}-bad{bad_fraction:g}"
    parts_dir.mkdir(parents=True, exist_ok=True)
    wanted = []
    for index in range(math.ceil(rows / PART_ROWS)):
        part_rows = min(PART_ROWS, rows - index * PART_ROWS)
        name = f"part-{part_rows}-s{index}-bad{bad_fraction:g}.parquet"
        wanted.append((parts_dir / name, part_rows, index))
    stale = [(p, n, s) for p, n, s in wanted
             if not p.exists() or time.time() - p.stat().st_mtime > MAX_PART_AGE_S]
    if stale:
        print(f"generating {sum(n for _, n, _ in stale):,} rows into {parts_dir} ...", flush=True)
        started = time.monotonic()
        with futures.ProcessPoolExecutor(max_workers=min(len(stale), os.cpu_count() or 1)) as pool:
            jobs = [pool.submit(_generate_part, str(path), n, seed, bad_fraction)
                    for path, n, seed in stale]
            for job in jobs:
                job.result()
        print(f"  done in {time.monotonic() - started:.0f} s", flush=True)
    shutil.rmtree(set_dir, ignore_errors=True)
    set_dir.mkdir()
    for index, (part, _, _) in enumerate(wanted):
        (set_dir / f"part-{index:03d}.parquet").symlink_to(part)
    return str(set_dir / "*.parquet")


# -- the same rows in DuckDB and PostgreSQL ------------------------------------------------------

def duckdb_dataset(cache: pathlib.Path, pattern: str, rows: int, bad_fraction: float) -> str:
    """A DuckDB file whose table `conversions` holds the Parquet rows (structs, lists, as is);
    built once next to the parts, rebuilt when a part is newer."""
    import duckdb
    path = cache / f"rows-{rows}-bad{bad_fraction:g}.duckdb"
    newest = max(os.stat(part).st_mtime for part in pathlib.Path(pattern).parent.glob("*.parquet"))
    if not path.exists() or path.stat().st_mtime < newest:
        print(f"loading {rows:,} rows into {path} ...", flush=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        with duckdb.connect(str(tmp)) as connection:
            connection.execute(
                f"CREATE TABLE {SQL_TABLE} AS SELECT * FROM read_parquet('{pattern}')")
        os.replace(tmp, path)
    return f"duckdb:///{path}"


def flat_table(table):
    """Structs as dotted columns (`context.page.url`), the items list as JSON text: the shape a
    PostgreSQL table gives the same rows (the default mapping reads dotted names alike)."""
    import duckdb
    import pyarrow as pa
    while any(pa.types.is_struct(field.type) for field in table.schema):
        table = table.flatten()
    connection = duckdb.connect()
    connection.register("flat", table)
    items = connection.sql("SELECT to_json(items)::VARCHAR AS items FROM flat").to_arrow_table()
    connection.close()
    return table.set_column(table.schema.get_field_index("items"), "items",
                            items.column("items"))


class PostgresDataset:
    """A throwaway PostgreSQL server (the tests' own) holding the rows of each size."""

    def __init__(self) -> None:
        from tests.connectors.postgres import PostgresServer
        self.server = PostgresServer().start()
        self.tables: dict[int, str] = {}

    def table(self, pattern: str, rows: int) -> str:
        """The table holding the `rows` rows of `pattern` (loaded on first use)."""
        if rows not in self.tables:
            self.tables[rows] = self._load(pattern, rows)
        return self.tables[rows]

    def _load(self, pattern: str, rows: int) -> str:
        import adbc_driver_postgresql.dbapi as adbc_postgresql
        import pyarrow.parquet as pq
        print(f"loading {rows:,} rows into PostgreSQL ...", flush=True)
        name = f"{SQL_TABLE}_{rows}"
        with adbc_postgresql.connect(self.server.url) as connection:
            cursor = connection.cursor()
            mode = "create"
            for part in sorted(pathlib.Path(pattern).parent.glob("*.parquet")):
                parquet = pq.ParquetFile(part)
                for group in range(parquet.num_row_groups):
                    cursor.adbc_ingest(name, flat_table(parquet.read_row_group(group)), mode=mode)
                    mode = "append"
            connection.commit()
        import psycopg
        with psycopg.connect(self.server.url, autocommit=True) as connection:
            connection.execute(
                f"ALTER TABLE {name} ALTER COLUMN items TYPE jsonb USING items::jsonb")
            connection.execute(f"VACUUM ANALYZE {name}")
        return name

    def cpu_s(self) -> float:
        """CPU seconds so far of the server's processes (postmaster, backends, finished ones)."""
        pid = int((self.server.data_dir / "postmaster.pid").read_text().split()[0])
        try:
            root = psutil.Process(pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
            if proc.pid == pid:
                total += times.children_user + times.children_system
        return total

    def stop(self) -> None:
        self.server.stop()



# -- the emulator -------------------------------------------------------------------------------

# The emulator's main(), with the garbage collector tuned: its record of 1M+ event keys made every
# full collection slower, so its CPU per event grew with the run (+40% by 1M events), taking CPU
# from the contenders on the same cores. A remote API would cost them none.
_EMULATOR_MAIN = ("import gc, sys; gc.freeze(); gc.set_threshold(100_000, 50, 100); "
                  "from connectors.emulator import main; sys.exit(main(sys.argv[1:]))")


class EmulatorProcess:
    """`python -m connectors.emulator --fast` in its own process, driven by its admin API."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _EMULATOR_MAIN, "--port", "0", "--fast",
             "--api-key", API_KEY, "--pixel-id", PIXEL_ID],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
        line = self._proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.url = line.split()[-1]
        self._admin = self.url.rsplit("/v1/", 1)[0] + "/_emulator/"
        self.process = psutil.Process(self._proc.pid)

    def _call(self, method: str, action: str, payload: dict | None = None) -> dict:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(self._admin + action, data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"{}")

    def reset(self, latency_ms: float) -> None:
        self._call("POST", "latency", {"seconds": latency_ms / 1000.0})
        self._call("POST", "reset", {})

    def stats(self) -> dict:
        return self._call("GET", "stats")

    def cpu_s(self) -> float:
        times = self.process.cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(10)
        except subprocess.TimeoutExpired:
            self._proc.kill()


# -- one measured run ---------------------------------------------------------------------------

@dataclasses.dataclass
class Measurement:
    contender: str
    rows: int
    latency_ms: float
    wall_s: float
    peak_rss_mb: float          # largest single process of the tree
    peak_launcher_mb: float     # the contender's own process (Beam's runner for DirectRunner)
    peak_tree_mb: float         # the whole tree at its largest
    max_processes: int
    cpu_s: float                # CPU seconds of the whole tree (user + system)
    others_cpu_s: float         # CPU seconds used meanwhile by everything else but the emulator
    requests: int
    recorded: int
    dead_lettered: int
    skipped: int
    emulator_cpu_s: float
    db_cpu_s: float             # CPU seconds of the database server (PostgreSQL cells)
    load1: float
    exit_code: int
    log: str

    @property
    def accounted(self) -> bool:
        return self.exit_code == 0 and self.recorded + self.dead_lettered + self.skipped == self.rows

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def cpu_us_per_row(self) -> float:
        return self.cpu_s / self.rows * 1e6


def _sample_tree(root: psutil.Process, cpu_by_pid: dict[int, float],
                 rss_by_pid: dict[int, float]) -> tuple[float, float, int]:
    """(largest RSS, total RSS, processes) of the tree now; records each process's CPU time
    and peak RSS."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0, 0
    sizes = []
    for proc in procs:
        try:
            with proc.oneshot():
                sizes.append(proc.memory_info().rss)
                rss_by_pid[proc.pid] = max(rss_by_pid.get(proc.pid, 0), sizes[-1])
                times = proc.cpu_times()
            cpu_by_pid[proc.pid] = times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return max(sizes, default=0), sum(sizes), len(sizes)


def _busy_cpu_s() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


def command(contender: str, pattern: str, url: str, workdir: pathlib.Path,
            extra: list[str], source_args: list[str] | None = None) -> list[str]:
    report = str(workdir / "report.json")
    if contender.startswith(CAPI_SYNC):
        source = source_args or ["--input", pattern]
        return [sys.executable, "-m", "pipeline", *source, "--pixel-id", PIXEL_ID,
                "--endpoint", url, "--report", report,
                "--dead-letter", str(workdir / "dead" / "dead"), *extra,
                *(["--no-warm-workers"] if contender == CAPI_SYNC_PLAIN else [])]
    kind = "smart" if contender == SMART else "naive"
    return [sys.executable, "-m", "benchmarks.peers", kind, "--input", pattern,
            "--pixel-id", PIXEL_ID, "--endpoint", url, "--report", report]


def measure(contender: str, rows: int, latency_ms: float, pattern: str, emulator: EmulatorProcess,
            scratch: pathlib.Path, extra: list[str], timeout_s: float,
            source_args: list[str] | None = None, db: PostgresDataset | None = None
            ) -> Measurement:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix=contender.split()[0] + "-", dir=scratch))
    emulator.reset(latency_ms)
    cpu_before, busy_before, load1 = emulator.cpu_s(), _busy_cpu_s(), os.getloadavg()[0]
    db_before = db.cpu_s() if db else 0.0
    log_path = workdir / "log.txt"
    env = {**os.environ, "OPENAI_CAPI_API_KEY": API_KEY}
    peak = peak_tree = 0.0
    max_procs = 0
    cpu_by_pid: dict[int, float] = {}
    rss_by_pid: dict[int, float] = {}
    with open(log_path, "w") as log:
        started = time.monotonic()
        proc = subprocess.Popen(command(contender, pattern, emulator.url, workdir, extra,
                                        source_args),
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            largest, tree, count = _sample_tree(root, cpu_by_pid, rss_by_pid)
            peak, peak_tree, max_procs = max(peak, largest), max(peak_tree, tree), max(max_procs, count)
            if time.monotonic() - started > timeout_s:
                proc.kill()
                break
            time.sleep(POLL_S)
        exit_code = proc.wait()
        wall_s = time.monotonic() - started
    busy_s, emulator_cpu_s = _busy_cpu_s() - busy_before, emulator.cpu_s() - cpu_before
    db_cpu_s = db.cpu_s() - db_before if db else 0.0
    cpu_s = sum(cpu_by_pid.values())
    stats = emulator.stats()
    report = _read_json(workdir / "report.json")
    if contender.startswith(CAPI_SYNC):
        dead, skipped = report.get("events_dead_lettered", 0), report.get("events_skipped", 0)
    else:
        dead, skipped = report.get("dead_lettered", 0), report.get("skipped", 0)
    return Measurement(contender, rows, latency_ms, wall_s, peak / 2**20,
                       rss_by_pid.get(proc.pid, 0) / 2**20, peak_tree / 2**20,
                       max_procs, cpu_s, max(0.0, busy_s - cpu_s - emulator_cpu_s - db_cpu_s),
                       stats.get("requests", 0), stats.get("recorded", 0), dead, skipped,
                       emulator_cpu_s, db_cpu_s, load1, exit_code, str(log_path))


def _read_json(path: pathlib.Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# -- the table ----------------------------------------------------------------------------------

HEADER = ("contender", "rows", "lat ms", "best s", "median s", "rows/s", "x smart",
          "x parquet", "peak RSS MB", "tree MB", "procs", "requests", "CPU s", "CPU us/row",
          "emu CPU s", "db CPU s", "others CPU s", "accounted")


def table(results: list[Measurement]) -> str:
    by_contender: dict[str, list[Measurement]] = {}
    for m in results:
        by_contender.setdefault(m.contender, []).append(m)
    smart = by_contender.get(SMART)
    smart_best = max(m.rows_per_s for m in smart) if smart else None
    parquet = by_contender.get(CAPI_SYNC)
    parquet_best = max(m.rows_per_s for m in parquet) if parquet else None
    lines = []
    for contender, runs in by_contender.items():
        best = min(runs, key=lambda m: m.wall_s)
        ratio = f"{best.rows_per_s / smart_best:.2f}" if smart_best else "-"
        to_parquet = (f"{best.rows_per_s / parquet_best:.2f}"
                      if parquet_best and contender.startswith(CAPI_SYNC) else "-")
        lines.append((
            contender, f"{best.rows:,}", f"{best.latency_ms:g}", f"{best.wall_s:.1f}",
            f"{statistics.median(m.wall_s for m in runs):.1f}", f"{best.rows_per_s:,.0f}", ratio,
            to_parquet,
            f"{max(m.peak_rss_mb for m in runs):,.0f}", f"{max(m.peak_tree_mb for m in runs):,.0f}",
            str(max(m.max_processes for m in runs)), f"{best.requests:,}",
            f"{best.cpu_s:.1f}", f"{min(m.cpu_us_per_row for m in runs):.1f}",
            f"{best.emulator_cpu_s:.1f}", f"{best.db_cpu_s:.1f}", f"{best.others_cpu_s:.1f}",
            "yes" if all(m.accounted for m in runs) else "NO"))
    widths = [max(len(row[i]) for row in [HEADER, *lines]) for i in range(len(HEADER))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    return "\n".join([fmt.format(*HEADER), *(fmt.format(*row) for row in lines)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_pipeline",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append",
                        help="input size (repeatable; default 200000)")
    parser.add_argument("--latency-ms", default="0,50",
                        help="comma-separated emulator latencies per request (default 0,50)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per contender (default 2)")
    parser.add_argument("--skip-naive", action="store_true", help="never run the naive peer")
    parser.add_argument("--force-naive", action="store_true",
                        help=f"run the naive peer above {NAIVE_MAX_ROWS:,} rows too")
    parser.add_argument("--skip-peers", action="store_true", help="run capi-sync only")
    parser.add_argument("--no-warm-workers-too", action="store_true",
                        help="also run capi-sync --no-warm-workers, alternating with capi-sync")
    parser.add_argument("--sources", default=PARQUET,
                        help="comma-separated sources capi-sync reads the rows from: parquet, "
                             "duckdb, postgresql (default parquet; the peers read Parquet)")
    parser.add_argument("--capi-sync-arg", action="append", default=[], metavar="ARG",
                        help="extra capi-sync argument (repeatable): --capi-sync-arg=--max-in-flight=8")
    parser.add_argument("--bad-fraction", type=float, default=0.01,
                        help="rows with one data problem each, dead-lettered by the mapper "
                             "(default 0.01)")
    parser.add_argument("--cache-dir", type=pathlib.Path, default=DEFAULT_CACHE)
    parser.add_argument("--timeout-s", type=float, default=3600.0, help="per run")
    parser.add_argument("--json", type=pathlib.Path, help="also write every measurement here")
    parser.add_argument("--keep", action="store_true", help="keep logs and dead letters")
    args = parser.parse_args(argv)
    sizes = args.rows or [200_000]
    latencies = [float(value) for value in args.latency_ms.split(",") if value.strip()]

    patterns = {rows: dataset(args.cache_dir, rows, args.bad_fraction) for rows in sizes}
    sources = [value.strip() for value in args.sources.split(",") if value.strip()]
    unknown = set(sources) - {PARQUET, DUCKDB, POSTGRESQL}
    if unknown:
        parser.error(f"unknown --sources {', '.join(sorted(unknown))}")
    database = PostgresDataset() if POSTGRESQL in sources else None
    _compile_project()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="capi-sync-bench-"))
    emulator = EmulatorProcess()
    print(f"emulator (--fast) at {emulator.url}, pid {emulator.process.pid}; "
          f"{os.cpu_count()} cores shared by the emulator and the contender", flush=True)
    all_results: list[Measurement] = []
    try:
        for rows in sizes:
            sql_cells = {}
            if DUCKDB in sources:
                sql_cells[f"{CAPI_SYNC} {DUCKDB}"] = (["--sql-url", duckdb_dataset(
                    args.cache_dir, patterns[rows], rows, args.bad_fraction),
                    "--sql-query", f"SELECT * FROM {SQL_TABLE}"], None)
            if database is not None:
                sql_cells[f"{CAPI_SYNC} {POSTGRESQL}"] = (["--sql-url", database.server.url,
                    "--sql-query", f"SELECT * FROM {database.table(patterns[rows], rows)}"],
                    database)
            contenders = [CAPI_SYNC] if PARQUET in sources else []
            contenders += list(sql_cells)
            if not args.skip_peers:
                contenders += [SMART, NAIVE]
            if args.no_warm_workers_too and CAPI_SYNC in contenders:
                contenders.insert(contenders.index(CAPI_SYNC) + 1, CAPI_SYNC_PLAIN)
            if NAIVE in contenders and (args.skip_naive or (rows > NAIVE_MAX_ROWS
                                                             and not args.force_naive)):
                contenders.remove(NAIVE)
                if not args.skip_naive:
                    print(f"naive peer skipped at {rows:,} rows: its GroupIntoBatches shuffle holds"
                          " the whole input in memory (--force-naive to run it anyway)")
            for latency_ms in latencies:
                results = []
                for attempt in range(args.repeat):
                    for contender in contenders:
                        source_args, db = sql_cells.get(contender, (None, None))
                        m = measure(contender, rows, latency_ms, patterns[rows], emulator,
                                    scratch, args.capi_sync_arg, args.timeout_s,
                                    source_args, db)
                        results.append(m)
                        print(f"  run {attempt + 1}: {contender:<20} {rows:>9,} rows "
                              f"{latency_ms:>4g} ms  {m.wall_s:7.1f} s  {m.rows_per_s:>8,.0f} rows/s"
                              f"  peak {m.peak_rss_mb:,.0f} MB (launcher {m.peak_launcher_mb:,.0f})"
                              f"  CPU {m.cpu_s:.1f} s ({m.cpu_us_per_row:.1f} us/row)"
                              f" (others {m.others_cpu_s:.1f} s)"
                              f"  {'ok' if m.accounted else 'NOT ACCOUNTED, see ' + m.log}",
                              flush=True)
                print(f"\n{rows:,} rows, emulator latency {latency_ms:g} ms "
                      f"(best of {args.repeat}; x smart = rows/s / smart peer's best rows/s)")
                print(table(results) + "\n", flush=True)
                all_results.extend(results)
        _print_linearity(all_results)
    finally:
        emulator.stop()
        if database is not None:
            database.stop()
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
        else:
            print(f"logs and reports kept in {scratch}")
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(m) for m in all_results], indent=2))
    return 0 if all(m.accounted for m in all_results) else 1


def _print_linearity(results: list[Measurement]) -> None:
    best: dict[tuple[int, float], float] = {}
    for m in results:
        if m.contender == CAPI_SYNC:
            key = (m.rows, m.latency_ms)
            best[key] = min(best.get(key, math.inf), m.wall_s)
    for (rows, latency), seconds in sorted(best.items()):
        for (other_rows, other_latency), other_s in sorted(best.items()):
            if other_latency == latency and other_rows > rows:
                print(f"capi-sync cost growth at {latency:g} ms: time({other_rows:,}) / "
                      f"time({rows:,}) = {other_s / seconds:.2f} for {other_rows / rows:g}x rows")


if __name__ == "__main__":
    sys.exit(main())
