"""A digest of a directory tree: names and bytes, to show a call left it untouched."""

import hashlib
import pathlib


def tree_digest(directory: pathlib.Path) -> str:
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        h.update(str(p.relative_to(directory)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()
