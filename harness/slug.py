"""Names -> safe file and folder names, in one place.

Suite, model and method names come from suite files and from results stores other people send;
they are text, never paths. Every name that becomes part of a path goes through `slug`, so a
name such as `../../x`, `/etc`, `a/b` or `résumé` can neither leave the folder it is written
under nor nest folders, and two different names never share a folder: whenever a character had
to be changed, a short hash of the original name is appended.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
MAX_LEN = 96  # well under every file system's 255-byte name limit, with room for suffixes


def slug(name: str) -> str:
    """ASCII letters, digits and `-_.` only; no leading dot (no `.`, `..` or hidden names);
    never empty; at most MAX_LEN characters. Unchanged when `name` already is all that,
    otherwise the cleaned name plus `-` and the first 8 hex digits of sha256(name)."""
    clean = _UNSAFE.sub("_", name)
    clean = re.sub(r"^\.+", lambda m: "_" * len(m.group()), clean)
    if clean == name and clean and len(clean) <= MAX_LEN:
        return clean
    tag = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{clean[: MAX_LEN - 9] or '_'}-{tag}"
