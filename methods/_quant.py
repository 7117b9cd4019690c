"""INT8 toolchains, one per runtime, each the field's own tool (shared by int8-ptq and qat).

- onnxruntime-cpu: onnxruntime.quantization, static QDQ, activations u8 / weights s8,
  per-channel weights (s8s8 runs 2-3x slower than fp32 on x86 here; u8s8 is the fast path).
- openvino-cpu: NNCF post-training quantization of the OpenVINO model, saved as IR. Activation
  ranges are the global min / max over the calibration images by default (`min-max`, as ORT's
  MinMax calibrator): NNCF's own default (`mean-min-max`, the mean of each calibration item's
  extremes) clipped the activations of an undertrained ResNet-56 (quick profile) so far that
  INT8 scored 41.9% against 52.8% fp32 (2000 test images), where min-max gives 52.2% and ORT
  QDQ 54.0%; on the trained LeNets both agree with fp32 within 0.1 point.
- torch-cpu: torch.ao FX graph mode, x86 backend (real int8 kernels in eager mode).
Runtimes are imported only when a toolchain runs; a missing one is skipped and said so.
"""

from __future__ import annotations

import copy
import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.api import Artifact, Context, TargetArtifact
from harness.export import to_onnx
from harness.train import tensors


def calibration_array(ctx: Context, n: int) -> np.ndarray:
    """`n` training images (fixed shuffled order) as one float32 array."""
    if ctx.calibration is None:
        raise ValueError("this method needs calibration data (ctx.calibration)")
    x, _ = tensors(ctx.calibration(n))
    return np.ascontiguousarray(x.numpy(), dtype=np.float32)


def _v(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def ort_qdq(fp32_onnx: Path, out: Path, calib: np.ndarray, per_channel: bool = True,
            batch: int = 16, reduce_range: bool | None = None) -> TargetArtifact:
    """ONNX Runtime's static QDQ model, u8 activations / s8 weights; `reduce_range` (default:
    `sysinfo.ort_reduce_range()`, so where this machine lacks VNNI) quantizes weights to 7
    bits, which ORT's AVX2 kernels need to avoid saturating (the runner keys the artifact by
    it)."""
    from harness.sysinfo import ort_reduce_range

    if reduce_range is None:
        reduce_range = ort_reduce_range()
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{"input": calib[i : i + batch]} for i in range(0, len(calib), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    pre = out.with_name(out.stem + "-pre.onnx")
    quant_pre_process(str(fp32_onnx), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=per_channel, reduce_range=reduce_range)
    pre.unlink(missing_ok=True)
    return TargetArtifact(path=out, toolchain=f"onnxruntime.quantization {_v('onnxruntime')} "
                          f"QDQ u8/s8{' per-channel' if per_channel else ''}"
                          f"{' reduce-range (7-bit weights: no VNNI)' if reduce_range else ''}")


ACTIVATION_RANGES = ("min-max", "mean-min-max")  # NNCF: global extremes | its own default
PRESETS = ("performance", "mixed")  # NNCF: symmetric activations | asymmetric


def check_options(calibration: int, preset: str, ranges: str) -> None:
    """The INT8 options int8-ptq and qat share: a ValueError naming the first bad one."""
    if calibration < 1:
        raise ValueError("calibration must be >= 1")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of: {', '.join(PRESETS)}")
    if ranges not in ACTIVATION_RANGES:
        raise ValueError(f"activation_ranges must be one of: {', '.join(ACTIVATION_RANGES)}")


def nncf_openvino(fp32_onnx: Path, out_xml: Path, calib: np.ndarray,
                  preset: str = "performance", ranges: str = "min-max") -> TargetArtifact:
    import nncf
    import openvino as ov
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    model = ov.Core().read_model(str(fp32_onnx))
    data = nncf.Dataset([calib[i : i + 1] for i in range(len(calib))])
    presets = {"performance": nncf.QuantizationPreset.PERFORMANCE,
               "mixed": nncf.QuantizationPreset.MIXED}
    extra: dict[str, Any] = {}
    if ranges == "min-max":
        extra["advanced_parameters"] = nncf.AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MINMAX)
    q = nncf.quantize(model, data, preset=presets[preset], subset_size=len(calib), **extra)
    ov.save_model(q, str(out_xml), compress_to_fp16=False)
    return TargetArtifact(path=out_xml, toolchain=f"nncf {_v('nncf')} PTQ ({preset}, {ranges} "
                          f"activations) -> OpenVINO IR {_v('openvino')}")


def torch_x86(model: torch.nn.Module, calib: np.ndarray, prepared: Any = None) -> TargetArtifact:
    """torch.ao FX, x86 backend: calibrate observers (or take a QAT-prepared model) and convert."""
    import warnings

    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.backends.quantized.engine = "x86"
        if prepared is None:
            example = (torch.from_numpy(calib[:2]),)
            prepared = prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping("x86"),
                                  example)
            with torch.inference_mode():
                for i in range(0, len(calib), 32):
                    prepared(torch.from_numpy(calib[i : i + 32]))
        q = convert_fx(prepared.eval())
    return TargetArtifact(module=q, toolchain=f"torch.ao FX x86 {_v('torch')}")


