"""`onnxruntime-cpu`: ONNX Runtime's CPU execution provider, all graph optimisations on."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from harness.api import Artifact
from harness.registry import TARGETS
from harness.targets._common import dist_version, missing


class OrtSession:
    def __init__(self, sess: Any, precision: str) -> None:
        self.sess = sess
        self.input = sess.get_inputs()[0].name
        self.precision = precision

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.sess.run(None, {self.input: batch})


@TARGETS.register()
class OnnxRuntimeCPU:
    """ONNX Runtime, CPUExecutionProvider (fp32 graphs, or QDQ INT8 graphs as exported)."""

    name: ClassVar[str] = "onnxruntime-cpu"
    scores_accuracy: ClassVar[bool] = True
    settings: ClassVar[tuple[str, ...]] = ("spinning",)  # runtime knobs beyond threads
    session_threads: ClassVar[bool] = True  # each session its own intra-op pool

    def available(self) -> str | None:
        return missing("onnxruntime", "onnxruntime")

    def versions(self) -> dict[str, str]:
        return {"onnxruntime": dist_version("onnxruntime")}

    def prepare(self, artifact: Artifact, batch: int, threads: int, precision: str,
                spinning: bool = False) -> OrtSession:
        import onnxruntime as ort

        if artifact.onnx_path is None:
            raise ValueError("onnxruntime-cpu needs an ONNX file")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # spinning intra-op threads burn a core while idle-waiting: recorded per row
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
        sess = ort.InferenceSession(
            str(artifact.onnx_path), opts, providers=["CPUExecutionProvider"]
        )
        return OrtSession(sess, precision)
