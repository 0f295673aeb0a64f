"""Probe: every command and option of ``pythonhosted`` with hostile values.

    .venv/bin/python bench/probe_cli.py [--only SUBSTRING] [--servers with|without|only]
        [--seed N] [--limit N] [--timeout 20] [--jobs 2] [--memory-gb 8] [--list]

Each case runs as a real ``python -m pythonhosted`` process in a fresh directory (its working
directory and data dir), in a network namespace of its own holding only loopback (nothing
listens there: every store or warehouse URL "points at nothing"; no client can reach a
metadata server or any other host), as user ``nobody`` when the probe runs as root (so that
``chmod 000`` means something), with an address-space limit (``--memory-gb``) and a
timeout. A case is reported when:

- stderr is not exactly one line (a usage error's banner, a traceback, a library's own
  print), or says "Traceback";
- its exit status is not the one expected (2 for usage and configuration, 1 for failures,
  141 for a reader that left, 0 where the input is acceptable);
- it does not end within the timeout (a server given acceptable values is expected to run:
  those cases say so);
- it leaves files in its directory that were not there before (a half-written object), other
  than the data dir's own skeleton.

Prints each reported case with its stderr's first lines, then a summary: cases, reported,
CPU seconds (user+sys of the children), the CPU model and load average.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from loadgen import machine

NOBODY = 65534
BIND = "127.0.0.1:8999"  # each case has a network namespace of its own: always free
# A small warehouse with downloads (tests/support/stats_warehouse.py's) for the stats cases.
WAREHOUSE = Path(tempfile.gettempdir()) / "probe-cli-warehouse" / "warehouse.duckdb"
MB = 1 << 20
NUMBERS = ("0", "-1", str(2**64), "1e309", "nan")
CAMO_SERVE = ["camo", "serve", "-k", "k", "--bind", "127.0.0.1:8999"]
STRINGS = ("", "é☃\u202e", "x" * 100_000)  # argv cannot hold NUL or one string of 1 MB
STORE_URLS = (
    "",
    "s3://",
    "gs:/x",
    "file://relative",
    "file://",
    "file:///",
    "file:///dev/null",
    "file:///dev/full/x",
    "http://127.0.0.1:9/x",
    "ftp://127.0.0.1/x",
    "s3://bucket?endpoint=http://127.0.0.1:9",
    "gs://bucket",
    "memory://",
    "file:///proc/self/x",
    "file://{dir}/afile",
    "file://{dir}/unreadable",
    "file://{dir}/dangling",
    "é☃://x",
    "x" * 100_000,
)
WAREHOUSE_URLS = (
    "",
    "duckdb://",
    "duckdb:///",
    "duckdb:///dev/null",
    "duckdb:///dev/full",
    "duckdb://{dir}/adir",
    "duckdb://{dir}/afile",
    "duckdb://{dir}/unreadable",
    "duckdb://{dir}/dangling",
    "duckdb://{dir}/sparse",
    "duckdb://relative",
    "chdb://",
    "chdb://{dir}/afile",
    "clickhouse://",
    "clickhouse://127.0.0.1:9/db",
    "clickhouse://127.0.0.1:99999/db",
    "bigquery://",
    "bigquery://p",
    "postgres://127.0.0.1/x",
    "x" * 100_000,
)
PATHS = (
    "",
    "{dir}/adir",
    "{dir}/fifo",
    "/dev/zero",
    "/dev/full",
    "{dir}/unreadable",
    "{dir}/dangling",
    "{dir}/sparse",
    "{dir}/missing",
    "{dir}/nul.txt",
    "{dir}/mb.txt",
)
BINDS = (
    "",
    "x",
    ":",
    BIND,
    "127.0.0.1:-1",
    "127.0.0.1:99999",
    "10.255.255.1:80",
    "[::1]:x",
    "é:80",
    "x" * 100_000,
)
DURATIONS = ("0", "-1s", "1e309s", "nans", "", "x", "99999999999999999h")
DATES = ("0000-01-01", "9999-12-31", "2024-02-30", "", "x", "-1", "1e309")


@dataclass
class Case:
    """One run: the arguments, where stdin and stdout go, and what is acceptable."""

    name: str
    args: list[str]
    ok: frozenset[int] = frozenset({1, 2})
    stdin: str = "devnull"  # devnull | closed | tty | file:PATH
    stdout: str = "pipe"  # pipe | closed | full | head
    runs: bool = False  # a server: running to the timeout is acceptable
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    case: Case
    status: int | None
    stderr: str
    left: list[str]
    cpu: float
    problems: list[str]


def prepare(root: Path) -> None:
    """The hostile paths a case may name: in each case's own directory."""
    (root / "adir").mkdir()
    os.mkfifo(root / "fifo")
    (root / "afile").write_text("not a store\n")
    (root / "unreadable").write_text("secret\n")
    (root / "unreadable").chmod(0)
    (root / "dangling").symlink_to(root / "nowhere")
    with open(root / "sparse", "wb") as sparse:
        sparse.truncate(10 << 30)
    (root / "nul.txt").write_bytes(b"a\x00b\n" * 1000)
    (root / "mb.txt").write_bytes(b"y" * MB)
    if WAREHOUSE.exists():
        shutil.copy(WAREHOUSE, root / "w.duckdb")
    os.chown(root, NOBODY, NOBODY) if os.geteuid() == 0 else None
    for path in root.iterdir():
        if not path.is_symlink():
            os.chown(path, NOBODY, NOBODY) if os.geteuid() == 0 else None


