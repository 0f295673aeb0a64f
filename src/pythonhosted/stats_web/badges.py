"""Download badges: an SVG like shields.io's, and shields.io's endpoint JSON.

The SVG is drawn by ``badgepy`` (the maintained fork of Google's pybadges: shields.io's
templates and text widths), in its ``flat`` or ``flat-square`` style. Numbers are shortened
as shields.io does (``1.2k``, ``3.4M``). badgepy is imported at the first badge drawn, not
at start: it brings requests and jinja2 (~0.1 s of CPU), which every start of ``stats-web
serve`` and ``serve`` paid, badges asked for or not.
"""

from __future__ import annotations

import re
from typing import Any

from pythonhosted.stats_web.params import BadParameter, Params

SVG = b"image/svg+xml"
PERIODS = ("day", "week", "month", "total")
STYLES = ("flat", "flat-square")
# shields.io's named colours.
COLORS = {
    "brightgreen": "#4c1",
    "green": "#97ca00",
    "yellowgreen": "#a4a61d",
    "yellow": "#dfb317",
    "orange": "#fe7d37",
    "red": "#e05d44",
    "blue": "#007ec6",
    "lightgrey": "#9f9f9f",
    "grey": "#555",
    "gray": "#555",
    "informational": "#007ec6",
    "success": "#4c1",
}
_HEX = re.compile(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}")
# What a label may not hold: control characters (C0, DEL, C1), and the two characters XML 1.0
# excludes beyond them. badgepy parses the SVG it draws, and a label of "a%00b" or "%EF%BF%BE"
# was a 500.
_UNDRAWABLE = re.compile("[\x00-\x1f\x7f-\x9f\ufffe\uffff]")
SUFFIX = {"day": "/day", "week": "/week", "month": "/month", "total": ""}


def shorten(count: int) -> str:
    """1234 -> 1.2k, 3_400_000 -> 3.4M (one decimal below 10, none above, as shields.io)."""
    if count < 1000:
        return str(count)
    value = float(count)
    for unit in "kMGT":
        value /= 1000
        text = f"{value:.1f}" if value < 9.95 else f"{value:.0f}"
        if float(text) < 1000 or unit == "T":
            return text.removesuffix(".0") + unit
    raise AssertionError("unreachable")


def options(params: Params) -> tuple[str, str, str, str]:
    """(period, label, colour, style) from the query, each checked."""
    period = params.choice("period", PERIODS, "month")
    style = params.choice("style", STYLES, "flat")
    label = params.text("label")
    label = "downloads" if label is None else label
    if len(label) > 60:
        raise BadParameter("label", "at most 60 characters")
    if _UNDRAWABLE.search(label):
        raise BadParameter("label", "no control characters")
    color = params.text("color") or "blue"
    if color in COLORS:
        color = COLORS[color]
    elif _HEX.fullmatch(color.removeprefix("#")):
        color = "#" + color.removeprefix("#")
    else:
        raise BadParameter("color", f"a shields.io colour name or hex RGB, not {color!r}")
    assert period is not None and style is not None
    return period, label, color, style


def message(count: int, period: str) -> str:
    return shorten(count) + SUFFIX[period]


def prepare() -> None:
    """Import the drawer, at the app's start: 0.4-1.9 s of imports (jinja2 and requests among
    them), which the first badge made in an answer thread, running Python against the event
    loop for the GIL while other answers waited for the import's lock."""
    import badgepy  # noqa: F401


def svg(label: str, text: str, color: str, style: str) -> bytes:
    import badgepy

    return badgepy.badge(left_text=label, right_text=text, right_color=color, style=style).encode()


def shields(label: str, text: str, color: str) -> dict[str, Any]:
    """shields.io's endpoint-badge JSON (https://shields.io/badges/endpoint-badge)."""
    return {"schemaVersion": 1, "label": label, "message": text, "color": color.lstrip("#")}
