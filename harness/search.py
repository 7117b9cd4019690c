"""Search spaces a suite declares for `harness tune`, and a trial's point -> an ordinary run.

A `[[methods]]` entry may carry `search = { ... }`: each key is one of the method's options
(or `then`, below) and its value says what the tuner may try:

- `ratio = [0.1, 0.8]`: two numbers are a range (integers if both are integers);
- `ratio = { low = 0.1, high = 0.8, step = 0.05, log = false }`: a range with a grid step
  (a step makes configs repeat, so a repeated point is a stored cell, never re-measured);
- `plan = { choices = ["56-A", "56-B"] }`, or any list that is not two numbers: a choice;
- `then = ["", "int8-ptq"]`: steps the trial may append after the method, making it a
  `pipeline` (fine-tuned between steps, as every pipeline): "" = nothing, "a+b" = two steps.

A trial's configuration is an ordinary `MethodRun`, so its cells have the same keys as a grid
cell of the same configuration: tuned and swept rows are one store. This module does not
import Optuna (`harness list` and suite loading never do); `harness.tune` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.errors import UsageError
from harness.typecheck import kind, show

if TYPE_CHECKING:
    from harness.suite import MethodRun

THEN = "then"  # the reserved search key: steps appended after the method


@dataclass(frozen=True)
class Dim:
    """One searched option: a range (`low`..`high`, int or float, optional step/log) or a
    choice among `choices`."""

    name: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    def describe(self) -> str:
        if self.choices is not None:
            return f"{self.name} in {{{', '.join(show(c) for c in self.choices)}}}"
        text = f"{self.name} in [{self.low:g}, {self.high:g}]"
        if self.step:
            text += f" step {self.step:g}"
        return text + (" (log)" if self.log else "")


@dataclass(frozen=True)
class Space:
    """What one `[[methods]]` entry lets the tuner vary, with its fixed `config`."""

    method: str
    dims: tuple[Dim, ...]
    fixed: tuple[tuple[str, Any], ...] = ()
    models: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        return f"{self.method}: " + ", ".join(d.describe() for d in self.dims)

    def applies_to(self, model: str) -> bool:
        return self.models is None or model in self.models

    def run(self, point: dict[str, Any]) -> MethodRun:
        """The ordinary run of one point of this space (keys: the dims' names)."""
        from harness.suite import MethodRun

        cfg = dict(self.fixed)
        then = ""
        for d in self.dims:
            value = point[d.name]
            if d.name == THEN:
                then = value
            else:
                cfg[d.name] = value
        if not then:
            return MethodRun(self.method, cfg)
        return MethodRun("pipeline", {"steps": [step_spec(self.method, cfg),
                                                *then.split("+")]})


def step_spec(method: str, cfg: dict[str, Any]) -> str:
    """A pipeline step string (`l1-filter:ratio=0.45`) for a method and its config."""
    if not cfg:
        return method
    return method + ":" + ",".join(f"{k}={show(v, 1000)}" for k, v in sorted(cfg.items()))


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def parse(raw: Any, method: str, options: set[str], where: str) -> tuple[Dim, ...]:
    """The dims of a `search` table; every problem is one line naming the key."""
    if not isinstance(raw, dict) or not raw:
        raise UsageError(f"{where}: search must be a non-empty table of option = range or "
                         "choices, e.g. search = {{ ratio = [0.1, 0.8] }}")
    dims = []
    for name, spec in raw.items():
        if name != THEN and name not in options:
            raise UsageError(f"{where}: search option {name!r} is not an option of '{method}' "
                             f"(valid: {', '.join(sorted(options | {THEN}))})")
        dims.append(_dim(name, spec, f"{where} search.{name}"))
    return tuple(dims)


def _dim(name: str, spec: Any, where: str) -> Dim:
    if isinstance(spec, list) and len(spec) == 2 and all(map(_number, spec)):
        spec = {"low": spec[0], "high": spec[1]}
    elif isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise UsageError(f"{where}: expected [low, high], a list of choices or a table "
                         f"{{ low, high, step, log }} / {{ choices }}, not {show(spec)} "
                         f"({kind(spec)})")
    bad = sorted(set(spec) - {"low", "high", "step", "log", "choices"})
    if bad:
        raise UsageError(f"{where}: unknown key {bad[0]!r} (valid: choices, high, log, low, step)")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise UsageError(f"{where}: choices cannot be combined with a range")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise UsageError(f"{where}: choices must be a non-empty list")
        if any(isinstance(c, list | dict) for c in choices):
            raise UsageError(f"{where}: each choice must be a string, number or boolean")
        if len({show(c) for c in choices}) != len(choices):
            raise UsageError(f"{where}: a choice is listed twice")
        if name == THEN and not all(isinstance(c, str) for c in choices):
            raise UsageError(f"{where}: then-choices are step strings (\"\" = none)")
        return Dim(name, choices=tuple(choices))
    if name == THEN:
        raise UsageError(f"{where}: then takes a list of step strings, e.g. [\"\", \"int8-ptq\"]")
    if "low" not in spec or "high" not in spec:
        raise UsageError(f"{where}: a range needs low and high")
    low, high = spec["low"], spec["high"]
    step, log = spec.get("step"), spec.get("log", False)
    for key, v in (("low", low), ("high", high)) + ((("step", step),) if step is not None else ()):
        if not _number(v) or not math.isfinite(v):
            raise UsageError(f"{where}: {key} must be a number, not {show(v)} ({kind(v)})")
    if not isinstance(log, bool):
        raise UsageError(f"{where}: log must be true or false")
    if not low < high:
        raise UsageError(f"{where}: low ({low:g}) must be below high ({high:g})")
    if step is not None and step <= 0:
        raise UsageError(f"{where}: step must be > 0")
    if log and (step is not None or low <= 0):
        raise UsageError(f"{where}: a log range needs low > 0 and no step")
    integer = all(isinstance(v, int) for v in (low, high)) and (step is None
                                                                or isinstance(step, int))
    return Dim(name, low=low, high=high, step=step, log=log, integer=integer)


def corners(dims: tuple[Dim, ...]) -> list[dict[str, Any]]:
    """Points worth checking before a search: each range's ends and each choice, with the
    other dims at their first value (the suite loader builds each one's Config, so a range
    whose end is no valid config is an error at load time, not trial 7)."""
    first = {d.name: d.choices[0] if d.choices is not None else d.low for d in dims}
    points = []
    for d in dims:
        for v in d.choices if d.choices is not None else (d.low, d.high):
            points.append({**first, d.name: v})
    return points
