"""The one error type the CLI turns into a one-line message and exit code 2."""

from __future__ import annotations

from collections.abc import Iterable


class UsageError(Exception):
    """Bad input from the user: unknown name, malformed suite, missing data."""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UsageError:
    """`unknown target 'x' (choose from: a, b)`: the message every lookup failure uses."""
    listed = ", ".join(sorted(choices)) or "none registered"
    return UsageError(f"unknown {kind} '{name}' (choose from: {listed})")
