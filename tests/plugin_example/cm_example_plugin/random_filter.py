"""`random-filter`: remove randomly chosen filters, the usual control for a ranking criterion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from harness.api import Compressed, Context
from harness.methods._filters import prunable_layers, prune_filters
from harness.registry import METHODS


@METHODS.register()
class RandomFilter:
    """Random filter pruning (seeded): the control that L1 ranking must beat."""

    name: ClassVar[str] = "random-filter"
    version: ClassVar[str] = "1"

    @dataclass(frozen=True)
    class Config:
        ratio: float = 0.5
        seed: int = 0

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        gen = torch.Generator().manual_seed(cfg.seed)

        def random_scores(weight: torch.Tensor) -> torch.Tensor:
            return torch.rand(weight.shape[0], generator=gen)

        modules = dict(model.named_modules())
        plan = {n: int(round(cfg.ratio * modules[n].weight.shape[0])) for n in prunable_layers(model)}
        prune_filters(model, plan, random_scores, torch.zeros((1, *ctx.input_shape)))
        return Compressed(model=model)