def cases() -> list[Case]:
    """Every command and option, each with the values that do not fit it."""
    out: list[Case] = []

    def add(name: str, args: list[str], **kw: object) -> None:
        out.append(Case(name, args, **kw))  # type: ignore[arg-type]

    def serving(cmd: str, opt: str, value: str, **kw: object) -> None:
        """A server command given ``opt value``: running to the timeout is acceptable."""
        args = [*cmd.split(), opt, value]
        if "--bind" not in args:
            args += ["--bind", BIND]
        add(f"{cmd.removesuffix(' -k k')} {opt} {value[:24]!r}", args, runs=True, **kw)

    # The group, config and environment.
    for v in (
        *STRINGS,
        "{dir}/adir",
        "{dir}/fifo",
        "/dev/zero",
        "{dir}/unreadable",
        "{dir}/dangling",
        "{dir}/sparse",
        "{dir}/nul.txt",
        "{dir}/mb.txt",
    ):
        add(f"--config {v[:20]!r}", ["--config", v, "config"])
    for v in (*NUMBERS, *STRINGS[:2]):
        add(f"env LOG_LEVEL={v!r}", ["config"], env={"PYTHONHOSTED_LOG_LEVEL": v})
        add(
            f"env DUCKDB__MEMORY_LIMIT={v!r}",
            ["config"],
            env={"PYTHONHOSTED_DUCKDB__MEMORY_LIMIT": v},
        )
    add("unknown command", ["nope"])
    add("unknown option", ["config", "--nope"])
    for mode in ("closed", "full", "head"):
        add(f"config stdout {mode}", ["config"], stdout=mode, ok=frozenset({1, 141}))
        add(f"--help stdout {mode}", ["--help"], stdout=mode, ok=frozenset({1, 141}))
        add(f"--version stdout {mode}", ["--version"], stdout=mode, ok=frozenset({1, 141}))
    for v in PATHS:
        add(f"serve --data-dir {v[:20]!r}", ["serve", "--data-dir", v], runs=True)
        add(
            f"env DATA_DIR={v[:20]!r}",
            ["config"],
            env={"PYTHONHOSTED_DATA_DIR": v},
            ok=frozenset({0, 1, 2}),
        )

    # files
    for v in STORE_URLS:
        add(
            f"files list --store {v[:24]!r}",
            ["files", "list", "--store", v],
            ok=frozenset({0, 1, 2}),
        )
        add(f"files upload --store {v[:24]!r}", ["files", "upload", "--store", v, "{dir}/afile"])
        add(f"files yank --store {v[:24]!r}", ["files", "yank", "--store", v, "a==1"])
        add(f"files delete --store {v[:24]!r}", ["files", "delete", "--yes", "--store", v, "a==1"])
        add(
            f"files delete --archive {v[:24]!r}",
            ["files", "delete", "--yes", "--from-archive", "--archive", v, "a==1"],
        )
        serving("files serve", "--primary", v)
        serving("index serve", "--primary", v)
        serving("conveyor serve", "--docs", v)
        add(f"docs upload --store {v[:24]!r}", ["docs", "upload", "--store", v, "p", "{dir}/afile"])
        add(
            f"docs redirect --store {v[:24]!r}",
            ["docs", "redirect", "--store", v, "p", "https://example.org/"],
        )
        add(f"linehaul ingest --logs {v[:24]!r}", ["linehaul", "ingest", "--once", "--logs", v])
        add(
            f"linehaul ingest --results {v[:24]!r}",
            ["linehaul", "ingest", "--once", "--results", v],
        )
        add(
            f"linehaul publish --results {v[:24]!r}",
            ["linehaul", "publish", "--once", "--results", v],
        )
        add(f"linehaul export --to {v[:24]!r}", ["linehaul", "export", "--to", v])
        add(
            f"linehaul import --from {v[:24]!r}",
            ["linehaul", "import", "--from", v, "--warehouse", "chdb://{dir}/ch"],
        )
        add(f"linehaul metadata --store {v[:24]!r}", ["linehaul", "metadata", "--store", v])
        add(f"stats --coverage --logs {v[:24]!r}", ["stats", "--coverage", "--logs", v])
    for v in PATHS:
        add(f"files upload {v[:24]!r}", ["files", "upload", "--store", "file://{dir}/s", v])
        add(
            f"docs upload SOURCE {v[:24]!r}",
            ["docs", "upload", "--store", "file://{dir}/d", "p", v],
        )
    for v in ("", "a", "==", "a==", "==1", "a==1==2", "é==☃", "x" * 100_000, "../a==1", "a/b==1"):
        add(f"files yank {v[:24]!r}", ["files", "yank", "--store", "file://{dir}/s", v])
        add(f"files unyank {v[:24]!r}", ["files", "unyank", "--store", "file://{dir}/s", v])
        add(
            f"files delete {v[:24]!r}", ["files", "delete", "--yes", "--store", "file://{dir}/s", v]
        )
    add(
        "files delete no --yes, stdin closed",
        ["files", "delete", "--store", "file://{dir}/s", "a==1"],
        stdin="closed",
    )
    add(
        "files delete no --yes, stdin tty",
        ["files", "delete", "--store", "file://{dir}/s", "a==1"],
        stdin="tty",
    )
    for v in ("", "x", "../../etc", "é☃", "x" * 100_000):
        add(
            f"files list --project {v[:24]!r}",
            ["files", "list", "--store", "file://{dir}/s", "--project", v],
            ok=frozenset({0, 1, 2}),
        )
        add(
            f"files yank --reason {v[:24]!r}",
            ["files", "yank", "--store", "file://{dir}/s", "--reason", v, "a==1"],
        )
    add("files list --format x", ["files", "list", "--format", "x"])
    for mode in ("closed", "full", "head"):
        add(
            f"files list stdout {mode}",
            ["files", "list", "--store", "file://{dir}/s"],
            stdout=mode,
            ok=frozenset({0, 1, 141}),
        )
    for cmd in (
        ["files", "serve"],
        ["conveyor", "serve"],
        ["stats-web", "serve"],
        ["camo", "serve", "-k", "k"],
    ):
        for v in (*NUMBERS, ""):
            add(
                f"{' '.join(cmd)} --workers {v[:24]!r}",
                [*cmd, "--workers", v, "--bind", BIND],
            )
        for v in BINDS:
            add(f"{' '.join(cmd)} --bind {v[:24]!r}", [*cmd, "--bind", v], runs=True)
    for cmd in (
        ["index", "serve"],
        ["linehaul", "serve"],
        ["linehaul", "ingest"],
        ["linehaul", "publish"],
    ):
        for v in BINDS:
            add(f"{' '.join(cmd)} --bind {v[:24]!r}", [*cmd, "--bind", v], runs=True)
    for v in (*STRINGS, "ftp://x", "http://", "javascript:alert(1)"):
        serving("index serve", "--files-url", v)
        serving("conveyor serve", "--json-api", v)
        serving("conveyor serve", "--files-base-url", v)
        add(
            f"docs redirect BASE_URI {v[:24]!r}",
            ["docs", "redirect", "--store", "file://{dir}/d", "p", v],
            ok=frozenset({0, 1, 2}),
        )
    for v in ("", "..", "a/b", "é☃", "x" * 100_000):
        add(
            f"docs upload PROJECT {v[:24]!r}",
            ["docs", "upload", "--store", "file://{dir}/d", v, "{dir}/afile"],
        )
        add(
            f"docs redirect PROJECT {v[:24]!r}",
            ["docs", "redirect", "--store", "file://{dir}/d", "--remove", v],
            ok=frozenset({0, 1, 2}),
        )

    # camo
    for v in (*STRINGS, "ftp://x", "http://", "https://u:p@h/x", "javascript:alert(1)"):
        add(f"camo sign URL {v[:24]!r}", ["camo", "sign", "-k", "k", v], ok=frozenset({0, 2}))
        add(
            f"camo sign --base {v[:24]!r}",
            ["camo", "sign", "-k", "k", "--base", v, "http://x/"],
            ok=frozenset({0, 2}),
        )
        for opt in (
            "--max-size-redirect",
            "--user-agent",
            "--server-name",
            "-H",
            "--allow-network",
        ):
            serving("camo serve -k k", opt, v)
    add("camo sign no key", ["camo", "sign", "http://x/"])
    add("camo sign -k ''", ["camo", "sign", "-k", "", "http://x/"])
    for v in PATHS:
        add(
            f"camo sign --key-file {v[:24]!r}",
            ["camo", "sign", "--key-file", v, "http://x/"],
            ok=frozenset({0, 1, 2}),
        )
        for opt in ("--filter-ruleset", "--cache-dir"):
            serving("camo serve -k k", opt, v)
    for opt in (
        "--timeout",
        "--idletimeout",
        "--readtimeout",
        "--cache-default-ttl",
        "--cache-max-ttl",
        "--cache-stale-if-error",
    ):
        for v in DURATIONS:
            serving("camo serve -k k", opt, v)
    for opt in (
        "--max-size",
        "--max-redirects",
        "--cache-max-bytes",
        "--cache-memory-bytes",
        "--cache-object-max-bytes",
    ):
        for v in (*NUMBERS, ""):
            serving("camo serve -k k", opt, v)
    for v in (*NUMBERS, "", "yes-please"):
        for name in ("GOCAMO_MAX_SIZE", "GOCAMO_METRICS"):
            add(f"camo serve env {name}={v!r}", CAMO_SERVE, env={name: v}, runs=True)
    for mode in ("closed", "full", "head"):
        add(
            f"camo sign stdout {mode}",
            ["camo", "sign", "-k", "k", "http://x/"],
            stdout=mode,
            ok=frozenset({1, 141}),
        )
        add(f"camo -V stdout {mode}", ["camo", "serve", "-V"], stdout=mode, ok=frozenset({1, 141}))

    # linehaul
    for v in PATHS:
        # endless input (/dev/zero, /dev/full, a FIFO no one writes to) is read as cat reads it
        endless = v in ("{dir}/fifo", "/dev/zero", "/dev/full")
        add(
            f"linehaul parse FILE {v[:24]!r}",
            ["linehaul", "parse", v],
            ok=frozenset({0, 1, 2}),
            runs=endless,
        )
        add(
            f"linehaul parse --unprocessed {v[:24]!r}",
            ["linehaul", "parse", "--unprocessed", v, "{dir}/nul.txt"],
            ok=frozenset({0, 1, 2}),
        )
    for v in (
        "closed",
        "tty",
        "file:/dev/zero",
        "file:{dir}/mb.txt",
        "file:{dir}/nul.txt",
        "file:{dir}/sparse",
    ):
        add(
            f"linehaul parse stdin {v[:24]!r}",
            ["linehaul", "parse"],
            stdin=v,
            ok=frozenset({0, 1, 2}),
            runs=v in ("file:/dev/zero", "tty"),
        )
    for mode in ("closed", "full", "head"):
        add(
            f"linehaul parse stdout {mode}",
            ["linehaul", "parse", "{dir}/mb.txt"],
            stdout=mode,
            ok=frozenset({0, 1, 141}),
        )
    for v in WAREHOUSE_URLS:
        add(
            f"linehaul publish --warehouse {v[:24]!r}",
            ["linehaul", "publish", "--once", "--warehouse", v],
            ok=frozenset({0, 1, 2}),
        )
        add(
            f"linehaul rollup --warehouse {v[:24]!r}",
            ["linehaul", "rollup", "--rebuild", "--warehouse", v],
            ok=frozenset({0, 1, 2}),
        )
        add(
            f"linehaul export --warehouse {v[:24]!r}",
            ["linehaul", "export", "--warehouse", v, "--to", "file://{dir}/x"],
            ok=frozenset({0, 1, 2}),
        )
        add(
            f"linehaul import --warehouse {v[:24]!r}",
            ["linehaul", "import", "--warehouse", v, "--from", "file://{dir}/x"],
        )
        add(
            f"linehaul metadata --warehouse {v[:24]!r}",
            ["linehaul", "metadata", "--store", "file://{dir}/s", "--warehouse", v],
            ok=frozenset({0, 1, 2}),
        )
        serving("linehaul serve", "--warehouse", v)
        add(
            f"stats --warehouse {v[:24]!r}",
            ["stats", "p", "--warehouse", v],
            ok=frozenset({0, 1, 2}),
        )
        serving("stats-web serve", "--warehouse", v)
    add("linehaul rollup without --rebuild", ["linehaul", "rollup"])

    # stats
    wh = ["--warehouse", "duckdb://{dir}/w.duckdb"]
    for v in DATES:
        add(f"stats --start {v!r}", ["stats", "demo-pkg", *wh, "--start", v], ok=frozenset({0, 2}))
        add(f"stats --end {v!r}", ["stats", "demo-pkg", *wh, "--end", v], ok=frozenset({0, 2}))
    add(
        "stats --end before --start",
        ["stats", "demo-pkg", *wh, "--start", "2024-02-02", "--end", "2024-01-01"],
    )
    add(
        "stats 10,000 days --by day",
        ["stats", "demo-pkg", *wh, "--start", "1990-01-01", "--end", "2017-05-19", "--by", "day"],
        ok=frozenset({0}),
    )
    add(
        "stats 0001..9999 --by day",
        ["stats", "demo-pkg", *wh, "--start", "0001-01-01", "--end", "9999-12-31", "--by", "day"],
        ok=frozenset({0, 2}),
    )
    for v in (*NUMBERS, "", str(10**9)):
        add(f"stats --days {v!r}", ["stats", "demo-pkg", *wh, "--days", v], ok=frozenset({0, 2}))
        add(f"stats --top {v!r}", ["stats", *wh, "--top", v], ok=frozenset({0, 2}))
    for v in (
        "",
        "nope",
        "day,day",
        "day,,week",
        "project",
        "day,week,month,project,version,file,file-type,type,installer",
        ",",
        "DAY",
        "x" * 100_000,
    ):
        add(f"stats --by {v[:24]!r}", ["stats", "demo-pkg", *wh, "--by", v], ok=frozenset({0, 2}))
    add(
        "stats --by day --by day",
        ["stats", "demo-pkg", *wh, "--by", "day", "--by", "day"],
        ok=frozenset({0, 2}),
    )
    for v in ("", "x", "JSON", "é"):
        add(f"stats --format {v!r}", ["stats", "demo-pkg", *wh, "--format", v])
    for opt in ("--author", "--maintainer", "--org"):
        for v in (*STRINGS, "%", "'; drop table x; --", "a\\"):
            add(f"stats {opt} {v[:24]!r}", ["stats", *wh, opt, v], ok=frozenset({0, 1, 2}))
    for v in ("", "..", "%", "'", "x" * 100_000, "é☃"):
        add(f"stats PROJECT {v[:24]!r}", ["stats", v, *wh], ok=frozenset({0, 1, 2}))
    add("stats no project", ["stats", *wh])
    add("stats --top with project", ["stats", "demo-pkg", *wh, "--top", "3"])
    add("stats --all-time --days", ["stats", "demo-pkg", *wh, "--all-time", "--days", "3"])
    add("stats --coverage --top", ["stats", *wh, "--coverage", "--top", "3"])
    for mode in ("closed", "full", "head"):
        add(
            f"stats stdout {mode}",
            ["stats", "demo-pkg", *wh],
            stdout=mode,
            ok=frozenset({0, 1, 141}),
        )
    for v in (*NUMBERS, ""):
        add(
            f"stats-web serve --max-pending {v!r}",
            ["stats-web", "serve", "--bind", BIND, "--max-pending", v],
        )
    return out


