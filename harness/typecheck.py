"""Suite values against the annotations of what they fill: one-line errors naming the key, the
expected type and the value.

TOML gives strings, integers, floats, booleans, arrays and tables; the dataclasses a suite file
fills (method Configs, `Recipe`, `Timing`) and the builders it passes options to (models,
datasets) say in their annotations what each key takes. Checking every value before anything is
constructed turns `ratio = "abc"` into `'ratio' must be a number, not 'abc' (a string)` instead
of `'<=' not supported between 'float' and 'str'` from deep inside a `__post_init__`.
Annotations this module does not understand (a plugin's own types) are left to the class.
"""

from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from harness.errors import UsageError

_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURAL = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
_SEQUENCES = (tuple, list, collections.abc.Sequence)


def kind(value: Any) -> str:
    """What a TOML value is, in words."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "not a number" if math.isnan(value) else "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def show(value: Any, limit: int = 60) -> str:
    """A value as the suite file wrote it (strings quoted with control characters escaped,
    `true`/`false`, lists and tables), capped at `limit` characters."""
    text = _toml(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(map(_toml, value)) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _members(ann: Any) -> tuple[Any, ...]:
    """The types of a union, `None` left out (TOML has no null: optional means 'may be absent')."""
    return tuple(a for a in typing.get_args(ann) if a is not type(None))


def fits(value: Any, ann: Any) -> bool:
    """Does a TOML value fit an annotation? Unknown annotations fit (their class decides)."""
    if ann is Any or ann is object or isinstance(ann, str | typing.TypeVar):
        return True
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        return any(fits(value, a) for a in _members(ann))
    if ann is type(None):
        return value is None
    if ann is bool:
        return isinstance(value, bool)
    if ann is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if ann is float:
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and not (isinstance(value, float) and math.isnan(value)))
    if ann is str:
        return isinstance(value, str)
    if origin is typing.Literal:
        return any(type(value) is type(a) and value == a for a in typing.get_args(ann))
    if origin in _SEQUENCES or ann in (tuple, list):
        if not isinstance(value, list | tuple):
            return False
        args = typing.get_args(ann)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(map(fits, value, args))
        return not args or all(fits(v, args[0]) for v in value)
    if origin in (dict, collections.abc.Mapping) or ann in (dict, Mapping):
        if not isinstance(value, dict):
            return False
        args = typing.get_args(ann)
        return len(args) != 2 or all(fits(v, args[1]) for v in value.values())
    if isinstance(ann, type) and ann.__module__ == "builtins":
        return isinstance(value, ann)
    return True


def describe(ann: Any) -> str:
    """An annotation in words: `a number`, `a list of integers`, `a string or nothing`..."""
    if ann in _NAMES:
        return _NAMES[ann]
    origin = typing.get_origin(ann)
    if origin is typing.Union or origin is types.UnionType:
        return " or ".join(describe(a) for a in _members(ann))
    if origin is typing.Literal:
        return "one of " + ", ".join(show(a) for a in typing.get_args(ann))
    if origin in _SEQUENCES or ann in (tuple, list):
        args = typing.get_args(ann)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} " + _PLURAL.get(args[0], "values")
        return "a list" + (f" of {_PLURAL.get(args[0], 'values')}" if args else "")
    if origin in (dict, collections.abc.Mapping) or ann in (dict, Mapping):
        return "a table"
    return getattr(ann, "__name__", str(ann))


def hints(obj: Callable[..., Any] | type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields or a callable's parameters ({} where they
    cannot be resolved: a plugin's annotations are its own business)."""
    plain_class = inspect.isclass(obj) and not hasattr(obj, "__dataclass_fields__")
    target = obj.__init__ if plain_class else obj
    try:
        return typing.get_type_hints(target)
    except Exception:  # unresolvable forward references: nothing to check against
        return {}


def check(value: Any, ann: Any, key: str, where: str) -> None:
    """Raise a one-line UsageError unless `value` fits `ann`."""
    if not fits(value, ann):
        raise UsageError(f"{where}: {key!r} must be {describe(ann)}, not {show(value)} "
                         f"({kind(value)})")


def check_fields(obj: Callable[..., Any] | type, values: Mapping[str, Any], where: str) -> None:
    """Check every value against the annotation of the field or parameter it fills."""
    known = hints(obj)
    for key, value in values.items():
        if key in known:
            check(value, known[key], key, where)


def table(value: Any, where: str, what: str = "a table") -> dict[str, Any]:
    """`value` itself when it is a TOML table, else a one-line UsageError."""
    if not isinstance(value, dict):
        raise UsageError(f"{where} must be {what}, not {show(value)} ({kind(value)})")
    return value
