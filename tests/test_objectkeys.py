"""The one rule for keys and request paths that every service and store applies."""

from __future__ import annotations

import pytest

from pythonhosted.objectkeys import check_key, is_safe_key, path_of


@pytest.mark.parametrize(
    "key",
    ["a", "proj/index.html", "proj/", "proj/.well-known/x", "proj/..x/y", "a.b.c", "x/y.../z"],
)
def test_safe_keys(key: str) -> None:
    assert is_safe_key(key)
    assert check_key(key) == key


@pytest.mark.parametrize(
    "key",
    [
        *["", "/abs", "a//b", "a/./b", "a/../b", "..", ".", "a/..", "./a", "a\\b", "a\x00b"],
        *["a\nb", "p/\x01", "p/a\x7f"],  # control characters
        *["p/" + "a" * 256, "p/" + "é" * 128],  # a segment over 255 bytes
        "/".join(["a" * 200] * 6),  # over 1,024 bytes
    ],
)
def test_unsafe_keys(key: str) -> None:
    assert not is_safe_key(key)
    with pytest.raises(ValueError, match="invalid object key"):
        check_key(key)


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (b"/", "/"),
        (b"/proj/", "/proj/"),
        (b"/proj/caf%C3%A9.html", "/proj/café.html"),
        ("/proj/café.html".encode(), "/proj/café.html"),
        (b"/proj/a%20b", "/proj/a b"),
        (b"/proj/%2e%2e", None),  # decodes to a dot segment
        (b"/proj/a%2fb", None),  # an escaped separator
        (b"/proj/a%5Cb", None),
        (b"/proj/a%00b", None),
        (b"/proj/%ff", None),  # not UTF-8
        (b"proj", None),
        (b"//etc/passwd", None),
        (b"/proj/../secret", None),
        (b"/proj/a%0ab", None),  # a control character, escaped
        (b"/proj/%7f", None),
        (b"/proj/" + b"a" * 255, "/proj/" + "a" * 255),  # a file system's longest name
        (b"/proj/" + b"a" * 256, None),
        (b"/proj/" + b"%C3%A9" * 128, None),  # 128 characters, 256 bytes
        (b"/a" + b"/b" * 600, None),  # more than any store's longest key
    ],
)
def test_request_paths(raw: bytes, path: str | None) -> None:
    assert path_of(raw) == path
