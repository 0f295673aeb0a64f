"""Camo URLs: an HMAC-SHA1 digest of the target URL plus the URL itself (spec rules 1-2).

Three spellings reach the proxy: ``/{hex digest}/{hex url}``, ``/{b64 digest}/{b64 url}``
(URL-safe alphabet, unpadded) and the original camo's ``/{hex digest}?url={percent-encoded}``.
Decoding never raises: anything wrong is a ``None`` result, which the proxy turns into a 404
without contacting an upstream.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Literal
from urllib.parse import parse_qs

Encoding = Literal["hex", "base64"]

_DIGEST_BYTES = 20  # SHA-1
_HEX_DIGEST_LEN = 40  # SHA-1, hex
_B64_DIGEST_LEN = 27  # SHA-1, unpadded URL-safe base64
_B64_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def digest(key: bytes, url: str) -> bytes:
    return hmac.digest(key, url.encode(), "sha1")


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    """Strict: characters outside the URL-safe alphabet are an error, not silently dropped."""
    if not _B64_ALPHABET.fullmatch(text):
        raise ValueError("not unpadded URL-safe base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_url(url: str, key: bytes, *, base: str = "", encoding: Encoding = "hex") -> str:
    """The camo URL for ``url``: ``{base}/{digest}/{encoded url}``.

    ``base`` is the proxy's public prefix (e.g. ``https://camo.pypi.org``); empty gives a path.
    """
    mac = digest(key, url)
    if encoding == "hex":
        path = f"/{mac.hex()}/{url.encode().hex()}"
    else:
        path = f"/{_b64encode(mac)}/{_b64encode(url.encode())}"
    return base.rstrip("/") + path


def verify(key: bytes, path: str, query_string: bytes = b"") -> str | None:
    """The target URL of a camo request path, or None if the signature or encoding is bad."""
    parts = path.strip("/").split("/")
    if len(parts) == 1 and parts[0]:
        return _verify_legacy(key, parts[0], query_string)
    if len(parts) != 2:
        return None
    mac_text, url_text = parts
    try:
        if len(mac_text) == _HEX_DIGEST_LEN:
            mac, url_bytes = bytes.fromhex(mac_text), bytes.fromhex(url_text)
        elif len(mac_text) == _B64_DIGEST_LEN:
            mac, url_bytes = _b64decode(mac_text), _b64decode(url_text)
        else:
            return None
        url = url_bytes.decode()
    except (ValueError, binascii.Error):
        return None
    return url if hmac.compare_digest(mac, digest(key, url)) else None


def _verify_legacy(key: bytes, mac_text: str, query_string: bytes) -> str | None:
    try:
        mac = bytes.fromhex(mac_text)
        values = parse_qs(query_string.decode("ascii"), strict_parsing=False).get("url", [])
    except (ValueError, UnicodeDecodeError):
        return None
    if len(values) != 1 or len(mac) != _DIGEST_BYTES:
        return None
    return values[0] if hmac.compare_digest(mac, digest(key, values[0])) else None
