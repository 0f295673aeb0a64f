"""An exception as one line of a log or an error message.

Library errors (obstore's, chDB's) run to dozens of lines of debug text; what an operator
reads is their first line, or the exception's type when it says nothing.
"""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of ``exc``'s text, or its type's name when the text is empty."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
