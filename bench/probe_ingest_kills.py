"""Probe: ingest workers SIGKILLed (and SIGSTOPped past their lease) at random moments, then
publish killed the same way; count log objects whose rows are missing or doubled afterwards,
in the results store and in the warehouses (DuckDB and chDB).

Several ``linehaul ingest --once`` workers (``--workers``, 2 or 3) share a ``file://`` log
store of a few hundred gzip log objects of mixed sizes (many small, some tens of MB
decompressed to hundreds), each restarted when it ends. A fault loop picks a random worker
every ``--every`` seconds (at most): mostly SIGKILL (the worker dies mid-object, its lease
left to expire), sometimes SIGSTOP for longer than the lease timeout and SIGCONT (a worker
merely slow: its lease expires under it, another one takes the object over, then the first
one wakes up and goes on). After ``--faults`` faults, the workers run on undisturbed until
the log store holds no object left.

Every event of object ``n`` is dated on day ``n`` (from :data:`FIRST_DAY`), so the rows of
each object can be told apart by their date alone: in the results store (each result file's
name and day are checked against its object's) and in the warehouse (rows per day). The
expected rows per object come from converting its lines in this process, in chunks.

Then ``linehaul publish --once`` is run into a DuckDB file and into a chDB directory (each
from its own copy of the results), killed at random moments and run again until the results
are gone, and each warehouse's rows per day are compared with the expectation. With
``--publish-during`` publish runs into DuckDB beside the workers instead (restarted when it
ends, hit by the faults too), as in production, where a worker that wakes up past its lease
may write a result again after publish loaded and deleted it; the results store is then
not checked, only the warehouse.

    .venv/bin/python bench/probe_ingest_kills.py --workers 2 --faults 40 --seconds 900
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import Path

from isal import igzip

from loadgen import machine
from pythonhosted.linehaul.batch import convert

_spec = importlib.util.spec_from_file_location("corpus", Path(__file__).with_name("linehaul.py"))
assert _spec is not None and _spec.loader is not None
corpus_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus_module)

FIRST_DAY = datetime.datetime(2021, 1, 7, tzinfo=datetime.UTC)
TEMPLATE_DATE = b"Thu, 07 Jan 2021"
CHUNK = 50  # lines: objects are made of whole chunks, whose rows are counted once each
TABLES = ("file_downloads", "simple_requests")


def sizes(rng: random.Random, objects: int, large: int) -> list[int]:
    """Chunks per object: mostly small ones, a tenth of tens of thousands of lines, ``large``
    of hundreds of thousands (several result parts each)."""
    medium = objects // 10
    out = [rng.randint(1, 40) for _ in range(objects - medium - large)]
    out += [rng.randint(200, 1000) for _ in range(medium)]
    out += [rng.randint(4000, 12000) for _ in range(large)]
    rng.shuffle(out)
    return out


def day_of(number: int) -> datetime.datetime:
    return FIRST_DAY + datetime.timedelta(days=number)


@dataclass
class Expected:
    """Rows per object: (downloads, simple requests), and each object's day."""

    rows: dict[int, tuple[int, int]] = field(default_factory=dict)

    def day(self, number: int) -> str:
        return day_of(number).strftime("%Y%m%d")


def make_logs(logs: Path, counts: list[int]) -> Expected:
    """Write the log objects; return the rows each one must give."""
    setattr(corpus_module, "START", int(FIRST_DAY.timestamp()))  # noqa: B010 (a loaded module)
    lines = corpus_module.corpus(max(counts) * CHUNK, seed=17)
    chunks = [
        ("\n".join(lines[at : at + CHUNK]) + "\n").encode() for at in range(0, len(lines), CHUNK)
    ]
    del lines
    per_chunk: list[tuple[int, int]] = []
    for chunk in chunks:
        converted = convert(igzip.compress(chunk, 0))
        per_chunk.append((converted.downloads.count(b"\n"), converted.simple.count(b"\n")))
    expected = Expected()
    for number, count in enumerate(counts):
        date = format_datetime(day_of(number), usegmt=True)[:16].encode()
        text = b"".join(chunks[:count]).replace(TEMPLATE_DATE, date)
        key = logs / "downloads" / f"{number % 24:02d}" / f"obj-{number:04d}.log.gz"
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(igzip.compress(text, 1))
        downloads = sum(d for d, _ in per_chunk[:count])
        simple = sum(s for _, s in per_chunk[:count])
        expected.rows[number] = (downloads, simple)
    return expected


def left_objects(logs: Path) -> list[Path]:
    return [
        path
        for path in logs.rglob("*.log.gz")
        if path.relative_to(logs).parts[0] not in ("leases", "corrupt")
    ]


