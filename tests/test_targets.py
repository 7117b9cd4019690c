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


def test_the_export_store_tells_apart_networks_that_differ_only_in_an_attribute(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The same checkpoint behind two internal resizes (model_options input_shape [3, 32, 32]
    and [3, 8, 8]) is two graphs: each gets its own export, and each agrees with torch (the
    store used to hand the second one the first one's file)."""
    import onnxruntime as ort

    from harness import export
    from harness.model_refs import Resized

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 2))
    shape = (3, 16, 16)
    a, b = Resized(net, (32, 32)), Resized(net, (8, 8))
    assert export.network_key(a, shape) != export.network_key(b, shape)
    export.use_store(tmp_path / "exports")
    try:
        before = dict(export.STATS)
        for model, name in ((a, "a.onnx"), (b, "b.onnx")):
            to_onnx(model, shape, tmp_path / name)
        assert export.STATS["reused"] == before["reused"]
        to_onnx(a, shape, tmp_path / "a2.onnx")  # the same network again: reused
        assert export.STATS["reused"] == before["reused"] + 1
    finally:
        export.use_store(None)
    x = torch.randn(2, *shape)
    for model, name in ((a, "a.onnx"), (b, "b.onnx")):
        got = ort.InferenceSession(str(tmp_path / name)).run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            assert np.allclose(got, model(x).numpy(), atol=1e-5), name
