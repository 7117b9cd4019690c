"""One generic registry (timm style): a decorator feeds the CLI, the docs and the tests.

In-tree entries register when their module is imported; the registry imports every module of
its package the first time it is looked up. Third-party entries come from an entry-point
group, also loaded only on first lookup. Nothing here imports a runtime such as openvino.
"""

from __future__ import annotations

import fnmatch
import importlib
import importlib.metadata
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from harness.errors import UsageError, unknown

T = TypeVar("T")


def describe(obj: Any) -> str:
    """One-line description: an explicit `description` attribute, else the docstring's first line."""
    text = getattr(obj, "description", None) or inspect.getdoc(obj) or ""
    return text.strip().splitlines()[0] if text.strip() else ""


class Registry(Generic[T]):
    """Names -> objects for one kind (method, target, model, dataset)."""

    def __init__(self, kind: str, package: str, group: str,
                 references: str | None = None) -> None:
        self.kind = kind
        # "module:function" turning a name with a ':' into an entry (models by reference,
        # harness/model_refs.py): resolved on lookup, never listed among the registered names
        self.references = references
        self.package = package
        self.group = group
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}
        self._loaded = False
        self._loading = False

    def register(self, name: str | None = None) -> Callable[[T], T]:
        """Decorator: `@METHODS.register("l1-filter")`. A duplicate name is an error."""

        def deco(obj: T) -> T:
            key = name or getattr(obj, "name", None)
            if not key:
                raise ValueError(f"{self.kind} {obj!r} has no name")
            origin = getattr(obj, "__module__", None) or type(obj).__module__
            if key in self._items and self._items[key] is not obj:
                raise UsageError(
                    f"duplicate {self.kind} name '{key}' "
                    f"(registered by {self._origin[key]} and {origin})"
                )
            self._items[key] = obj
            self._origin[key] = origin
            return obj

        return deco

    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            pkg = importlib.import_module(self.package)
            for info in pkgutil.iter_modules(pkg.__path__):
                if not info.name.startswith("_"):
                    importlib.import_module(f"{self.package}.{info.name}")
            for ep in importlib.metadata.entry_points(group=self.group):
                try:
                    obj = ep.load()
                except Exception as exc:  # a broken plugin must not break the others
                    raise UsageError(
                        f"plugin {self.kind} '{ep.name}' ({ep.value}) failed to load: {exc}"
                    ) from exc
                if not inspect.ismodule(obj) and ep.name not in self._items:
                    self.register(ep.name)(obj)
            self._loaded = True
        finally:
            self._loading = False

    def get(self, name: str) -> T:
        """The entry called `name`, or a UsageError listing the valid names."""
        self._load()
        if name not in self._items and self.references and ":" in name:
            return self._reference(name)
        try:
            return self._items[name]
        except KeyError:
            raise unknown(self.kind, name, self._items) from None

    def _reference(self, name: str) -> T:
        module, _, func = self.references.partition(":")  # type: ignore[union-attr]
        return getattr(importlib.import_module(module), func)(name)

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell-style pattern, sorted."""
        self._load()
        return sorted(n for n in self._items if fnmatch.fnmatch(n, pattern))

    def items(self) -> list[tuple[str, T]]:
        self._load()
        return sorted(self._items.items())

    def __contains__(self, name: str) -> bool:
        """Registered, or a reference that resolves (a bad reference is not contained)."""
        self._load()
        if name in self._items:
            return True
        if self.references and ":" in name:
            try:
                self._reference(name)
            except UsageError:
                return False
            return True
        return False


METHODS: Registry[Any] = Registry("method", "harness.methods", "harness.methods")
TARGETS: Registry[Any] = Registry("target", "harness.targets", "harness.targets")
MODELS: Registry[Any] = Registry("model", "harness.benchmarks.models", "harness.models",
                                 references="harness.model_refs:resolve")
DATASETS: Registry[Any] = Registry("dataset", "harness.benchmarks.datasets", "harness.datasets")
