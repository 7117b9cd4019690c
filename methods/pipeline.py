"""`pipeline`: chain methods, fine-tuning between steps (e.g. l1-filter -> fine-tune -> int8-ptq).

Steps are written `method` or `method:key=value,key=value` (values parsed as TOML, else kept
as strings): `steps = ["l1-filter:plan=56-B", "int8-ptq"]`.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from typing import Any, ClassVar

from harness.api import Compressed, Context
from harness.registry import METHODS


def parse_step(step: str) -> tuple[str, dict[str, Any]]:
    """`l1-filter:plan=56-B,ratio=0.5` -> ("l1-filter", {"plan": "56-B", "ratio": 0.5})."""
    name, _, rest = step.partition(":")
    cfg: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"pipeline step '{step}': expected key=value, got '{item}'")
        try:
            cfg[key.strip()] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            cfg[key.strip()] = value.strip()
    return name.strip(), cfg


@METHODS.register()
class Pipeline:
    """Methods applied in sequence, fine-tuning after each step that asks for it."""

    name: ClassVar[str] = "pipeline"
    version: ClassVar[str] = "1"

    @dataclass(frozen=True)
    class Config:
        steps: tuple[str, ...] = ("l1-filter", "int8-ptq")

        def __post_init__(self) -> None:
            if not self.steps:
                raise ValueError("a pipeline needs at least one step")
            for step in self.steps:
                name, cfg = parse_step(step)
                if name == "pipeline":
                    raise ValueError("pipelines do not nest")
                METHODS.get(name).Config(**cfg)

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        comp = Compressed(model=model)
        for i, step in enumerate(cfg.steps):
            name, step_cfg = parse_step(step)
            method = METHODS.get(name)
            comp = method().apply(comp.model, method.Config(**step_cfg), ctx)
            last = i == len(cfg.steps) - 1
            if not last and comp.finetune and ctx.finetune is not None:
                ctx.finetune(comp.model, masks=comp.masks, constraint=comp.constraint)
        return comp