def quantize_for_all(model: torch.nn.Module, ctx: Context, calib: np.ndarray,
                     per_channel: bool, preset: str, qat_prepared: Any = None,
                     ranges: str = "min-max",
                     ) -> tuple[dict[str, TargetArtifact], dict[str, str]]:
    """INT8 artifacts for every runtime of the run (`ctx.targets`; all when None) whose
    toolchain is installed; why others were skipped. A toolchain for a target the run did not
    ask for is never run (torch.ao alone was half of the INT8 work)."""
    from harness import faults

    faults.checkpoint("quantize")
    assert ctx.workdir is not None
    wanted = set(ctx.targets) if ctx.targets is not None else None
    arts: dict[str, TargetArtifact] = {}
    skipped: dict[str, str] = {}
    if wanted is not None and qat_prepared is None:
        # torch-side accuracy needs an INT8 model torch can run: torch.ao's, else ORT's
        if "torch-cpu" not in wanted and "onnxruntime-cpu" not in wanted:
            wanted.add("onnxruntime-cpu")
    if wanted is not None and qat_prepared is not None:
        wanted.add("torch-cpu")  # the QAT graph converts to torch's INT8 model at no cost
    for name in ("onnxruntime-cpu", "openvino-cpu", "torch-cpu"):
        if wanted is not None and name not in wanted:
            skipped[name] = "not a target of this run"
    if wanted is None or "torch-inductor" in wanted:
        # no INT8 toolchain for Inductor here: the reason becomes that cell's error
        from harness.targets.torch_inductor import int8_unsupported

        why = int8_unsupported()
        if why:
            skipped["torch-inductor"] = why
    need_onnx = wanted is None or bool({"onnxruntime-cpu", "openvino-cpu"} & wanted)
    fp32 = (to_onnx(model, tuple(ctx.input_shape), ctx.workdir / "fp32-for-int8.onnx")
            if need_onnx else None)
    if "onnxruntime-cpu" not in skipped:
        if importlib.util.find_spec("onnxruntime"):
            arts["onnxruntime-cpu"] = ort_qdq(fp32, ctx.workdir / "int8-qdq.onnx", calib,
                                              per_channel)
        else:
            skipped["onnxruntime-cpu"] = "onnxruntime not installed"
    if "openvino-cpu" not in skipped:
        if importlib.util.find_spec("openvino") and importlib.util.find_spec("nncf"):
            arts["openvino-cpu"] = nncf_openvino(fp32, ctx.workdir / "int8-nncf.xml", calib,
                                                 preset, ranges)
        else:
            skipped["openvino-cpu"] = "openvino or nncf not installed"
    try:
        if "torch-cpu" not in skipped:
            arts["torch-cpu"] = torch_x86(model, calib, qat_prepared)
    except Exception as exc:  # e.g. FX cannot trace a detector's proposal selection
        if qat_prepared is not None:
            raise
        skipped["torch-cpu"] = (f"torch.ao FX could not quantize this model: "
                                f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}")
    return arts, skipped


class RuntimeModule(torch.nn.Module):
    """An INT8 artifact run by the onnxruntime-cpu target behind a torch forward, so the
    harness's torch-side accuracy ("pruned"/"retrained") is the INT8 model's where torch has no
    INT8 version."""

    def __init__(self, onnx_path: Path) -> None:
        super().__init__()
        self.onnx_path = Path(onnx_path)
        self._session: Any = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._session is None:
            from harness.registry import TARGETS

            art = Artifact(self.onnx_path, None, tuple(x.shape[1:]), (), "int8")
            self._session = TARGETS.get("onnxruntime-cpu")().prepare(
                art, len(x), torch.get_num_threads(), "int8")
        return torch.from_numpy(self._session.run(x.numpy())[0])


def scored_int8(arts: dict[str, TargetArtifact], info: dict[str, Any]) -> Any:
    """The INT8 model torch-side accuracy is measured on: torch.ao's, else ORT's QDQ model,
    else none (the fp32 model's is reported); the row's info says which when not torch.ao's."""
    if "torch-cpu" in arts:
        return arts["torch-cpu"].module
    if "onnxruntime-cpu" in arts:
        info["torch_accuracy_from"] = "onnxruntime-cpu int8 (no torch int8 model)"
        return RuntimeModule(arts["onnxruntime-cpu"].path)
    info["torch_accuracy_from"] = "the fp32 model (no int8 model torch or ORT can run)"
    return None
