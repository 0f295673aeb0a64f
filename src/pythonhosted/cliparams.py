"""Click parameter types the services' commands share."""

from __future__ import annotations

import click


class _Url(click.ParamType[str]):
    """A store's or a warehouse's URL: any text but none.

    An empty value (``--store "$STORE"`` with the variable unset) read as the option left
    out: the configured default store, where ``files delete --yes`` then deleted.
    """

    name = "url"

    def __init__(self, *, kept: bool = False) -> None:
        self.kept = kept

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if not text.strip():
            self.fail("is empty (leave the option out for its default)", param, ctx)
        if self.kept and text.lower().startswith("memory:"):
            self.fail("memory:// lasts as long as this command: what it writes would be lost")
        return text


URL = _Url()
# The store a command writes to and then exits: memory:// (tests' in-process store) took the
# writes of `files upload`, `files delete`, `docs redirect` and `linehaul ingest`'s rows,
# said so, and lost them.
KEPT_URL = _Url(kept=True)
