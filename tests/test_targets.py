"""Every runtime agrees with torch on the exported model, at batch 1 and batch N."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.api import Artifact
from harness.export import to_onnx
from harness.registry import MODELS, TARGETS

SCORING = [n for n in TARGETS.names() if TARGETS.get(n).scores_accuracy]


@pytest.fixture(scope="module", params=["lenet-300-100", "lenet-5"])
def exported(request, tmp_path_factory):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    spec = MODELS.get(request.param)
    model = spec.build(num_classes=10).eval()
    path = to_onnx(model, spec.input_shape, tmp_path_factory.mktemp("onnx") / "m.onnx")
    return Artifact(path, model, spec.input_shape, (10,))


@pytest.mark.parametrize("target", SCORING)
@pytest.mark.parametrize("batch", [1, 5])
def test_runtime_agrees_with_torch(target: str, batch: int, exported: Artifact) -> None:
    t = TARGETS.get(target)()
    if t.available():
        pytest.skip(t.available())
    x = np.random.default_rng(batch).standard_normal((batch, *exported.input_shape)).astype(
        np.float32)
    with torch.inference_mode():
        want = exported.module(torch.from_numpy(x)).numpy()
    sess = t.prepare(exported, batch, 2, "fp32")
    got = sess.run(x)[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert sess.precision == "fp32"


def test_openvino_fp32_is_pinned_not_bf16(exported: Artifact) -> None:
    """OpenVINO's CPU default is bf16 on AVX512-BF16 machines; fp32 must mean fp32."""
    t = TARGETS.get("openvino-cpu")()
    if t.available():
        pytest.skip(t.available())
    sess = t.prepare(exported, 2, 1, "fp32")
    assert sess.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name() == "f32"
    assert sess.precision == "fp32"


def test_null_target_returns_preallocated_output(exported: Artifact) -> None:
    sess = TARGETS.get("null")().prepare(exported, 3, 1, "fp32")
    a = sess.run(np.zeros((3, 1, 28, 28), np.float32))
    b = sess.run(np.ones((3, 1, 28, 28), np.float32))
    assert a[0].shape == (3, 10) and a[0] is b[0]
