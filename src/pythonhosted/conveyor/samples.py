"""A small docs site for ``pythonhosted serve``, so the docs service has something to show."""

from __future__ import annotations

from pythonhosted.conveyor.redirects import REDIRECTS_KEY, Redirect, dump_redirects
from pythonhosted.storage import Store

SAMPLE_PROJECT = "hello-pythonhosted"
REDIRECTED_PROJECT = "hello-elsewhere"

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="{css}"></head>
<body><h1>{title}</h1>{body}</body></html>
"""
_CSS = b"body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }\n"


def sample_site() -> dict[str, bytes]:
    """Key -> bytes of the sample site: a front page, one project with two pages, a redirect."""
    project = SAMPLE_PROJECT
    pages = {
        "index.html": (
            "pythonhosted.org",
            "_static/site.css",
            f'<p>Hosted docs: <a href="/{project}/">{project}</a>.</p>'
            f'<p><a href="/{REDIRECTED_PROJECT}/">{REDIRECTED_PROJECT}</a> has moved.</p>',
        ),
        f"{project}/index.html": (
            project,
            "_static/site.css",
            '<p>Sample documentation. Read the <a href="guide/">guide</a>.</p>',
        ),
        f"{project}/guide/index.html": (
            f"{project} guide",
            "../_static/site.css",
            '<p>There is not much to it. <a href="../">Back</a>.</p>',
        ),
    }
    site = {
        key: _PAGE.format(title=title, css=css, body=body).encode()
        for key, (title, css, body) in pages.items()
    }
    site["_static/site.css"] = _CSS
    site[f"{project}/_static/site.css"] = _CSS
    site[REDIRECTS_KEY] = dump_redirects(
        {REDIRECTED_PROJECT: Redirect("https://docs.python.org/3", include_path=False)}
    )
    return site


async def ensure_sample_docs(store: Store) -> bool:
    """Write the sample site into ``store`` if it holds nothing yet; True if it did."""
    if await store.list():
        return False
    site = sample_site()
    for key in sorted(site, key=lambda key: key == REDIRECTS_KEY):
        await store.put(key, site[key])
    return True