def wrap(args: list[str]) -> list[str]:
    """The command in a network namespace holding only loopback, as nobody when root."""
    cmd = [sys.executable, "-m", "pythonhosted", *args]
    if os.geteuid() != 0:
        return cmd
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *setpriv, *cmd]


def limits(memory: int) -> Callable[[], None]:
    def apply() -> None:
        os.setpgrp()
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def run_case(case: Case, timeout: float, memory: int) -> Outcome:
    root = Path(tempfile.mkdtemp(prefix="probe-cli-"))
    try:
        return _run_in(case, root, timeout, memory)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _run_in(case: Case, root: Path, timeout: float, memory: int) -> Outcome:
    prepare(root)
    before = listing(root)
    args = [a.replace("{dir}", str(root)) for a in case.args]
    env = {
        **os.environ,
        "PYTHONHOSTED_DATA_DIR": str(root / "var"),
        "HOME": str(root),
        **{k: v.replace("{dir}", str(root)) for k, v in case.env.items()},
    }
    env.pop("PYTHONHOSTED_CONFIG", None)
    stdin: int | None = subprocess.DEVNULL
    opened: list[int] = []
    pass_fds: tuple[int, ...] = ()
    if case.stdin.startswith("file:"):
        stdin = os.open(case.stdin[5:].replace("{dir}", str(root)), os.O_RDONLY)
        opened.append(stdin)
    elif case.stdin == "tty":
        primary, secondary = os.openpty()
        opened += [primary, secondary]
        stdin = secondary
    stdout: int | None = subprocess.PIPE
    if case.stdout == "full":
        stdout = os.open("/dev/full", os.O_WRONLY)
        opened.append(stdout)
    closed_fds = [fd for fd, mode in ((0, case.stdin), (1, case.stdout)) if mode == "closed"]
    preexec = limits(memory)

    def start() -> None:
        preexec()
        for fd in closed_fds:
            os.close(fd)

    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        wrap(args),
        stdin=stdin,
        stdout=stdout,
        stderr=subprocess.PIPE,
        cwd=root,
        env=env,
        preexec_fn=start,
        pass_fds=pass_fds,
    )
    for fd in opened:
        os.close(fd)
    hung = False
    if case.stdout == "head" and proc.stdout is not None:
        proc.stdout.read(1)
        proc.stdout.close()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        hung = True
        os.killpg(proc.pid, 9)
        _, err = proc.communicate()
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    text = err.decode(errors="replace")
    status = None if hung else (128 - proc.returncode if proc.returncode < 0 else proc.returncode)
    problems = []
    if hung and not case.runs:
        problems.append("hangs")
    if "Traceback" in text:
        problems.append("traceback")
    lines = text.splitlines()
    if not hung and len(lines) != 1 and status != 0 and status != 141:
        problems.append(f"{len(lines)} stderr lines")
    # a server that started, or a reader of one byte that left after the last write
    fine = status == 0 and (case.runs or case.stdout == "head")
    if not hung and status not in case.ok and not fine:
        problems.append(f"status {status}")
    # stores, warehouses and outputs the case names (a dangling link's target included)
    # ("adir": an empty directory, a legitimate data or cache dir for the serve commands)
    made = ("var", "s", "d", "x", "ch", "w.duckdb", "missing", "nowhere", "relative", "adir")
    left = sorted(p for p in listing(root) - before if p.split("/")[0] not in made)
    if left:
        problems.append("left " + ", ".join(left[:5]))
    return Outcome(case, status, text, left, cpu, problems)


