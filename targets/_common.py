"""Helpers shared by targets: package presence and versions without importing the runtime."""

from __future__ import annotations

import importlib.metadata
import importlib.util


def missing(module: str, dist: str) -> str | None:
    """None when `module` can be imported, else the reason a user can act on."""
    if importlib.util.find_spec(module) is None:
        return f"{dist} not installed (pip install {dist})"
    return None


def dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
