"""`weight-sharing`: Deep Compression's k-means weight clustering (Han et al. 2016).

Each conv/linear layer's weights are clustered into 2^bits shared values (linear initialisation,
as the paper found best); fine-tuning keeps the sharing: after every step each weight is set to
its cluster's mean, which is the paper's centroid update (gradients summed per cluster) under
SGD up to the step size. Zero weights (from earlier pruning) stay zero. The dense fp32 graph is
what runtimes execute, so there is no speedup; the gain is storage, reported as the codebook
size (indices at `bits` per weight + fp32 codebooks + the other parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from harness.api import Compressed, Context
from harness.registry import METHODS


def kmeans_1d(values: torch.Tensor, k: int, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids, assignment) of 1-D values, centroids initialised linearly over [min, max]."""
    v = values.detach().double()
    k = max(1, min(k, v.numel()))
    centroids = torch.linspace(float(v.min()), float(v.max()), k, dtype=torch.float64)
    assign = torch.zeros_like(v, dtype=torch.long)
    for _ in range(iters):
        assign = (v[:, None] - centroids[None, :]).abs().argmin(1)
        sums = torch.zeros(k, dtype=torch.float64).index_add_(0, assign, v)
        counts = torch.bincount(assign, minlength=k).double()
        new = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if torch.allclose(new, centroids):
            break
        centroids = new
    return centroids.float(), assign


class SharedWeights:
    """Per-layer cluster assignments; `__call__(model)` re-imposes the sharing."""

    def __init__(self, assignments: dict[str, tuple[torch.Tensor, torch.Tensor, int]]) -> None:
        self.assignments = assignments  # param name -> (nonzero mask, cluster index, k)

    def __call__(self, model: nn.Module) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, (nz, assign, k) in self.assignments.items():
                p = params[name]
                vals = p[nz]
                sums = torch.zeros(k, dtype=vals.dtype).index_add_(0, assign, vals)
                counts = torch.bincount(assign, minlength=k).clamp(min=1).to(vals.dtype)
                p[nz] = (sums / counts)[assign]
                p[~nz] = 0


@METHODS.register()
class WeightSharing:
    """Deep Compression k-means weight sharing: 2^bits shared values per layer."""

    name: ClassVar[str] = "weight-sharing"
    version: ClassVar[str] = "1"

    @dataclass(frozen=True)
    class Config:
        bits: int = 4  # codebook index bits per weight (Han et al.: 8 conv / 5 fc on AlexNet)

        def __post_init__(self) -> None:
            if not 1 <= self.bits <= 8:
                raise ValueError("bits must be in 1..8")

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        k = 2**cfg.bits
        assignments = {}
        coded_bits = 0
        shared = 0
        for mname, mod in model.named_modules():
            if not isinstance(mod, nn.Conv2d | nn.Linear):
                continue
            name = f"{mname}.weight" if mname else "weight"
            w = mod.weight.detach()
            nz = w != 0
            centroids, assign = kmeans_1d(w[nz], k)
            with torch.no_grad():
                mod.weight[nz] = centroids[assign]
            assignments[name] = (nz, assign, len(centroids))
            coded_bits += w.numel() * cfg.bits + len(centroids) * 32
            shared += w.numel()
        other = sum(p.numel() for p in model.parameters()) - shared
        size = coded_bits // 8 + other * 4
        return Compressed(model=model, constraint=SharedWeights(assignments),
                          info={"bits": cfg.bits, "size_codebook_bytes": int(size)})
