"""The pages as HTML: numbers in the markup, tables beside charts, toggles as links, the about
page's mirror list, assets served from here with their licence."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from pythonhosted.stats_web import build_app
from pythonhosted.warehouse.mirrors import MIRRORS
from pythonhosted.web.server import running
from support.edge import raw_request
from support.stats_data import line
from support.stats_warehouse import at, build, d


def _page(base: str, path: str) -> str:
    answer = httpx.get(base + path)
    assert answer.status_code == 200, path
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    csp = answer.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp
    return answer.text


def test_home(base: str) -> None:
    html = _page(base, "/")
    assert f"The last complete day is <strong>{d(1).isoformat()}</strong>" in html
    assert "complete through" in html
    # Top projects of the last 7 days: demo-pkg 4 (mirrors and CI out), other 1.
    section = html.split("Top projects, last 7 days")[1].split("</section>")[0]
    cells = re.findall(r'<a href="/packages/([^"]+)">[^<]+</a></td><td class="n">(\d+)<', section)
    assert cells == [("demo-pkg", "4"), ("other", "1")]
    assert 'action="/" method="get"' in html
    assert "<script>" not in html  # no inline script: CSP allows only this origin's files


def test_a_search_answers_its_matches_without_the_top_lists(base: str) -> None:
    """Each search is an answer of its own; with the top lists and trending in it, every
    distinct query computed them again (at a million projects ~4.5 s of warehouse time for
    a 10 ms lookup). A search now shows its matches and a link to the lists."""
    html = _page(base, "/?q=De")
    assert re.findall(r'<li><a href="/packages/([^"]+)">', html) == ["demo-pkg"]
    assert "Top projects," not in html and "Trending" not in html
    assert '<a href="/">Top projects and trending</a>' in html
    assert 'id="search-results">No project' in _page(base, "/?q=zz")
    assert "Top projects, last 7 days" in _page(base, "/")


def test_project_page_numbers_tables_and_toggles(base: str) -> None:
    html = _page(base, "/packages/demo-pkg?range=30")
    # The latest final release and its summary, from distribution_metadata (2.1rc1 came
    # later but is a pre-release).
    assert (
        '<p id="release">Latest version <strong id="latest-version">2.0</strong>: '
        '<span id="summary">The demo package</span></p>'
    ) in html
    assert '<p id="release">Latest version <strong id="latest-version">3.0</strong></p>' in (
        _page(base, "/packages/other")
    )
    for ident, value in (("last-day", 2), ("last-week", 4), ("last-month", 5), ("all-time", 7)):
        assert f'id="{ident}">{value}</span>' in html, ident
    assert 'id="range-total">5</span>' in html
    for field in ("version", "installer", "python", "system", "country"):
        assert f'<section id="by-{field}">' in html
        assert f'id="chart-{field}"' in html
    assert '<script type="application/json">{"x":[' in html
    installer = html.split('<section id="by-installer">')[1].split("</section>")[0]
    assert re.findall(r"<tr><td>(\w+)</td><td class=\"n\">(\d+)</td>", installer) == [("pip", "5")]
    # The toggles are links that keep the other choices.
    assert (
        'href="/packages/demo-pkg?range=30&amp;interval=day&amp;mirrors=true&amp;ci=false' in html
    )
    with_all = _page(base, "/packages/demo-pkg?range=30&mirrors=true&ci=true")
    assert 'id="range-total">8</span>' in with_all
    installer = with_all.split('<section id="by-installer">')[1].split("</section>")[0]
    assert "bandersnatch" in installer and "devpi" in installer
    monthly = _page(base, "/packages/demo-pkg?range=all&interval=month")
    assert 'id="range-total">6</span>' in monthly  # all complete days: today's is not
    assert "[![Downloads](https://HOST/badge/demo-pkg.svg)]" in html


def test_compare_page(base: str) -> None:
    html = _page(base, "/compare?projects=demo-pkg,other&range=30")
    table = html.split('id="table-compare"')[1].split("</table>")[0]
    assert '<th class="n">demo-pkg</th><th class="n">other</th>' in table
    assert '<tr><th>total</th><th class="n">5</th><th class="n">1</th></tr>' in table
    assert 'id="chart-compare"' in html
    assert "<h1>Compare projects</h1>" in _page(base, "/compare")
    assert httpx.get(base + "/compare?projects=demo-pkg").status_code == 400
    assert httpx.get(base + "/compare?projects=demo-pkg,nope").status_code == 404


def test_about_page_lists_the_mirrors(base: str) -> None:
    html = _page(base, "/about")
    listed = re.findall(r"<code>([^<]+)</code>", html.split("<strong>Mirrors</strong>")[1])
    assert listed[: len(MIRRORS)] == list(MIRRORS)
    assert ".metadata" in html and "watermark" in html
    assert "/api/packages/PROJECT/recent" in html


def test_static_assets_are_ours_and_licensed(base: str) -> None:
    script = httpx.get(base + "/static/uPlot.iife.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "uPlot" in script.text
    assert "MIT" in httpx.get(base + "/static/uPlot.LICENSE").text
    assert "1.6.32" in httpx.get(base + "/static/NOTICE.md").text
    assert httpx.get(base + "/static/../app.py").status_code == 404
    assert httpx.get(base + "/static/.hidden").status_code == 404
    assert httpx.get(base + "/nowhere").status_code == 404


def test_asset_names_never_reach_the_file_system(base: str) -> None:
    """A name that is not one of the assets is 404, whatever it is: a 5,000-character one was
    stat'ed and its ENAMETOOLONG answered 500."""
    for name in ("a" * 5000, "%00", "a%0ab", "..%5capp.py", "style.css%00.js", "style.css/"):
        status, data = raw_request(base, f"GET /static/{name} HTTP/1.1")
        assert (status, data.endswith(b"\r\n\r\nNot found\n")) == (404, True), name[:40]
    style = httpx.get(base + "/static/style.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"


def test_a_project_of_thousands_of_versions_shows_the_top_ones(tmp_path: Path) -> None:
    """2,000 versions over 20 days, and 676 countries: each table is its 100
    biggest rows and one row for the rest. Every row used to be in it: 50,000 versions made
    a 3.5 MB page and 1.5 s of CPU to render it."""
    # 1.0 downloaded 3 times, 1.1 twice, the others once
    versions = [f"1.{n}" for n in range(2_000)] + ["1.0", "1.0", "1.1"]
    lines = [
        line(
            serial,
            at(d(1 + serial % 20)),
            project="many",
            version=version,
            country=f"{chr(65 + serial // 26 % 26)}{chr(65 + serial % 26)}",
        )
        for serial, version in enumerate(versions)
    ]
    warehouse = build(tmp_path, lines)
    with running(build_app(warehouse.settings)) as base:
        html = _page(base, "/packages/many?range=30")
    version = html.split('<section id="by-version">')[1].split("</section>")[0]
    rows = re.findall(r'<tr><td>([^<]+)</td><td class="n">([\d,]+)</td>', version)
    assert len(rows) == 100 and rows[:3] == [("1.0", "3"), ("1.1", "2"), ("1.10", "1")]
    assert '<tr class="others muted"><td>1,900 others</td><td class="n">1,900</td>' in version
    country = html.split('<section id="by-country">')[1].split("</section>")[0]
    assert '<tr class="others muted"><td>576 others</td>' in country
    assert len(html) < 100_000
