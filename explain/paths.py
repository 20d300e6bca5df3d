"""File names as people read them.

A POSIX file name is bytes; Python hands names that are not UTF-8 over as str with lone
surrogates (surrogateescape), which a strict UTF-8 terminal, JSON written as UTF-8 or an
HTML page cannot take. `display` gives a printable line instead (ids and digests of such
names: explain.images.path_id, which hashes the bytes).
"""
from __future__ import annotations

import os

# C0 controls and DEL: a name holding a newline or an escape sequence stays one plain line.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def display(path: str | bytes | os.PathLike) -> str:
    """`path` as printable text: bytes that are not UTF-8 and control characters become
    backslash escapes (`bad\\xff\\xfename.png`); everything else is left as it is."""
    return os.fsencode(path).decode("utf-8", "backslashreplace").translate(_CONTROL)
