"""Model-side metrics: parameters, MACs and FLOPs (dense and effective), per-layer table,
file size.

FLOPs come from torch.utils.flop_counter (2 x multiply-adds, batch 1). MACs are the
multiply-accumulates of one sample, = FLOPs / 2: the unit the pruning papers print under the
name "FLOPs" (Li et al. 2016, Table 1: ResNet-56 on CIFAR-10 1.25e8) and what Torch-Pruning's
`count_ops_and_params` returns, so `macs` is the column to set beside those papers' numbers.
"Effective" FLOPs count only multiplications by non-zero weights: what a sparse kernel could
skip, not what any runtime here does skip.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear, nn.ConvTranspose2d)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(total, non-zero) over every parameter, shared ones counted once."""
    total = nonzero = 0
    for p in model.parameters():
        total += p.numel()
        nonzero += int(torch.count_nonzero(p.detach()))
    return total, nonzero


def _counted(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, dict[str, Any]]:
    """One forward pass of one sample under FlopCounterMode: (total FLOPs, per-module counts)."""
    model = model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros((1, *input_shape)))
    return int(counter.get_total_flops()), counter.get_flop_counts()


def layer_table(model: nn.Module, input_shape: tuple[int, ...],
                counts: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per conv/linear layer: shape, weights, non-zero weights, FLOPs, MACs (= FLOPs /
    2), effective FLOPs. `counts`: FlopCounterMode's per-module counts when already taken."""
    if counts is None:
        counts = _counted(model, input_shape)[1]
    root = type(model).__name__
    rows = []
    for name, mod in model.named_modules():
        if not isinstance(mod, LAYER_TYPES):
            continue
        w = mod.weight.detach()
        flops = int(sum(counts.get(f"{root}.{name}", {}).values()))
        nnz = int(torch.count_nonzero(w))
        rows.append(
            {
                "layer": name,
                "type": type(mod).__name__,
                "shape": "x".join(map(str, w.shape)),
                "weights": w.numel(),
                "nonzero": nnz,
                "density": round(nnz / max(1, w.numel()), 4),
                "flops": flops,
                "macs": flops // 2,
                "flops_effective": int(round(flops * nnz / max(1, w.numel()))),
            }
        )
    return rows


def _effective(total: int, rows: list[dict[str, Any]]) -> int:
    """Dense FLOPs less what the layers' zero weights skip."""
    return total - sum(r["flops"] - r["flops_effective"] for r in rows)


def flops(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(dense, effective) FLOPs of one sample."""
    total, counts = _counted(model, input_shape)
    return total, _effective(total, layer_table(model, input_shape, counts))


def byte_sizes(data: bytes) -> tuple[int, int]:
    """(bytes, bytes after zlib level 9): the second shows what sparsity saves in storage."""
    return len(data), len(zlib.compress(data, 9))


def file_sizes(path: Path | None) -> tuple[int | None, int | None]:
    """`byte_sizes` of a file on disk; (None, None) when there is no file."""
    if path is None or not Path(path).exists():
        return None, None
    return byte_sizes(Path(path).read_bytes())


def model_metrics(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any]:
    """Params, dense FLOPs and MACs (one sample; macs = flops / 2), effective FLOPs, layers:
    all from one counted forward pass."""
    total, nonzero = count_params(model)
    dense, counts = _counted(model, input_shape)
    rows = layer_table(model, input_shape, counts)
    return {
        "params_total": total,
        "params_nonzero": nonzero,
        "flops": dense,
        "macs": dense // 2,
        "flops_effective": _effective(dense, rows),
        "layers": rows,
    }
