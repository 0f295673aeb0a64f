"""Benchmark: linehaul's line parser, ours against PyPI's ``linehaul`` 1.0.3.

    .venv/bin/python bench/linehaul.py [--lines 200000] [--reference-seconds 10] [--seed 1]

Generates one corpus shaped like a real batch (about 90% downloads, 10% simple-index
requests; pip and uv JSON user agents drawn with Zipf-like repetition from a few thousand
distinct strings, plus the other families and some ignored bots; timestamps a few hundred
lines per second), then times the whole corpus through ``pythonhosted.linehaul.parse`` (cold
caches) and as much of it as fits in ``--reference-seconds`` through the reference's
``linehaul.events.parser.parse`` (it manages a few thousand lines/s, so the full corpus would
take minutes), in interleaved rounds, counting CPU time. Both are also timed to a serialised
JSON row (ours: orjson; the reference: cattrs + json, as its cloud function). Prints lines/s
and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
import warnings
from collections.abc import Callable
from email.utils import formatdate
from pathlib import Path

# This script is named linehaul.py, so its own directory must not shadow the reference package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]

import cattrs  # noqa: E402
import orjson  # noqa: E402
from linehaul.events import parser as reference  # noqa: E402

from pythonhosted.linehaul import UnprocessableLine, parse  # noqa: E402
from pythonhosted.linehaul.events import TIMESTAMPS  # noqa: E402
from pythonhosted.linehaul.useragents import KNOWN  # noqa: E402

START = 1_610_052_894  # Thu, 07 Jan 2021 20:54:54 GMT
PYTHONS = ["3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.12.2", "3.13.0", "2.7.18"]
DISTROS = [
    {
        "name": "Ubuntu",
        "version": "22.04",
        "id": "jammy",
        "libc": {"lib": "glibc", "version": "2.35"},
    },
    {
        "name": "Ubuntu",
        "version": "20.04",
        "id": "focal",
        "libc": {"lib": "glibc", "version": "2.31"},
    },
    {
        "name": "Debian GNU/Linux",
        "version": "12",
        "id": "bookworm",
        "libc": {"lib": "glibc", "version": "2.36"},
    },
    {"name": "Alpine Linux", "version": "3.19.0", "libc": {"lib": "musl", "version": "1.2.4"}},
    {"name": "macOS", "version": "14.2.1"},
    None,
]
SYSTEMS = [
    ("Linux", "6.5.0-1016-azure"),
    ("Linux", "5.15.0-91-generic"),
    ("Darwin", "23.2.0"),
    ("Windows", "10"),
]
OTHER_AGENTS = [
    "bandersnatch/6.5.0 (CPython 3.11.7-final0, Linux x86_64)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0",
    "python-requests/2.31.0",
    "poetry/1.7.1 CPython/3.11.7 Linux/6.5.0",
    "pdm/2.11.1 CPython/3.12.1",
    "twine/4.0.2 CPython/3.11.7",
    "Artifactory/7.71.5",
    "devpi-server/6.10.0 (py3.11.7; linux)",
    "curl/8.4.0",
    "pip/1.5.6 CPython/2.7.6 Linux/3.13.0",
    "conda/23.11.0 requests/2.31.0 CPython/3.11.5 Linux/6.2.0 ubuntu/22.04 glibc/2.35",
    "Go-http-client/1.1",
    "Datadog Agent/7.50.0",
    "(null)",
    "some unknown robot/1.0",
]
PROJECTS = [f"project-{n}" for n in range(2000)]


def _pip_agent(rng: random.Random) -> str:
    installer = rng.choice(["pip", "pip", "pip", "uv"])
    version = rng.choice(
        ["23.3.2", "24.0", "23.0.1", "21.3.1"] if installer == "pip" else ["0.1.24", "0.4.30"]
    )
    python = rng.choice(PYTHONS)
    system = rng.choice(SYSTEMS)
    data = {
        "installer": {"name": installer, "version": version},
        "python": python,
        "implementation": {"name": "CPython", "version": python},
        "distro": rng.choice(DISTROS),
        "system": {"name": system[0], "release": system[1]},
        "cpu": rng.choice(["x86_64", "aarch64", "arm64", "AMD64"]),
        "openssl_version": rng.choice(["OpenSSL 3.0.2 15 Mar 2022", "OpenSSL 1.1.1w  11 Sep 2023"]),
        "setuptools_version": rng.choice(["69.0.3", "68.2.2", "65.5.0"]),
        "rustc_version": rng.choice([None, "1.74.1"]),
        "ci": rng.choice([True, None]),
    }
    if installer == "uv" and rng.random() < 0.5:
        data["installer"]["subcommand"] = ["pip", "install"]
    return f"{installer}/{version} {json.dumps(data, separators=(',', ':'))}"


def corpus(lines: int, seed: int) -> list[str]:
    """``lines`` log lines, deterministic for a seed."""
    rng = random.Random(seed)
    agents = [_pip_agent(rng) for _ in range(3000)] + OTHER_AGENTS
    weights = [1 / (rank + 1) for rank in range(len(agents))]
    rng.shuffle(weights)
    chosen = rng.choices(agents, weights, k=lines)
    out = []
    for index, agent in enumerate(chosen):
        ts = formatdate(START + index // 300, usegmt=True)
        project = rng.choice(PROJECTS)
        country = rng.choice(["US", "DE", "CN", "IN", ""])
        if rng.random() < 0.9:
            filename = f"{project.replace('-', '_')}-1.{index % 7}.0-py3-none-any.whl"
            out.append(
                f"download|{ts}|{country}|/packages/ab/cd/{'e' * 60}/{filename}|TLSv1.3|"
                f"TLS_AES_128_GCM_SHA256|{project}|1.{index % 7}.0|bdist_wheel|{agent}"
            )
        else:
            out.append(
                f"simple|{ts}|{country}|/simple/{project}/|TLSv1.3|TLS_AES_256_GCM_SHA384||||{agent}"
            )
    return out


def _ours(line: str) -> object:
    try:
        return parse(line)
    except UnprocessableLine:
        return None


def _ours_json(line: str) -> object:
    row = _ours(line)
    return None if row is None else orjson.dumps(row)


_CONVERTER = cattrs.Converter()


def _reference(line: str) -> object:
    return reference.parse(line)


def _reference_json(line: str) -> object:
    event = reference.parse(line)
    if event is None:
        return None
    row = _CONVERTER.unstructure(event)
    row["timestamp"] = event.timestamp.strftime("%Y-%m-%d %H:%M:%S +00:00")
    return json.dumps(row)


def _compare(
    ours: Callable[[str], object], theirs: Callable[[str], object], lines: list[str], budget: float
) -> tuple[float, float]:
    """Lines per CPU second for each, measured in interleaved rounds.

    CPU time (not wall time) and interleaving keep a busy, shared machine from favouring
    either side. Ours runs the whole corpus once with cold caches; the reference runs on the
    same lines from the start of each round's chunk, for about ``budget`` seconds in total.
    """
    KNOWN.clear()
    TIMESTAMPS.clear()
    rounds = 10
    chunk = -(-len(lines) // rounds)
    done = [0, 0]
    spent = [0.0, 0.0]
    for start in range(0, len(lines), chunk):
        part = lines[start : start + chunk]
        began = time.process_time()
        for line in part:
            ours(line)
        spent[0] += time.process_time() - began
        done[0] += len(part)
        began = time.process_time()
        for line in part:
            theirs(line)
            done[1] += 1
            if time.process_time() - began > budget / rounds:
                break
        spent[1] += time.process_time() - began
    return done[0] / spent[0], done[1] / spent[1]


def _machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for info in cpuinfo:
            if info.startswith("model name"):
                model = info.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()}"


def main() -> None:
    """Parse flags, build the corpus, print the results."""
    flags = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    flags.add_argument("--lines", type=int, default=200_000)
    flags.add_argument("--reference-seconds", type=float, default=10.0)
    flags.add_argument("--seed", type=int, default=1)
    args = flags.parse_args()
    warnings.filterwarnings("ignore", message=".*parseAll")
    lines = corpus(args.lines, args.seed)
    agents = len({line.split("|", 9)[9] for line in lines})
    print(f"corpus: {len(lines)} lines, {agents} distinct user agents")
    print(f"machine: {_machine()}")
    pairs = (("parse", _ours, _reference), ("parse+json", _ours_json, _reference_json))
    for label, ours, theirs in pairs:
        fast, slow = _compare(ours, theirs, lines, args.reference_seconds)
        print(
            f"{label:<11} ours {fast:>10,.0f} lines/s   reference {slow:>8,.0f} lines/s"
            f"   ratio {fast / slow:6.1f}x"
        )


if __name__ == "__main__":
    main()
