"""linehaul: CDN log lines -> rows of the ``file_downloads`` and ``simple_requests`` tables.

:func:`parse` turns one line into a row (a dict shaped as :mod:`.schema` defines), ``None``
for a user agent on the ignore list, or raises :class:`UnprocessableLine`.

Differences from the reference parser (PyPI's ``linehaul`` 1.0.3), each deliberate and tested
(tests/linehaul/test_differential.py); docs/linehaul.md explains them:

1. Empty TLS fields are null; the reference rejects the line (spec).
2. Fields may hold any character but ``|`` and control characters (``@``, non-ASCII, as our
   writer may produce); the reference rejects ``@`` and anything outside printable ASCII.
3. pip/uv JSON of the wrong shape: a top-level value that is not an object means the agent
   is not recognised (details null; the reference crashes on ``null`` and gives an all-null
   record for arrays and strings); a record that is not an object is null; an object or array
   where text belongs is null, not its Python repr; ``ci`` is only a JSON boolean, not
   truthiness; ``subcommand`` must be an array of scalars (a string is not split into
   characters).
4. A user agent that several families recognise gets the first in our fixed order; the
   reference's order is random per process.
5. Ignored user agents are dropped, never "unprocessed" (the reference's cloud function
   writes them there; its parser already returns None).
"""

from pythonhosted.linehaul.events import UnprocessableLine, parse

__all__ = ["UnprocessableLine", "parse"]
