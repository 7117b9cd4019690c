"""The sweep as a plan of steps: baseline(model) -> compress(model, config) -> measure(target).

MLPerf's split carried one level up: a target predicts, `timing.py` times, an executor
schedules (`harness/executors/`). Each step is frozen plain data with its own cache key and
the keys it needs, so an executor can run it in this process or on another machine; a step
returns plain data and never writes the store: the driver (`Runner.run`) alone does, as
LoadGen alone writes its logs. Exports are not separate steps: `harness.export.to_onnx` is
content-addressed, so the one fp32 export of a network is made once wherever it is needed.

Nothing here trains or times; `build` only reads the store (which cells are finished) and the
cache (which steps would be cache hits).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.suite import MethodRun

KINDS = ("baseline", "compress", "measure")


@dataclass(frozen=True)
class Step:
    kind: str  # "baseline" | "compress" | "measure"
    model: str
    key: str  # the step's cache key (measure: the cell key)
    run: MethodRun | None = None  # compress, measure
    target: str | None = None  # measure
    needs: tuple[str, ...] = ()  # keys of the steps whose outputs it reads
    cached: bool = False  # its output is already in the cache (a compute step) or store

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown step kind {self.kind!r} (choose from: {KINDS})")
        if self.kind == "measure" and (self.run is None or self.target is None):
            raise ValueError("a measure step needs a method run and a target")

    @property
    def label(self) -> str:
        parts = [self.kind, self.model]
        if self.run is not None and self.kind != "baseline":
            parts.append(self.run.label)
        if self.target:
            parts.append(f"on {self.target}")
        return " ".join(parts)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    skipped: tuple[tuple[str, MethodRun, str], ...] = ()  # (model, run, target) already stored
    by_key: dict[str, Step] = field(default_factory=dict, compare=False)


def build(runner: Any, store: Any, runs: list[MethodRun] | None = None) -> Plan:
    """The steps a sweep still has to run, in dependency order (a baseline before its
    compressions, a compression before its measurements); finished cells are left out unless
    the run is forced. `runs`: only these method runs (and the baselines), not the grid."""
    from harness import cache

    steps: list[Step] = []
    skipped: list[tuple[str, MethodRun, str]] = []
    force = runner.o.force
    planned: set[str] = set()  # cell keys: each is measured (or skipped) once
    for model in runner.o.suite.models:
        base_key = runner.baseline_key(model)
        base_step: Step | None = None
        for run in runner.method_runs(model, runs):
            todo = []
            for t in runner.targets:
                cell = runner.cell_key(model, run, t)
                if cell in planned:  # two [[methods]] entries that name the same cell
                    continue
                planned.add(cell)
                if not force and store.finished(cell):
                    skipped.append((model, run, t))
                else:
                    todo.append((t, cell))
            if not todo:
                continue
            if base_step is None:
                base_step = Step("baseline", model, base_key, MethodRun("baseline"),
                                 cached=not force and cache.peek(runner.baseline_folder(model)))
                steps.append(base_step)
            needs = (base_key,)
            if run.method != "baseline":
                ckey = runner.compressed_key(model, run)
                if ckey not in {s.key for s in steps}:
                    steps.append(Step("compress", model, ckey, run, needs=needs,
                                      cached=not force and cache.peek(
                                          runner.compressed_folder(model, run))))
                needs = (base_key, ckey)
            for t, cell in todo:
                steps.append(Step("measure", model, cell, run, t, needs=needs))
    return Plan(tuple(steps), tuple(skipped), {s.key: s for s in steps})
