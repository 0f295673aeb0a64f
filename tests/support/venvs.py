"""Fresh virtual environments with pip in them, for the tests that install with pip.

``python -m venv`` brings pip by running ensurepip, which unpacks the pip and setuptools
wheels Python bundles and compiles every module of both: 3.3 s of CPU, four times in the
suite. The same bundled pip wheel installed by uv is 0.2 s, and the environment's ``bin/pip``
is the same pip; what is left out is setuptools, which no test installs with (pip builds an
sdist in an isolated environment of its own, and Python 3.12's venvs no longer carry it).
"""

from __future__ import annotations

import ensurepip
import subprocess
import sys
from pathlib import Path

UV = Path(sys.executable).parent / "uv"
BUNDLED = Path(ensurepip.__file__).parent / "_bundled"


def pip_venv(path: Path, env: dict[str, str] | None = None) -> Path:
    """A new virtual environment at ``path`` with the pip ensurepip would put there; its pip."""
    wheels = sorted(BUNDLED.glob("pip-*.whl"))
    assert wheels, f"no pip wheel bundled with this Python in {BUNDLED}"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, env=env)
    python = str(path / "bin/python")
    install = [str(UV), "pip", "install", "-q", "--no-config", "--no-index", "--python", python]
    subprocess.run([*install, str(wheels[-1])], check=True, env=env)
    return path / "bin/pip"
