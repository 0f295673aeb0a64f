"""Small, valid distributions built in memory: the sample data ``serve`` starts with.

Real enough for pip and uv: a pure-Python wheel with METADATA, WHEEL and RECORD, and an sdist
with PKG-INFO and a pyproject.toml.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import random
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from packaging.utils import canonicalize_name


def _metadata(
    name: str,
    version: str,
    requires: list[str],
    requires_python: str,
    extra: Sequence[str] = (),
    description: str = "",
    summary: str | None = None,
) -> str:
    about = f"Sample package {name}" if summary is None else summary
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        *([f"Summary: {about}"] if about else []),
        f"Requires-Python: {requires_python}",
    ]
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    lines += extra
    return "\n".join(lines) + "\n\n" + description


def build_wheel(
    name: str,
    version: str,
    *,
    requires: list[str] | None = None,
    requires_python: str = ">=3.8",
    module_source: str | None = None,
    metadata: Sequence[str] = (),
    description: str = "",
    summary: str | None = None,
) -> tuple[str, bytes]:
    """(filename, bytes) of a py3-none-any wheel with one module named after the project;
    ``metadata``: more core metadata lines (``Classifier: ...``), ``description`` its body,
    ``summary`` its Summary ("Sample package NAME" unless given; "" for none)."""
    module = canonicalize_name(name).replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    core = _metadata(name, version, requires or [], requires_python, metadata, description, summary)
    files = {
        f"{module}/__init__.py": module_source or f'__version__ = "{version}"\n',
        f"{dist_info}/METADATA": core,
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: pythonhosted\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
    }
    record_lines = []
    for path, text in files.items():
        digest = hashlib.sha256(text.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record_lines.append(f"{path},sha256={encoded},{len(text.encode())}")
    record_lines.append(f"{dist_info}/RECORD,,")
    files[f"{dist_info}/RECORD"] = "\n".join(record_lines) + "\n"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, text in files.items():
            info = zipfile.ZipInfo(path, date_time=(2024, 1, 1, 0, 0, 0))
            archive.writestr(info, text)
    return f"{module}-{version}-py3-none-any.whl", buffer.getvalue()


def build_sdist(
    name: str,
    version: str,
    *,
    requires: list[str] | None = None,
    requires_python: str = ">=3.8",
    metadata: Sequence[str] = (),
    description: str = "",
    summary: str | None = None,
) -> tuple[str, bytes]:
    """(filename, bytes) of a .tar.gz sdist buildable by any PEP 517 front end (setuptools);
    ``metadata``, ``description`` and ``summary`` as for :func:`build_wheel` (PKG-INFO only)."""
    module = canonicalize_name(name).replace("-", "_")
    root = f"{module}-{version}"
    dependencies = ", ".join(f'"{requirement}"' for requirement in requires or [])
    core = _metadata(name, version, requires or [], requires_python, metadata, description, summary)
    files = {
        f"{root}/PKG-INFO": core,
        f"{root}/pyproject.toml": (
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
            f'requires-python = "{requires_python}"\ndependencies = [{dependencies}]\n'
        ),
        f"{root}/{module}/__init__.py": f'__version__ = "{version}"\n',
    }
    buffer = io.BytesIO()
    # mtime=0 in the gzip header too: the same inputs always give the same bytes (and key).
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mtime = 1704067200
            archive.addfile(info, io.BytesIO(data))
    return f"{root}.tar.gz", buffer.getvalue()


def write_large_wheel(directory: Path, name: str, version: str, payload: int) -> Path:
    """A valid wheel (requiring Python 3.9) with one stored member of ``payload`` bytes that do
    not compress (a random MiB repeated: deflate's window is 32 KiB), written into
    ``directory`` a MiB at a time: uploads of gigabytes, without holding them."""
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    path = directory / f"{module}-{version}-py3-none-any.whl"
    block = random.Random(payload).randbytes(2**20)
    directory.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.9\n\n",
        )
        archive.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
        with archive.open(f"{module}/payload.bin", "w", force_zip64=True) as member:
            for start in range(0, payload, len(block)):
                member.write(block[: payload - start])
    return path


def wheel_of_size(name: str, size: int) -> tuple[str, bytes]:
    """A valid wheel of about ``size`` bytes whose payload does not compress (stored): what
    the size-dependent tests and benchmarks serve."""
    module = name.replace("-", "_")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{module}/payload.bin", os.urandom(size))
        archive.writestr(
            f"{module}-1.0.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n\n",
        )
        archive.writestr(f"{module}-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
    return f"{module}-1.0-py3-none-any.whl", buffer.getvalue()