class Workers:
    """A process per command line, each restarted when it ends, each in its own process
    group."""

    def __init__(self, argvs: list[list[str]], env: dict[str, str], logs_dir: Path) -> None:
        self.argvs, self.env, self.logs_dir = argvs, env, logs_dir
        self.slots: list[subprocess.Popen[bytes] | None] = [None] * len(argvs)
        self.runs = 0
        self.failures = 0

    def keep_up(self) -> None:
        for index, process in enumerate(self.slots):
            if process is not None and process.poll() is None:
                continue
            if process is not None and process.returncode not in (0, -signal.SIGKILL):
                self.failures += 1
                print(f"  worker exited with {process.returncode}", flush=True)
            self.runs += 1
            err = (self.logs_dir / f"worker-{self.runs}.err").open("wb")
            self.slots[index] = subprocess.Popen(
                self.argvs[index],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )

    def running(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.slots if p is not None and p.poll() is None]

    def stop(self) -> None:
        for process in self.slots:
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            if process is not None:
                process.wait()


def ingest(args: argparse.Namespace, work: Path, rng: random.Random) -> tuple[int, int, float]:
    """Run the workers under faults until the log store is empty; (kills, stops, seconds)."""
    logs, results = work / "logs", work / "results"
    argv = [sys.executable, "-m", "pythonhosted", "linehaul", "ingest", "--once"]
    argv += ["--logs", f"file://{logs}", "--results", f"file://{results}"]
    env = {
        **os.environ,
        "PYTHONHOSTED_DATA_DIR": str(work / "data"),
        "PYTHONHOSTED_LINEHAUL__LEASE_TIMEOUT": str(args.lease),
        "PYTHONHOSTED_LINEHAUL__INGEST_CONCURRENCY": str(args.concurrency),
    }
    argvs = [argv] * args.workers
    if args.publish_during:  # publish as production does, beside ingest: late writes meet it
        argvs.append(publish_argv(results, during_url(work)))
    (work / "stderr").mkdir()
    workers = Workers(argvs, env, work / "stderr")
    started = time.monotonic()
    kills = stops = 0
    try:
        while time.monotonic() - started < args.seconds:
            workers.keep_up()
            if not left_objects(logs):
                break
            if kills + stops >= args.faults:
                time.sleep(0.2)
                continue
            time.sleep(rng.uniform(0.05, args.every))
            running = workers.running()
            if not running:
                continue
            victim = rng.choice(running)
            if rng.random() < args.stop_share:
                os.killpg(victim.pid, signal.SIGSTOP)
                time.sleep(args.lease * rng.uniform(1.2, 2.0))
                os.killpg(victim.pid, signal.SIGCONT)
                stops += 1
            else:
                os.killpg(victim.pid, signal.SIGKILL)
                kills += 1
        else:
            print("  time is up with objects left", flush=True)
        while workers.running() and time.monotonic() - started < args.seconds + 120:
            time.sleep(0.2)  # let the last passes end (a stopped worker's late writes too)
    finally:
        workers.stop()
    print(f"  worker runs {workers.runs}, unexpected exits {workers.failures}", flush=True)
    return kills, stops, time.monotonic() - started


def check_results(results: Path, expected: Expected) -> tuple[int, int, int]:
    """Rows per object in the result files: objects (lost, doubled), misplaced files."""
    found: Counter[tuple[int, str]] = Counter()
    misplaced = 0
    for path in (results / "processed").rglob("*.json"):
        name = path.stem  # downloads-obj-0007
        table, number = name.split("-", 1)[0], int(name.rsplit("-", 1)[1])
        day = path.relative_to(results / "processed").parts[0]
        if day != expected.day(number):
            misplaced += 1
            print(f"  {path}: day {day}, object's {expected.day(number)}", flush=True)
        found[number, table] += path.read_bytes().count(b"\n")
    per_object = {n: (found[n, "downloads"], found[n, "simple"]) for n in expected.rows}
    return (*compare(expected, per_object, "results"), misplaced)


def compare(expected: Expected, found: dict[int, tuple[int, int]], where: str) -> tuple[int, int]:
    lost = doubled = 0
    for number, rows in expected.rows.items():
        got = found.get(number, (0, 0))
        if got == rows:
            continue
        print(f"  {where}: obj-{number:04d} expected {rows}, found {got}", flush=True)
        if any(g > r for g, r in zip(got, rows, strict=True)):
            doubled += 1
        if any(g < r for g, r in zip(got, rows, strict=True)):
            lost += 1
    return lost, doubled


def publish_argv(results: Path, url: str) -> list[str]:
    argv = [sys.executable, "-m", "pythonhosted", "linehaul", "publish", "--once"]
    return [*argv, "--results", f"file://{results}", "--warehouse", url]


def during_url(work: Path) -> str:
    return f"duckdb://{work / 'during.duckdb'}"


