"""`weight-level`: Han et al. 2015 magnitude pruning, iterative prune -> retrain, masks held.

The model keeps its shape (zeros stay stored densely in ONNX), so no runtime here runs it
faster; the honest gain is storage (see the compressed-size column) and effective FLOPs.

With `steps` > 1 the method retrains between rounds inside `apply`, so the returned model is no
longer "just pruned". top1_pruned stays one-shot, comparable with every other method's: a copy
of the trained model pruned straight to the final sparsity (same scope and quality rule) is
evaluated and returned as `Compressed.top1_pruned`; the accuracy of the iteratively pruned
model before the runner's last fine-tune is kept in info["top1_iterative_pruned"].
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from harness.api import Compressed, Context
from harness.registry import METHODS


def prunable_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """Weights of every conv and linear layer (biases are kept, as in Han et al.)."""
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear):
            out[f"{name}.weight" if name else "weight"] = mod.weight
    return out


def magnitude_masks(
    weights: dict[str, torch.Tensor], sparsity: float, scope: str, quality: float | None = None
) -> dict[str, torch.Tensor]:
    """0/1 masks. global: one threshold over all weights; layer: each layer to `sparsity`;
    quality q: per-layer threshold q x std(weights) (Han et al.'s rule)."""
    masks = {}
    if quality is not None:
        for k, w in weights.items():
            masks[k] = (w.detach().abs() > quality * w.detach().std()).float()
        return masks
    if scope == "global":
        flat = torch.cat([w.detach().abs().flatten() for w in weights.values()])
        k = int(round(sparsity * flat.numel()))
        thr = flat.kthvalue(k).values if k > 0 else flat.new_tensor(-1.0)
        return {n: (w.detach().abs() > thr).float() for n, w in weights.items()}
    for n, w in weights.items():
        flat = w.detach().abs().flatten()
        k = int(round(sparsity * flat.numel()))
        thr = flat.kthvalue(k).values if k > 0 else flat.new_tensor(-1.0)
        masks[n] = (w.detach().abs() > thr).float()
    return masks


@METHODS.register()
class WeightLevel:
    """Han et al.: zero the smallest weights (global or per-layer), retrain with masks held."""

    name: ClassVar[str] = "weight-level"
    version: ClassVar[str] = "2"  # 2: top1_pruned one-shot when steps > 1

    @dataclass(frozen=True)
    class Config:
        sparsity: float = 0.8  # fraction of conv/linear weights set to zero
        scope: str = "global"  # "global" | "layer"
        steps: int = 1  # prune -> retrain rounds reaching `sparsity` (Han's iterative pruning)
        quality: float | None = None  # per-layer threshold = quality x std; overrides sparsity

        def __post_init__(self) -> None:
            if not 0.0 <= self.sparsity < 1.0:
                raise ValueError("sparsity must be in [0, 1)")
            if self.scope not in ("global", "layer"):
                raise ValueError("scope must be 'global' or 'layer'")
            if self.steps < 1:
                raise ValueError("steps must be >= 1")

    @staticmethod
    def _prune(weights: dict[str, torch.Tensor], sparsity: float, cfg: Config
               ) -> dict[str, torch.Tensor]:
        """Zero the weights `magnitude_masks` drops, in place; the masks."""
        masks = magnitude_masks(weights, sparsity, cfg.scope, cfg.quality)
        with torch.no_grad():
            for n, m in masks.items():
                weights[n].mul_(m)
        return masks

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        one_shot: float | None = None
        if cfg.steps > 1 and ctx.evaluate is not None:
            copied = copy.deepcopy(model)
            self._prune(prunable_weights(copied), cfg.sparsity, cfg)
            one_shot = ctx.evaluate(copied)
            del copied
        weights = prunable_weights(model)
        masks: dict[str, torch.Tensor] = {}
        for step in range(1, cfg.steps + 1):
            # equal fractions of the remaining weights each round: 1 - (1 - s)^(k / steps)
            target = 1.0 - (1.0 - cfg.sparsity) ** (step / cfg.steps)
            masks = self._prune(weights, target, cfg)
            if step < cfg.steps and ctx.finetune is not None:
                ctx.finetune(model, masks=masks)
        kept = sum(int(m.sum()) for m in masks.values())
        total = sum(m.numel() for m in masks.values())
        info: dict[str, Any] = {"sparsity_actual": round(1 - kept / max(1, total), 4)}
        if one_shot is not None and ctx.evaluate is not None:
            info["top1_iterative_pruned"] = ctx.evaluate(model)
        return Compressed(model=model, masks=masks, info=info, top1_pruned=one_shot)
