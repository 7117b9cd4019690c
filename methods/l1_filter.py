"""`l1-filter` (Li et al. 2016) and `fpgm` (He et al. 2019): filter pruning with physical removal.

Both share the plan (a ratio over the prunable layers, or one of Li's named ResNet plans) and
the surgery (Torch-Pruning); they differ only in the criterion that picks the filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from harness.api import Compressed, Context
from harness.methods._filters import (
    LI_PLANS,
    Criterion,
    geometric_median_distance,
    l1_norm,
    li_plan,
    prunable_layers,
    prune_filters,
)
from harness.registry import METHODS


@dataclass(frozen=True)
class FilterConfig:
    ratio: float = 0.5  # fraction of each pruned layer's filters removed (ignored with `plan`)
    plan: str | None = None  # one of Li's named ResNet plans: 56-A, 56-B, 110-A, 110-B
    layers: tuple[str, ...] | None = None  # default: see prunable_layers()
    # keep a multiple of this many filters per layer (nearest to the ratio's count, at least
    # one multiple, never more than the layer has): runtimes' kernels favour such widths.
    # Measured (benchmarks/widths.py: ResNet-56, ORT, 2 threads): ratio 0.4 keeps widths
    # 10/19/38 and ran 1.03x the baseline at batch 1, 1.09x at batch 64; with round_to = 8
    # (8/16/40), 1.20x and 1.40x
    round_to: int | None = None
    # also prune the channels residual adds join (a ResNet's block outputs, a MobileNet's
    # projections), each scored over every layer that writes it; nets pruned through the
    # dependency graph only (torchvision and your own). Default: Li et al.'s choice, shortcut
    # widths kept
    residual: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio < 1.0:
            raise ValueError("ratio must be in [0, 1)")
        if self.round_to is not None and self.round_to < 1:
            raise ValueError("round_to must be >= 1")
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be true or false, not {self.residual!r}")
        if self.plan is not None and self.residual:
            raise ValueError("residual = true prunes by ratio; Li's named plans keep shortcut "
                             "widths")
        if self.plan is not None and self.plan not in LI_PLANS:
            raise ValueError(f"unknown plan '{self.plan}' (choose from: {', '.join(LI_PLANS)})")


def removed_count(filters: int, ratio: float, round_to: int | None = None) -> int:
    """How many of a layer's `filters` a ratio removes; with `round_to`, the count that keeps
    the nearest multiple of it (at least one multiple, at most every filter)."""
    if not round_to:
        return int(round(ratio * filters))
    keep = filters - int(round(ratio * filters))
    keep = max(round_to, round_to * round(keep / round_to))
    return max(0, filters - min(keep, filters))


class FilterPruning:
    """Shared apply(): plan -> criterion -> surgery."""

    # 2: a named layer whose channels a residual add joins is scored over all their writers
    version: ClassVar[str] = "2"
    criterion: ClassVar[Criterion]
    Config = FilterConfig

    def apply(self, model: Any, cfg: FilterConfig, ctx: Context) -> Compressed:
        modules = dict(model.named_modules())
        example = torch.zeros((1, *ctx.input_shape))
        if cfg.plan:
            plan = li_plan(model, cfg.plan)
        else:
            layers = (list(cfg.layers) if cfg.layers
                      else prunable_layers(model, example, cfg.residual))
            unknown = [n for n in layers if n not in modules]
            if unknown:
                raise ValueError(f"no layer named {unknown[0]} (layers: "
                                 f"{', '.join(prunable_layers(model, example, cfg.residual))})")
            plan = {n: removed_count(modules[n].weight.shape[0], cfg.ratio, cfg.round_to)
                    for n in layers}
        removed = prune_filters(model, plan, type(self).criterion, example)
        return Compressed(model=model, info={"removed": {k: len(v) for k, v in removed.items()}})


@METHODS.register()
class L1Filter(FilterPruning):
    """Li et al. 2016: remove the lowest-L1 filters/neurons; the result is a smaller dense model."""

    name: ClassVar[str] = "l1-filter"
    criterion = staticmethod(l1_norm)


@METHODS.register()
class FPGM(FilterPruning):
    """He et al. 2019: remove the filters nearest the geometric median (most replaceable)."""

    name: ClassVar[str] = "fpgm"
    criterion = staticmethod(geometric_median_distance)
