"""`low-rank`: factorize convs and linears by truncated SVD at a rank ratio, then fine-tune.

- channel (Zhang et al. 2015 style): a kxk conv C->N becomes kxk C->r followed by 1x1 r->N,
  from the SVD of the weight reshaped to (N, C*k*k);
- spatial (Jaderberg et al. 2014, scheme 2): kxk C->N becomes kx1 C->r then 1xk r->N, from the
  SVD of the weight rearranged to (C*k, N*k);
- linear: W (N x M) becomes two linears M->r->N.
A layer is factorized only where it saves parameters at that rank; at full rank the factor pair
reproduces the layer exactly (up to float error).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from harness.api import Compressed, Context
from harness.registry import METHODS


def _svd(mat: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) with A @ B the best rank-`rank` approximation of `mat`, energy split evenly."""
    u, s, vh = torch.linalg.svd(mat.double(), full_matrices=False)
    root = s[:rank].sqrt()
    return (u[:, :rank] * root).float(), (root[:, None] * vh[:rank]).float()


def factorize_linear(layer: nn.Linear, rank: int) -> nn.Sequential:
    a, b = _svd(layer.weight.detach(), rank)  # (N, r), (r, M)
    first = nn.Linear(layer.in_features, rank, bias=False)
    second = nn.Linear(rank, layer.out_features, bias=layer.bias is not None)
    first.weight.data.copy_(b)
    second.weight.data.copy_(a)
    if layer.bias is not None:
        second.bias.data.copy_(layer.bias.detach())
    return nn.Sequential(first, second)


def factorize_conv_channel(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    n, c, kh, kw = conv.weight.shape
    a, b = _svd(conv.weight.detach().reshape(n, c * kh * kw), rank)  # (N, r), (r, C*k*k)
    first = nn.Conv2d(c, rank, (kh, kw), conv.stride, conv.padding, conv.dilation, bias=False)
    second = nn.Conv2d(rank, n, 1, bias=conv.bias is not None)
    first.weight.data.copy_(b.reshape(rank, c, kh, kw))
    second.weight.data.copy_(a.reshape(n, rank, 1, 1))
    if conv.bias is not None:
        second.bias.data.copy_(conv.bias.detach())
    return nn.Sequential(first, second)


def factorize_conv_spatial(conv: nn.Conv2d, rank: int) -> nn.Sequential:
    n, c, kh, kw = conv.weight.shape
    # W[n, c, i, j] = sum_r V[c, i, r] H[r, n, j]
    mat = conv.weight.detach().permute(1, 2, 0, 3).reshape(c * kh, n * kw)
    a, b = _svd(mat, rank)  # (C*kh, r), (r, N*kw)
    sh, sw = conv.stride if isinstance(conv.stride, tuple) else (conv.stride, conv.stride)
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (conv.padding, conv.padding)
    first = nn.Conv2d(c, rank, (kh, 1), (sh, 1), (ph, 0), bias=False)
    second = nn.Conv2d(rank, n, (1, kw), (1, sw), (0, pw), bias=conv.bias is not None)
    first.weight.data.copy_(a.reshape(c, kh, rank).permute(2, 0, 1).unsqueeze(-1))
    second.weight.data.copy_(b.reshape(rank, n, kw).permute(1, 0, 2).unsqueeze(2))
    if conv.bias is not None:
        second.bias.data.copy_(conv.bias.detach())
    return nn.Sequential(first, second)


def full_rank(layer: nn.Module, mode: str) -> int:
    if isinstance(layer, nn.Linear):
        return min(layer.weight.shape)
    n, c, kh, kw = layer.weight.shape
    return min(n, c * kh * kw) if mode == "channel" else min(c * kh, n * kw)


def factorized_params(layer: nn.Module, rank: int, mode: str) -> int:
    if isinstance(layer, nn.Linear):
        return rank * (layer.in_features + layer.out_features)
    n, c, kh, kw = layer.weight.shape
    return rank * (c * kh * kw + n) if mode == "channel" else rank * (c * kh + n * kw)


def default_layers(model: nn.Module) -> list[str]:
    """Every grouped-free conv with a kernel larger than 1 but the stem, and every linear but
    the classifier."""
    convs = [n for n, m in model.named_modules()
             if isinstance(m, nn.Conv2d) and m.groups == 1 and m.kernel_size != (1, 1)]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return convs[1:] + linears[:-1]


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, new)


@METHODS.register()
class LowRank:
    """Truncated-SVD factorization of convs (channel or spatial) and linears at a rank ratio."""

    name: ClassVar[str] = "low-rank"
    version: ClassVar[str] = "1"

    @dataclass(frozen=True)
    class Config:
        rank_ratio: float = 0.5  # kept rank / full rank of each factorized layer
        mode: str = "channel"  # "channel" (kxk then 1x1) | "spatial" (kx1 then 1xk)
        layers: tuple[str, ...] | None = None  # default: see default_layers()

        def __post_init__(self) -> None:
            if not 0.0 < self.rank_ratio <= 1.0:
                raise ValueError("rank_ratio must be in (0, 1]")
            if self.mode not in ("channel", "spatial"):
                raise ValueError("mode must be 'channel' or 'spatial'")

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        modules = dict(model.named_modules())
        names = list(cfg.layers) if cfg.layers else default_layers(model)
        done: dict[str, int] = {}
        for name in names:
            if name not in modules:
                raise ValueError(f"no layer named {name}")
            layer = modules[name]
            rank = max(1, round(cfg.rank_ratio * full_rank(layer, cfg.mode)))
            if factorized_params(layer, rank, cfg.mode) >= layer.weight.numel():
                continue  # no saving at this rank: keep the layer whole
            if isinstance(layer, nn.Linear):
                new = factorize_linear(layer, rank)
            elif cfg.mode == "channel":
                new = factorize_conv_channel(layer, rank)
            else:
                new = factorize_conv_spatial(layer, rank)
            _replace(model, name, new)
            done[name] = rank
        return Compressed(model=model, info={"ranks": done})
