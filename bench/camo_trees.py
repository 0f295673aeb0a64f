"""Benchmark: camo's CPU per miss (and hit) through its server, source trees alternated.

    .venv/bin/python bench/camo_trees.py --src A/src --src B/src [--rounds 4] [--duration 6]
                                         [--connections 64] [--kind miss|hit]

What ``bench/camo_app.py`` leaves out and ``bench/camo.py`` cannot compare: the same request
through ``camo serve`` (granian, the drain, the shell) for several source trees in one run.
One nginx upstream (2 workers) serves the 20 KB PNG; each round drives an nginx reverse proxy
(1 worker) and then, for each tree in turn, a ``camo serve`` of one process whose
``PYTHONPATH`` puts that tree first, with wrk (``--connections``, ``--duration`` seconds):
requests/s, the ratio to that round's nginx, and CPU per request of the proxy's processes.
Trees are interleaved within each round so the machine's load drifts over all of them alike;
the medians per tree are printed at the end. Everything listens on 127.0.0.1 temporary ports;
every process is started here (in its own process group) and stopped by PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from statistics import median

from camo import KEY, PNG_BYTES, PROXY_SERVER, UPSTREAM_SERVER, camo_serve, nginx, process
from loadgen import machine, wrk
from pythonhosted.camo import sign_url
from pythonhosted.web.server import Bind, free_port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", action="append", required=True, help="a source tree (repeat)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--kind", choices=("miss", "hit"), default="miss")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install nginx wrk")
    here = Path(__file__).resolve().parent
    results: dict[str, list[tuple[float, float, float]]] = {tree: [] for tree in args.src}
    with tempfile.TemporaryDirectory(prefix="camo-trees-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)  # nginx workers run unprivileged and must read www/
        (tmp / "www").mkdir()
        (tmp / "www" / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(PNG_BYTES - 8))
        upstream, proxy = Bind("127.0.0.1", free_port()), Bind("127.0.0.1", free_port())
        conf = UPSTREAM_SERVER.format(port=upstream.port, tmp=tmp, rate="2k")
        stack.enter_context(nginx(tmp, "upstream", conf, upstream, 2))
        conf = PROXY_SERVER.format(port=proxy.port, upstream=upstream.port)
        nginx_pid = stack.enter_context(nginx(tmp, "proxy", conf, proxy, 1))
        signed = sign_url(f"{upstream.url()}/img.png", KEY)
        print(machine())
        for round_ in range(1, args.rounds + 1):
            reference = wrk(f"{proxy.url()}/img.png", nginx_pid, args.connections, args.duration)
            line = f"round {round_}: nginx {reference.rps:.0f} req/s ({reference.cpu_us:.0f} us)"
            for number, tree in enumerate(args.src):
                bind = Bind("127.0.0.1", free_port())
                cache = tmp / f"cache-{round_}-{number}" if args.kind == "hit" else None
                env = {
                    **os.environ,
                    "PYTHONHOSTED_CAMO_KEY": KEY.decode(),
                    "PYTHONPATH": f"{tree}:{here}",
                }
                with process(camo_serve(bind, 1, cache), bind, env) as pid:
                    urllib.request.urlopen(bind.url() + signed).close()  # warm: pool, cache
                    run = wrk(bind.url() + signed, pid, args.connections, args.duration)
                ratio = run.rps / reference.rps
                results[tree].append((run.cpu_us, ratio, reference.cpu_us))
                line += f"; tree {number + 1} {ratio:.2f}x ({run.cpu_us:.0f} us)"
            print(f"{line}; load {os.getloadavg()[0]:.1f}", flush=True)
    for number, tree in enumerate(args.src):
        cpu = median(cpu for cpu, _, _ in results[tree])
        ratio = median(ratio for _, ratio, _ in results[tree])
        print(f"tree {number + 1} {tree}: median {cpu:.0f} us per {args.kind}, {ratio:.2f}x nginx")


if __name__ == "__main__":
    main()
