"""Click parameter types the services' commands share."""

from __future__ import annotations

import os
from pathlib import Path

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


class _SomePath(click.Path):
    """:class:`click.Path` that refuses an empty value, which it reads as the working
    directory: ``docs upload PROJECT "$SITE"`` with the variable unset published whatever
    directory the command ran in, and ``serve --data-dir ""`` wrote keys and stores there."""

    def convert(
        self,
        value: str | os.PathLike[str],
        param: click.Parameter | None,
        ctx: click.Context | None,
    ) -> str | bytes | os.PathLike[str]:
        if isinstance(value, str) and not value.strip():
            self.fail("is empty (leave it out, or name a path)", param, ctx)
        return super().convert(value, param, ctx)


def some_path(*, exists: bool = False, file_okay: bool = True, dir_okay: bool = True) -> click.Path:
    """A path parameter that is never empty, converted to :class:`pathlib.Path`."""
    return _SomePath(exists=exists, file_okay=file_okay, dir_okay=dir_okay, path_type=Path)
