"""Click parameter types the services' commands share."""

from __future__ import annotations

import click


class _Url(click.ParamType[str]):
    """A store's or a warehouse's URL: any text but none.

    An empty value (``--store "$STORE"`` with the variable unset) read as the option left
    out: the configured default store, where ``files delete --yes`` then deleted.
    """

    name = "url"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        text = str(value)
        if not text.strip():
            self.fail("is empty (leave the option out for its default)", param, ctx)
        return text


URL = _Url()
