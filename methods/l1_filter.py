"""`l1-filter`: Li et al. 2016, filters (neurons) with the smallest L1 norm physically removed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from harness.api import Compressed, Context
from harness.methods._filters import l1_norm, prune_filters, prunable_layers
from harness.registry import METHODS


@METHODS.register()
class L1Filter:
    """Li et al. 2016: remove the lowest-L1 filters/neurons; the result is a smaller dense model."""

    name: ClassVar[str] = "l1-filter"
    version: ClassVar[str] = "1"

    @dataclass(frozen=True)
    class Config:
        ratio: float = 0.5  # fraction of each pruned layer's filters removed
        layers: tuple[str, ...] | None = None  # default: every conv/linear but the classifier

        def __post_init__(self) -> None:
            if not 0.0 <= self.ratio < 1.0:
                raise ValueError("ratio must be in [0, 1)")

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        layers = list(cfg.layers) if cfg.layers else prunable_layers(model)
        modules = dict(model.named_modules())
        unknown = [n for n in layers if n not in modules]
        if unknown:
            raise ValueError(f"no layer named {unknown[0]} (layers: {', '.join(prunable_layers(model))})")
        plan = {n: int(round(cfg.ratio * modules[n].weight.shape[0])) for n in layers}
        removed = prune_filters(model, plan, l1_norm, torch.zeros((1, *ctx.input_shape)))
        return Compressed(model=model, info={"removed": {k: len(v) for k, v in removed.items()}})