def publish(
    results: Path, url: str, env: dict[str, str], rng: random.Random, window: float
) -> tuple[int, int]:
    """Publish until the results are gone, killing runs at random; (runs, kills)."""
    argv = publish_argv(results, url)
    runs = kills = 0
    while any((results / "processed").rglob("*.json")) and runs < 200:
        runs += 1
        process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        try:
            if runs <= 8 and kills < 6:
                try:
                    process.wait(timeout=rng.uniform(0.5, window))
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    kills += 1
            _, err = process.communicate(timeout=1200)
            if process.returncode not in (0, -signal.SIGKILL):
                print(f"  publish exited {process.returncode}: {err[-400:]!r}", flush=True)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return runs, kills


def warehouse_rows(url: str) -> dict[int, tuple[int, int]]:
    """Rows per object (day) in each table of the warehouse at ``url``."""
    per_table: list[dict[int, int]] = []
    if url.startswith("duckdb://"):
        import duckdb

        with duckdb.connect(url.removeprefix("duckdb://"), read_only=True) as con:
            for table in TABLES:
                query = f"SELECT CAST(timestamp AS DATE), count(*) FROM {table} GROUP BY 1"
                per_table.append(
                    {(day - FIRST_DAY.date()).days: n for day, n in con.execute(query).fetchall()}
                )
    else:
        from pythonhosted.warehouse.clickhouse.engines import ChdbEngine

        engine = ChdbEngine(Path(url.removeprefix("chdb://")))
        try:
            for table in TABLES:
                query = f"SELECT toDate(timestamp, 'UTC') AS d, count() FROM {table} GROUP BY d"
                per_table.append(
                    {
                        (datetime.date.fromisoformat(str(day)) - FIRST_DAY.date()).days: n
                        for day, n in engine.rows(query)
                    }
                )
        finally:
            engine.close()
    days = set(per_table[0]) | set(per_table[1])
    return {day: (per_table[0].get(day, 0), per_table[1].get(day, 0)) for day in days}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--large", type=int, default=4, help="objects of 200k-600k lines")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--faults", type=int, default=40)
    parser.add_argument("--every", type=float, default=2.0, help="seconds between faults, at most")
    parser.add_argument("--stop-share", type=float, default=0.2, help="faults that SIGSTOP")
    parser.add_argument("--lease", type=float, default=3.0, help="lease timeout, seconds")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=900.0)
    parser.add_argument("--warehouses", default="duckdb,chdb")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--publish-during",
        action="store_true",
        help="publish into DuckDB beside the workers (faults hit it too), not after them",
    )
    args = parser.parse_args()
    rng = random.Random(os.environ.get("SEED", "probe-ingest"))
    print(machine(), flush=True)
    work = Path(tempfile.mkdtemp(prefix="probe-ingest-"))
    try:
        counts = sizes(rng, args.objects, args.large)
        made = time.monotonic()
        expected = make_logs(work / "logs", counts)
        total = sum(d + s for d, s in expected.rows.values())
        raw = sum(count * CHUNK for count in counts)
        print(
            f"{args.objects} objects, {raw} lines, {total} rows, "
            f"{sum(p.stat().st_size for p in left_objects(work / 'logs')) >> 20} MB gzip "
            f"(largest {max(counts) * CHUNK} lines); made in {time.monotonic() - made:.0f} s",
            flush=True,
        )
        kills, stops, seconds = ingest(args, work, rng)
        left = left_objects(work / "logs")
        env = {**os.environ, "PYTHONHOSTED_DATA_DIR": str(work / "data")}
        if args.publish_during:  # what is left, then the warehouse it all went to
            runs, publish_kills = publish(work / "results", during_url(work), env, rng, 6.0)
            lost, doubled = compare(expected, warehouse_rows(during_url(work)), "during")
            print(
                f"ingest with publish beside: {args.workers} workers, {kills} kills, {stops} "
                f"stops past the lease (of workers and the publisher); {len(left)} objects "
                f"left; then {runs} publish runs, {publish_kills} kills; DuckDB: {lost} "
                f"objects short, {doubled} doubled; {seconds:.0f} s",
                flush=True,
            )
            return
        lost, doubled, misplaced = check_results(work / "results", expected)
        cpu = os.times()
        print(
            f"ingest: {args.workers} workers, {kills} kills, {stops} stops past the lease; "
            f"{len(left)} objects left; results: {lost} objects short, {doubled} doubled, "
            f"{misplaced} misplaced files; {seconds:.0f} s, "
            f"CPU of children {cpu.children_user + cpu.children_system:.0f} s",
            flush=True,
        )
        for kind in args.warehouses.split(","):
            copy = work / f"results-{kind}"
            shutil.copytree(work / "results", copy)
            url = (
                f"duckdb://{work / 'warehouse.duckdb'}"
                if kind == "duckdb"
                else f"chdb://{work / 'chdb'}"
            )
            runs, publish_kills = publish(copy, url, env, rng, 6.0)
            lost, doubled = compare(expected, warehouse_rows(url), kind)
            print(
                f"publish {kind}: {runs} runs, {publish_kills} kills; {lost} objects short, "
                f"{doubled} doubled",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
