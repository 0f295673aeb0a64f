"""Probe: the files edge's download log on a real full disk (ENOSPC, not a file-size limit).

Needs a mount namespace of its own (root in a container, or ``unshare -Urm``):

    unshare -m .venv/bin/python bench/probe_enospc.py [--downloads 2000] [--where logs|spool|both]

Mounts a 1 MiB tmpfs at a fresh directory (visible only in this namespace), fills it, and
puts the log store (``--where logs``), the spool (``spool``) or both there; starts ``files
serve``, makes ``--downloads`` downloads, frees the disk, stops the edge with SIGTERM and
counts the lines shipped: each download must be one served and one download line, none
twice. Prints what the edge said.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from pythonhosted.web.server import free_port
from support.edge import SAMPLES, seed


def lines_in(logs: Path) -> list[str]:
    found: list[str] = []
    for path in sorted((logs / "downloads").rglob("*.log.gz")):
        found += gzip.decompress(path.read_bytes()).decode().splitlines()
    return found


async def fetch(url: str, count: int) -> list[int]:
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        turns = asyncio.Semaphore(20)

        async def one(number: int) -> int:
            async with turns:
                try:
                    answer = await client.get(f"{SAMPLES['wheel'].path}?n={number}")
                except httpx.HTTPError:
                    return 0  # no answer
                return answer.status_code

        return list(await asyncio.gather(*(one(n) for n in range(count))))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--downloads", type=int, default=2000)
    parser.add_argument("--where", choices=("logs", "spool", "both"), default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="probe-enospc-") as tmp:
        root = Path(tmp)
        full = root / "full"
        full.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(full)], check=True)
        try:
            primary = f"file://{root}/primary"
            seed(primary)
            logs = (full if args.where in ("logs", "both") else root) / "logs"
            spool = (full if args.where in ("spool", "both") else root) / "spool"
            filler = full / "filler"
            with filler.open("wb", buffering=0) as out:
                try:
                    while True:
                        out.write(b"\0" * 4096)
                except OSError as exc:
                    print(f"filled: {exc}")
            port = free_port()
            env = {
                **os.environ,
                "PYTHONHOSTED_DATA_DIR": str(root / "data"),
                "PYTHONHOSTED_FILES__LOG_SPOOL_DIR": str(spool),
                "PYTHONHOSTED_FILES__LOG_PERIOD": "1",
                "PYTHONHOSTED_FILES__LOG_SPOOL_SYNC_INTERVAL": "0.2",
            }
            command = [sys.executable, "-m", "pythonhosted", "files", "serve"]
            command += ["--primary", primary, "--logs", f"file://{logs}"]
            command += ["--bind", f"127.0.0.1:{port}"]
            process = subprocess.Popen(
                command, env=env, stderr=subprocess.PIPE, start_new_session=True
            )
            try:
                url = f"http://127.0.0.1:{port}"
                deadline = time.monotonic() + 60
                while True:
                    try:
                        httpx.get(url + "/_health", timeout=1)
                        break
                    except httpx.HTTPError:
                        if time.monotonic() > deadline or process.poll() is not None:
                            raise SystemExit("the edge did not start") from None
                        time.sleep(0.1)
                statuses = asyncio.run(fetch(url, args.downloads))
                print(f"answers: { {s: statuses.count(s) for s in set(statuses)} }")
                time.sleep(3)  # a few shipping periods on the full disk
                print(f"lines while full: {len(lines_in(logs)) if logs.exists() else 0}")
                filler.unlink()
                time.sleep(3)
                process.send_signal(signal.SIGTERM)
                _, err = process.communicate(timeout=120)
            finally:
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
            found = lines_in(logs)
            served = [line for line in found if line.startswith("served|")]
            downloads = [line for line in found if line.startswith("download|")]
            unique = {line.split("|")[3] for line in served if len(line.split("|")) > 3}
            print(
                f"exit {process.returncode}; lines {len(found)}: served {len(served)}, "
                f"downloads {len(downloads)}, distinct served {len(unique)}, "
                f"wanted {args.downloads} each"
            )
            said = err.decode().splitlines()
            print(f"the edge said {len(said)} lines:")
            for line in said[:15]:
                print("  " + line[:240])
        finally:
            subprocess.run(["umount", str(full)], check=False)


if __name__ == "__main__":
    main()
