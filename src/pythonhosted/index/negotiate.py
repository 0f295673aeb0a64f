"""PEP 691 content negotiation: pick the format from ``?format=`` or ``Accept``."""

from __future__ import annotations

from pythonhosted.index.render import HTML_TYPE, JSON_TYPE
from pythonhosted.web.http import qvalue

TEXT_HTML = "text/html"
OFFERED = (JSON_TYPE, HTML_TYPE, TEXT_HTML)


def choose(accept: str | None, format_param: str | None) -> str | None:
    """The content type to answer with, or None when nothing acceptable is offered (406).

    ``format_param`` (the ``?format=`` query value) wins when it names an offered type. Without
    an Accept header, HTML (``text/html``), as PEP 691 says servers should default to. A
    ``+`` left unencoded in the query (``?format=application/vnd.pypi.simple.v1+json``, as
    PEP 691 writes it) arrives as a space: no offered type has one, so it is read as the ``+``.
    """
    if format_param:
        format_param = format_param.replace(" ", "+")
        return format_param if format_param in OFFERED else None
    if not accept or not accept.strip():
        return TEXT_HTML
    best: tuple[float, int] | None = None
    chosen: str | None = None
    for rank, item in enumerate(accept.split(",")):
        media, _, params = item.strip().partition(";")
        media = media.strip().lower()
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                quality = qvalue(value)
        if quality <= 0:
            continue
        # Wildcards get HTML: that is what every client that does not ask for JSON reads.
        candidates = [TEXT_HTML] if media == "*/*" else [o for o in OFFERED if _matches(media, o)]
        if not candidates:
            continue
        score = (quality, -rank)
        if best is None or score > best:
            best, chosen = score, candidates[0]
    return chosen


def _matches(media: str, offer: str) -> bool:
    return media == offer or (media.endswith("/*") and offer.startswith(media[:-1]))
