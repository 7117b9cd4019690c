"""`openvino-cpu`: OpenVINO on the CPU plugin, with the inference precision pinned.

OpenVINO's CPU default runs bf16 on AVX512-BF16/AMX machines even for an fp32 model, so the
hint is always set and the precision the compiled model reports is what gets recorded.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.api import Artifact
from harness.registry import TARGETS
from harness.targets._common import dist_version, missing

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


class OvSession:
    def __init__(self, compiled: Any, precision: str) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.precision = precision

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        res = self.request.infer(batch)
        return [res[o] for o in self.compiled.outputs]


@TARGETS.register()
class OpenVINOCPU:
    """OpenVINO CPU plugin, latency hint, precision pinned (fp32 means f32, never bf16)."""

    name: ClassVar[str] = "openvino-cpu"
    scores_accuracy: ClassVar[bool] = True
    session_threads: ClassVar[bool] = True  # each compiled model its own executor threads

    def available(self) -> str | None:
        return missing("openvino", "openvino")

    def versions(self) -> dict[str, str]:
        return {"openvino": dist_version("openvino")}

    def prepare(self, artifact: Artifact, batch: int, threads: int, precision: str) -> OvSession:
        import openvino as ov

        if artifact.onnx_path is None:
            raise ValueError("openvino-cpu needs an ONNX (or IR) file")
        if precision not in HINTS:
            raise ValueError(f"unknown precision '{precision}' (choose from: {', '.join(HINTS)})")
        core = ov.Core()
        model = core.read_model(str(artifact.onnx_path))
        model.reshape({model.inputs[0].get_any_name(): [batch, *artifact.input_shape]})
        config = {
            "INFERENCE_NUM_THREADS": threads,
            "INFERENCE_PRECISION_HINT": HINTS[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        compiled = core.compile_model(model, "CPU", config)
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        name = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
        used = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(name, name)
        if precision == "int8":
            used = "int8" if used == "fp32" else f"int8+{used}"
        return OvSession(compiled, used)