def build_warehouse() -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from support.stats_warehouse import build, event_lines

    build(WAREHOUSE.parent, event_lines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="cases whose name contains this")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--memory-gb", type=float, default=8.0)
    parser.add_argument(
        "--servers",
        choices=("with", "without", "only"),
        default="with",
        help="whether to run the cases of the serve commands (slow: they run"
        " to the timeout when they accept what they are given)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="run the cases in an order shuffled by this seed (0: as listed)",
    )
    parser.add_argument("--limit", type=int, default=0, help="run only the first N cases")
    parser.add_argument("--list", action="store_true", help="print the cases, run none")
    opts = parser.parse_args()
    chosen = [
        c
        for c in cases()
        if opts.only in c.name
        and {"with": True, "without": "serve" not in c.args, "only": "serve" in c.args}[
            opts.servers
        ]
    ]
    if opts.seed:
        random.Random(opts.seed).shuffle(chosen)
    if opts.limit:
        chosen = chosen[: opts.limit]
    if opts.list:
        print("\n".join(c.name for c in chosen))
        return
    if not WAREHOUSE.exists():
        build_warehouse()
    started = time.monotonic()
    reported = 0
    cpu = 0.0
    memory = int(opts.memory_gb * (1 << 30))
    with ThreadPoolExecutor(opts.jobs) as pool:
        for outcome in pool.map(lambda c: run_case(c, opts.timeout, memory), chosen):
            cpu += outcome.cpu
            if outcome.problems:
                reported += 1
                head = "\n    ".join(outcome.stderr.splitlines()[:6])
                print(
                    f"[{outcome.case.name}] {'; '.join(outcome.problems)}\n    {head}", flush=True
                )
    print(
        f"{len(chosen)} cases, {reported} reported, {cpu:.0f} s CPU, "
        f"{time.monotonic() - started:.0f} s wall; {machine()}"
    )


if __name__ == "__main__":
    main()
