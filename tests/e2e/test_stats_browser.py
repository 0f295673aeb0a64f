"""The stats pages in a real browser: Debian's chromium, headless, driven by Playwright,
against a running ``pythonhosted serve`` after real pip and uv installs through it.

Everything is on loopback: serve (its own process group, free ports for every service),
pip and uv isolated from the machine's configuration, and chromium with a fresh profile and
its background networking off. Screenshots at 360 px and desktop widths are saved under the
test's tmp dir.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pythonhosted.samples import build_wheel
from pythonhosted.web.server import Bind, free_port, wait_for_port
from support.processes import spawn
from support.stats_warehouse import NO_PREWARM
from support.venvs import pip_venv as pip_venv_with

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's chromium is not installed here (.ci/run installs it: apt-get install "
    "chromium); this test drives the system browser and never downloads one",
)
UV = Path(sys.executable).parent / "uv"
SAMPLE, SECOND = "hello-pythonhosted", "browser-second"
SERVICES = ("files", "conveyor", "camo", "linehaul", "stats_web")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CI_VARIABLES = ("CI", "BUILD_ID", "BUILD_BUILDID", "PIP_IS_CI", "GITHUB_ACTIONS")


def _installer_env(tmp_path: Path, ci: bool) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "PYTHONHOSTED_")) and k not in CI_VARIABLES
    }
    env.update(
        {
            "PIP_CONFIG_FILE": os.devnull,
            "PIP_NO_CACHE_DIR": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "UV_NO_CONFIG": "1",
            "UV_NO_CACHE": "1",
            "UV_PYTHON_DOWNLOADS": "never",
            "HOME": str(tmp_path / "home"),
        }
    )
    if ci:
        env["CI"] = "true"
    return env


def _run(command: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def _wait_for(check: Any, what: str, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _today_total(stats: str, project: str) -> int:
    today = datetime.now(UTC).date().isoformat()
    answer = httpx.get(
        f"{stats}/api/v1/projects/{project}/downloads?start={today}&end={today}&ci=true"
    )
    return int(answer.json()["total"]) if answer.status_code == 200 else 0


def _canvas_painted(page: Any, selector: str) -> bool:
    painted: bool = page.eval_on_selector(
        selector,
        """canvas => {
            const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
            return canvas.width > 0 && pixels.data.some(value => value !== 0);
        }""",
    )
    return painted


@pytest.mark.long
def test_stats_pages_in_chromium_after_real_installs(tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    binds = {name: Bind("127.0.0.1", free_port()) for name in SERVICES}
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONHOSTED_")}
    env.update({f"PYTHONHOSTED_{n.upper()}__BIND": f"{b.host}:{b.port}" for n, b in binds.items()})
    env.update(
        {
            "PYTHONHOSTED_FILES__LOG_PERIOD": "1",
            "PYTHONHOSTED_LINEHAUL__INGEST_INTERVAL": "1",
            "PYTHONHOSTED_LINEHAUL__PUBLISH_INTERVAL": "1",
            **NO_PREWARM,
        }
    )
    name, wheel = build_wheel(SECOND, "0.1")
    (tmp_path / name).write_bytes(wheel)
    command = [sys.executable, "-m", "pythonhosted"]
    _run(
        [*command, "files", "upload", "--store", f"file://{data}/files", str(tmp_path / name)], env
    )
    log = (tmp_path / "serve.log").open("wb")
    serve = spawn(
        [*command, "serve", "--data-dir", str(data)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        for bind in binds.values():
            wait_for_port(bind, timeout=60)
        files, stats = binds["files"].url(), binds["stats_web"].url()
        index = f"{files}/simple/"
        pip_venv, uv_venv = tmp_path / "pip-venv", tmp_path / "uv-venv"
        plain, ci = _installer_env(tmp_path, ci=False), _installer_env(tmp_path, ci=True)
        pip_venv_with(pip_venv, plain)
        _run([str(UV), "venv", "-q", "--python", sys.executable, str(uv_venv)], plain)
        _run([str(pip_venv / "bin/pip"), "install", "--index-url", index, SAMPLE, SECOND], plain)
        _run(
            [str(UV), "pip", "install", "--python", str(uv_venv / "bin/python"),
             "--index-url", index, SAMPLE],
            ci,
        )  # fmt: skip
        _wait_for(lambda: _today_total(stats, SAMPLE) >= 2, "the installs to be published")
        _wait_for(lambda: _today_total(stats, SECOND) >= 1, "the second project's download")
        _browse(playwright, tmp_path, stats)
    finally:
        os.killpg(serve.pid, signal.SIGTERM)
        try:
            serve.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
        log.close()


def _browse(playwright: Any, tmp_path: Path, stats: str) -> None:
    errors: list[str] = []
    with playwright.sync_playwright() as driver:
        context = driver.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            for width, height in ((360, 740), (1280, 900)):
                page.set_viewport_size({"width": width, "height": height})
                _home(page, stats, width)
                _project(page, stats, width, tmp_path)
                _compare(page, stats, width, tmp_path)
        finally:
            context.close()
    assert errors == []


def _fits(page: Any, width: int) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"the page is {scroll}px wide in a {width}px window"


def _home(page: Any, stats: str, width: int) -> None:
    page.goto(stats + "/")
    assert "complete through" in page.inner_text("#completeness")
    page.fill("#q", "hello")
    page.press("#q", "Enter")
    page.wait_for_selector(f"#search-results a[href='/packages/{SAMPLE}']")
    _fits(page, width)


def _project(page: Any, stats: str, width: int, tmp_path: Path) -> None:
    page.goto(f"{stats}/packages/{SAMPLE}?today=true")
    page.wait_for_selector("#chart-downloads[data-drawn='true'] canvas")
    assert _canvas_painted(page, "#chart-downloads canvas")
    assert page.locator("#by-installer[data-drawn], #by-installer figure[data-drawn]").count()
    without_ci = int(page.inner_text("#range-total").replace(",", ""))
    page.click(".controls a[href*='ci=true']")
    page.wait_for_selector("#chart-downloads[data-drawn='true'] canvas")
    with_ci = int(page.inner_text("#range-total").replace(",", ""))
    assert with_ci > without_ci >= 1  # uv's download was made in CI, pip's not
    assert "uv" in page.inner_text("#by-installer table")
    _fits(page, width)
    page.screenshot(path=str(tmp_path / f"project-{width}.png"), full_page=True)


def _compare(page: Any, stats: str, width: int, tmp_path: Path) -> None:
    page.goto(f"{stats}/compare?projects={SAMPLE},{SECOND}&today=true")
    page.wait_for_selector("#chart-compare[data-drawn='true'] canvas")
    assert _canvas_painted(page, "#chart-compare canvas")
    header = page.inner_text("#table-compare thead")
    assert SAMPLE in header and SECOND in header
    _fits(page, width)
    page.screenshot(path=str(tmp_path / f"compare-{width}.png"), full_page=True)
