"""Benchmark: a download and an index page while a crowd of stats-web questions waits.

    .venv/bin/python bench/isolation.py [--runs 3] [--crowd 16] [--read-wait 10]
                                        [--reference OTHER_CHECKOUT/src]

``serve``'s wiring in one process and one event loop (the files edge with the index under
``/simple``, the stats web beside them, built by their own factories): a small warehouse
(the tests' one), ``--crowd`` distinct cold stats questions (``stats_web.max_pending``'s
default, 16) sent while another process holds the warehouse writer's lock (a publish from
another host or a rollup rebuild: each question waits up to ``--read-wait`` seconds, the
``stats_web.read_wait`` default), then a cold download of a wheel from the ``file://``
primary store and a cold index page, at once, timed from the client. Each run is a fresh
process (every lookup cold); ``--reference`` runs another checkout's code the same way,
alternating run by run. The victims' latency without the crowd is the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from loadgen import machine  # noqa: E402  (bench/'s shared helpers)

TESTS = HERE.parent / "tests"


def one_run(crowd: int, read_wait: float) -> dict[str, float]:
    """In a fresh process: the victims' latency (s) with and without the crowd."""
    sys.path.insert(0, str(TESTS))
    import httpx

    from pythonhosted.web.server import running
    from support.serve_crowd import waiting_crowd, wired

    found: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="isolation-bench-") as tmp:
        wiring = wired(Path(tmp), max_pending=crowd, read_wait=read_wait)
        wheels = sorted(wiring.files.rglob("*.whl"))
        paths = [f"/{wheel.relative_to(wiring.files)}" for wheel in wheels]
        with running(wiring.app) as base, httpx.Client(base_url=base, timeout=120) as client:
            assert client.get("/api/packages/demo-pkg/recent").status_code == 200

            def timed(path: str) -> float:
                started = time.monotonic()
                assert client.get(path).status_code == 200
                return time.monotonic() - started

            def victims(label: str, path: str, project: str) -> None:
                """Both at once, so neither is timed after the other's wait."""
                with ThreadPoolExecutor(2) as pool:
                    download = pool.submit(timed, path)
                    page = pool.submit(timed, f"/simple/{project}/")
                    found[f"download {label}"] = download.result()
                    found[f"index page {label}"] = page.result()

            victims("alone", paths[0], "demo-pkg")
            with waiting_crowd(base, wiring, crowd):
                victims("under the crowd", paths[-1], "other")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--crowd", type=int, default=16)
    parser.add_argument("--read-wait", type=float, default=10.0)
    parser.add_argument("--reference", help="another checkout's src, run alternately")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(args.crowd, args.read_wait)))
        return
    print(f"{machine()}; load averages before: {os.getloadavg()}")
    sources = {"this checkout": None, "reference": args.reference}
    results: dict[str, list[dict[str, float]]] = {}
    for _ in range(args.runs):
        for name, src in sources.items():
            if name == "reference" and src is None:
                continue
            env = dict(os.environ)
            if src is not None:
                env["PYTHONPATH"] = src
            command = [sys.executable, __file__, "--one", "--crowd", str(args.crowd)]
            command += ["--read-wait", str(args.read_wait)]
            out = subprocess.run(command, env=env, capture_output=True, text=True)
            if out.returncode:
                sys.exit(f"a run of {name} failed:\n{out.stderr}")
            results.setdefault(name, []).append(json.loads(out.stdout.splitlines()[-1]))
    for name, runs in results.items():
        print(f"{name} ({len(runs)} runs, crowd {args.crowd}, read_wait {args.read_wait:g} s):")
        for key in runs[0]:
            values = [run[key] for run in runs]
            print(
                f"  {key:28} median {statistics.median(values) * 1000:9.1f} ms"
                f"  max {max(values) * 1000:9.1f} ms"
            )
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
