"""One helper the timing benchmarks share: a torch model exported to ONNX and opened on a
target in fp32, as the runner opens a cell's session (spinning off where the target has it:
the runner's default, README "Threads and spinning")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def fp32_session(target: Any, model: torch.nn.Module, shape: tuple[int, ...], path: Path,
                 batch: int, threads: int) -> Any:
    from harness.api import Artifact
    from harness.export import to_onnx

    art = Artifact(to_onnx(model, shape, path), None, shape, (10,), "fp32")
    knobs = {"spinning": False} if "spinning" in getattr(target, "settings", ()) else {}
    return target.prepare(art, batch, threads, "fp32", **knobs)
