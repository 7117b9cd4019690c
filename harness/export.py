"""Export to ONNX with a dynamic batch axis (torch.export-based exporter)."""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn


def to_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> Path:
    """Write `model` to `path` (input `input`, output `logits`, batch axis dynamic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    x = torch.zeros((2, *input_shape))
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            str(path),
            dynamo=True,
            dynamic_shapes=({0: batch},),
            input_names=["input"],
            output_names=["logits"],
            verbose=False,
            external_data=False,
        )
    return path
