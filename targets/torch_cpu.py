"""`torch-cpu`: PyTorch eager on the CPU, running the module itself (no export)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from harness.api import Artifact
from harness.registry import TARGETS
from harness.targets._common import dist_version


class TorchSession:
    def __init__(self, module: Any, threads: int, precision: str) -> None:
        torch.set_num_threads(threads)
        self.module = module.eval()
        self.precision = precision

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self.module(torch.from_numpy(batch))
        return [t.numpy() for t in (out if isinstance(out, tuple | list) else [out])]


@TARGETS.register()
class TorchCPU:
    """PyTorch eager on the CPU: fp32 modules, or int8 modules from torch.ao (x86 backend)."""

    name: ClassVar[str] = "torch-cpu"
    scores_accuracy: ClassVar[bool] = True
    session_threads: ClassVar[bool] = False  # torch's intra-op pool is the process's

    def available(self) -> str | None:
        return None

    def versions(self) -> dict[str, str]:
        return {"torch": dist_version("torch")}

    def prepare(self, artifact: Artifact, batch: int, threads: int, precision: str) -> TorchSession:
        if artifact.module is None:
            raise ValueError("torch-cpu needs the nn.Module; this artifact has only a file")
        if precision not in ("fp32", "int8"):
            raise ValueError(f"torch-cpu runs fp32 or torch.ao int8 modules (asked for {precision})")
        return TorchSession(artifact.module, threads, precision)
