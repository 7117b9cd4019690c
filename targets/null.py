"""`null`: returns a preallocated output. Its timings are the harness's own overhead per call."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from harness import __version__
from harness.api import Artifact
from harness.registry import TARGETS


class NullSession:
    precision = "none"

    def __init__(self, out: np.ndarray) -> None:
        self.out = [out]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.out


@TARGETS.register()
class NullTarget:
    """Harness overhead: predicts nothing, returns a preallocated output (accuracy is chance)."""

    name: ClassVar[str] = "null"
    scores_accuracy: ClassVar[bool] = False
    session_threads: ClassVar[bool] = False

    def available(self) -> str | None:
        return None

    def versions(self) -> dict[str, str]:
        return {"harness": __version__}

    def prepare(self, artifact: Artifact, batch: int, threads: int, precision: str) -> NullSession:
        return NullSession(np.zeros((batch, *artifact.output_shape), dtype=np.float32))
