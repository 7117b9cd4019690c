"""INT8 toolchains: each runtime's int8 model agrees with the fp32 model on a test batch."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from harness.api import Artifact, Context
from harness.registry import DATASETS, METHODS, MODELS, TARGETS
from harness.train import Recipe, fit, eval_arrays

# stated tolerance: top-1 within 3 points of fp32 (256 test images: <= 7 flips), and
# >= 95% of the fp32 predictions unchanged
TOP1_POINTS = 3.0
AGREEMENT = 0.95


@pytest.fixture(scope="module")
def trained(data_dir, tmp_path_factory):  # type: ignore[no-untyped-def]
    ds = DATASETS.get("mnist")(data_dir=data_dir)
    torch.manual_seed(0)
    model = MODELS.get("lenet-5").build(num_classes=10)
    fit(model, ds.train(), Recipe(epochs=3, lr=0.05, batch_size=32))
    work = tmp_path_factory.mktemp("int8")
    def finetune(m, epochs=None, **kw):  # type: ignore[no-untyped-def]
        return fit(m, ds.train(), Recipe(epochs=epochs or 1, lr=0.01, batch_size=32), **kw)

    ctx = Context(train_data=ds.train(), test_data=ds.test(), num_classes=10,
                  input_shape=(1, 28, 28), workdir=work, calibration=ds.calibration,
                  finetune=finetune)
    return model.eval(), ds, ctx


@pytest.mark.parametrize("method_name", ["int8-ptq", "qat"])
def test_int8_agrees_with_fp32_on_every_runtime(method_name: str, trained) -> None:  # type: ignore[no-untyped-def]
    model, ds, ctx = trained
    method = METHODS.get(method_name)
    comp = method().apply(copy.deepcopy(model), method.Config(calibration=128), ctx)
    import io

    # the QAT model is left a plain module (torch.ao's qconfig tags removed): it serialises
    torch.save(comp.model, io.BytesIO())
    x, y = eval_arrays(ds.test(), None)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy().argmax(1)
    ref_top1 = 100 * float((ref == y).mean())
    assert ref_top1 > 80  # the baseline really learned something
    assert {"onnxruntime-cpu", "openvino-cpu", "torch-cpu"} <= set(comp.artifacts)
    for name, art in comp.artifacts.items():
        target = TARGETS.get(name)()
        if target.available():
            continue
        assert art.toolchain and art.precision == "int8"
        a = Artifact(art.path, art.module, (1, 28, 28), (10,), "int8")
        sess = target.prepare(a, len(x), 1, "int8")
        pred = sess.run(x)[0].argmax(1)
        top1 = 100 * float((pred == y).mean())
        assert abs(top1 - ref_top1) <= TOP1_POINTS, (name, top1, ref_top1)
        assert float((pred == ref).mean()) >= AGREEMENT, name
        assert "int8" in sess.precision


def test_ort_artifact_is_qdq_u8_s8(trained) -> None:  # type: ignore[no-untyped-def]
    import onnx

    model, _, ctx = trained
    method = METHODS.get("int8-ptq")
    comp = method().apply(copy.deepcopy(model), method.Config(calibration=32), ctx)
    graph = onnx.load(str(comp.artifacts["onnxruntime-cpu"].path)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    inits = {i.name: i.data_type for i in graph.initializer}
    zero_points = [n.input[2] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert any(inits.get(z) == onnx.TensorProto.UINT8 for z in zero_points)  # u8 activations
    assert any(t == onnx.TensorProto.INT8 for t in inits.values())  # s8 weights
    size = comp.artifacts["onnxruntime-cpu"].path.stat().st_size
    assert size < 0.5 * sum(p.numel() * 4 for p in model.parameters())


def test_nncf_activation_ranges_are_the_calibration_extremes_by_default(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """min-max (the default) sets the first activation's FakeQuantize to the largest value of
    any calibration image; NNCF's own default (mean-min-max) averages each image's extremes
    and clips the one outlier image, which is what cost an undertrained ResNet-56 ten points."""
    pytest.importorskip("nncf")
    import openvino as ov

    from harness.export import to_onnx
    from harness.methods._quant import nncf_openvino

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(),
                                torch.nn.Conv2d(4, 4, 3), torch.nn.Flatten(),
                                torch.nn.Linear(4 * 4 * 4, 3)).eval()
    calib = np.abs(np.random.default_rng(0).standard_normal((32, 1, 8, 8))).astype(np.float32)
    calib[7] *= 40.0  # one image with far larger values than the rest
    fp32 = to_onnx(model, (1, 8, 8), tmp_path / "m.onnx")
    highs = {}
    for ranges in ("min-max", "mean-min-max"):
        art = nncf_openvino(fp32, tmp_path / f"{ranges}.xml", calib, ranges=ranges)
        assert f"{ranges} activations" in art.toolchain
        fq = [op for op in ov.Core().read_model(str(art.path)).get_ordered_ops()
              if op.get_type_name() == "FakeQuantize"]
        first = fq[0]  # the model input's quantizer
        highs[ranges] = float(np.max(first.input_value(2).get_node().get_data()))
    assert highs["min-max"] >= 0.99 * float(calib.max())
    assert highs["mean-min-max"] < 0.5 * float(calib.max())


def test_a_pipeline_is_rebuilt_when_one_of_its_steps_changes(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from harness import suite as suites
    from harness.runner import RunOptions, Runner
    from harness.suite import MethodRun

    s = suites.load("fashion-mnist-resnet")
    r = Runner(RunOptions(suite=s, profile="smoke", targets=["onnxruntime-cpu"],
                          store=tmp_path / "r.db", cache_dir=tmp_path / "cache"))
    run = MethodRun("pipeline", {"steps": ["l1-filter:plan=56-B", "int8-ptq"]})
    before = r.compressed_key("resnet-56", run)
    monkeypatch.setattr(METHODS.get("int8-ptq"), "version", "99")
    assert r.compressed_key("resnet-56", run) != before


def test_ort_int8_weights_use_7_bits_only_where_the_cpu_lacks_vnni(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX Runtime's u8/s8 kernels saturate without VNNI (VPMADDUBSW's int16 sums):
    `reduce_range` there, 8-bit weights elsewhere; the runner keys the artifact by it."""
    from harness import sysinfo

    for arch, isa, want in (("x86_64", ["avx2", "fma"], True),
                            ("x86_64", ["avx2", "avx512f", "avx512_vnni"], False),
                            ("x86_64", ["avx2", "avx_vnni"], False),
                            ("aarch64", [], False)):
        monkeypatch.setattr(sysinfo, "_machine", lambda a=arch, i=isa: {"arch": a, "isa": i})
        assert sysinfo.ort_reduce_range() is want, (arch, isa)
