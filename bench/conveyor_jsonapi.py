"""CPU per JSON API answer read into files: parsed whole (orjson) vs read while it arrives.

    .venv/bin/python bench/conveyor_jsonapi.py [--runs 5]

Answers shaped like Warehouse's (every field of a file, a README in ``info``): a small project
(~100 KB, parsed whole by conveyor) and a big one (~12 MB, read in 64 KB chunks). Both ways
run on both sizes, so the table shows what reading while arriving costs; the minimum over
``--runs`` is reported (the machine is shared). In-process, no network.
"""

from __future__ import annotations

import argparse
import resource
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from loadgen import machine
from pythonhosted.conveyor.jsonapi import BODY_CHUNK
from pythonhosted.conveyor.projectfiles import ProjectFiles
from pythonhosted.conveyor.projectjson import ProjectFilesReader, parse_project


def warehouse_file(project: str, version: str, n: int) -> dict[str, Any]:
    tag = f"cp3{n % 10}-cp3{n % 10}-manylinux_2_17_x86_64.manylinux2014_x86_64"
    filename = f"{project}-{version}-{n}-{tag}.whl"
    return {
        "comment_text": "",
        "digests": {"blake2b_256": "ab" * 32, "md5": "cd" * 16, "sha256": "ef" * 32},
        "downloads": -1,
        "filename": filename,
        "has_sig": False,
        "md5_digest": "cd" * 16,
        "packagetype": "bdist_wheel",
        "python_version": f"cp3{n % 10}",
        "requires_python": ">=3.8",
        "size": 123456,
        "upload_time": "2024-01-01T00:00:00",
        "upload_time_iso_8601": "2024-01-01T00:00:00.000000Z",
        "url": f"https://files.pythonhosted.org/packages/ab/cd/{'ef' * 28}/{filename}",
        "yanked": False,
        "yanked_reason": None,
    }


def answer(releases: int, per_release: int) -> bytes:
    files = {
        f"1.{r}.0": [warehouse_file("proj", f"1.{r}.0", n) for n in range(per_release)]
        for r in range(releases)
    }
    info = {"name": "proj", "description": "A README. " * 2000}
    latest = files[f"1.{releases - 1}.0"]
    return orjson.dumps({"info": info, "releases": files, "urls": latest})


def streamed(body: bytes) -> ProjectFiles:
    reader = ProjectFilesReader()
    for start in range(0, len(body), BODY_CHUNK):
        reader.feed(body[start : start + BODY_CHUNK])
    return reader.close()


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def per_parse(parse: Callable[[bytes], ProjectFiles], body: bytes, runs: int) -> float:
    """The least CPU seconds one parse took over ``runs`` batches."""
    repeats = max(1, 2_000_000 // len(body))
    best = float("inf")
    for _ in range(runs):
        started = cpu()
        for _ in range(repeats):
            parse(body)
        best = min(best, (cpu() - started) / repeats)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    print(machine(), f"runs {runs}")
    print("| answer | files | whole (orjson) ms | while arriving (ijson) ms | ratio |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, shape in (("small", (20, 5)), ("big", (300, 50))):
        body = answer(*shape)
        whole, arriving = parse_project(body), streamed(body)
        assert len(whole) == len(arriving) == shape[0] * shape[1]
        old = per_parse(parse_project, body, runs) * 1000
        new = per_parse(streamed, body, runs) * 1000
        size = f"{len(body) / 1000:,.0f} KB" if len(body) < 10**6 else f"{len(body) / 1e6:.1f} MB"
        print(f"| {label}, {size} | {len(whole)} | {old:.2f} | {new:.2f} | {new / old:.1f}x |")


if __name__ == "__main__":
    main()
