"""The root page rendered a batch of names at a time is the page rendered whole."""

from __future__ import annotations

import orjson

from pythonhosted.index.render import ROOT_BATCH, index_html, index_json


def test_root_pages_across_batches_are_exact() -> None:
    for count in (0, 1, ROOT_BATCH, 2 * ROOT_BATCH + 1):
        names = [f"project-{n:06d}" for n in range(count)]
        assert orjson.loads(index_json(names)) == {
            "meta": {"api-version": "1.1"},
            "projects": [{"name": name} for name in names],
        }
        links = "".join(f'    <a href="/simple/{name}/">{name}</a><br>\n' for name in names)
        assert index_html(names).decode() == (
            "<!DOCTYPE html>\n<html>\n  <head>\n"
            '    <meta name="pypi:repository-version" content="1.1">\n'
            "    <title>Simple index</title>\n  </head>\n  <body>\n"
            f"{links}  </body>\n</html>\n"
        )
    assert index_html(["a&b"]).count(b"a&amp;b") == 2
