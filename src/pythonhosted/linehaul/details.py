"""The ``details`` record of a row: built from what a user agent says, in the schema's shape.

Every user-agent family produces a partial mapping (pip and uv send a JSON object, the others
a few regex groups); :func:`structure` turns it into the full record, every member present,
absent ones null, a record absent or not a JSON object null.

Values are coerced by one rule per schema type, chosen to agree with the reference wherever
the reference gives a meaningful answer (it runs ``cattrs``, i.e. ``str(x)`` / ``bool(x)``):

- STRING: text as is; a JSON number or boolean as Python's ``str`` of it (``3.8`` -> "3.8",
  ``true`` -> "True", as the reference); an object or array -> null (the reference stores its
  Python repr).
- BOOLEAN (``ci``): only JSON ``true``/``false``; anything else -> null (the reference takes
  truthiness, so ``"false"`` would count as CI).
- ``installer.subcommand``: a JSON array of scalars, shell-quoted with ``shlex.join``; anything
  else -> null (the reference splits a string into characters).

Records are cached per user agent and shared by every row with that agent, so they are
:class:`Record` objects: dicts (orjson, ``==`` and ``isinstance`` treat them as such) that
refuse changes. ``orjson.loads(orjson.dumps(row))`` gives a fully mutable copy.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any, NoReturn, cast

from pythonhosted.warehouse.schema import DETAILS, Field

_SCALARS = (str, int, float)  # bool is an int


class Record(dict[str, Any]):
    """A read-only dict: shared between rows without copying (copying cost more than parsing)."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("details records are shared and read-only; copy them first")

    __setitem__ = __delitem__ = __ior__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse

    def __reduce__(self) -> tuple[type[Record], tuple[dict[str, Any]]]:
        """Pickle (and copy) through the constructor, which does not go via __setitem__."""
        return Record, (dict(self),)


Convert = Callable[[object], Any]


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, _SCALARS):
        return str(value)
    return None


def _flag(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _command_line(value: object) -> str | None:
    if not isinstance(value, list) or not all(isinstance(arg, _SCALARS) for arg in value):
        return None
    return shlex.join(str(arg) for arg in value)


def _converter(field: Field) -> Convert:
    """The coercion for one schema field, records compiled once into nested converters."""
    if field.type == "RECORD":
        members = tuple((member.name, _converter(member)) for member in field.fields)

        def record(value: object) -> Record | None:
            if not isinstance(value, dict):
                return None
            return Record({name: convert(value.get(name)) for name, convert in members})

        return record
    if field.type == "BOOLEAN":
        return _flag
    return _command_line if field.name == "subcommand" else _text


_DETAILS = _converter(DETAILS)


def structure(data: dict[str, Any]) -> Record:
    """The full ``details`` record for a family's partial mapping."""
    return cast(Record, _DETAILS(data))  # a dict always gives a record
