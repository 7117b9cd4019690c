"""`int8-ptq`: post-training static INT8 with each runtime's own toolchain (see _quant.py).

Calibration uses training images, never test images. The torch-side accuracy columns
(top1_pruned/retrained) are those of the torch.ao int8 model; each target's top-1 is measured
on its own int8 artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.api import Compressed, Context
from harness.methods._quant import (
    calibration_array,
    check_options,
    quantize_for_all,
    scored_int8,
)
from harness.registry import METHODS


@METHODS.register()
class Int8PTQ:
    """Static INT8: ORT QDQ (u8/s8), NNCF for OpenVINO, torch.ao x86; calibrated on train data."""

    name: ClassVar[str] = "int8-ptq"
    # 2: toolchains only for the run's targets; 3: NNCF activation ranges min-max by default
    version: ClassVar[str] = "3"
    per_target: ClassVar[bool] = True  # its artifacts depend on the run's targets

    @dataclass(frozen=True)
    class Config:
        calibration: int = 256  # training images used to calibrate activation ranges
        per_channel: bool = True  # per-channel weight scales (ORT; NNCF always per-channel)
        preset: str = "performance"  # NNCF: "performance" (symmetric) | "mixed"
        # NNCF's activation ranges: "min-max" (over all calibration images, as ORT's MinMax)
        # or "mean-min-max" (NNCF's default: the mean of each image's extremes); see _quant.py
        activation_ranges: str = "min-max"

        def __post_init__(self) -> None:
            check_options(self.calibration, self.preset, self.activation_ranges)

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        calib = calibration_array(ctx, cfg.calibration)
        arts, skipped = quantize_for_all(model.eval(), ctx, calib, cfg.per_channel, cfg.preset,
                                         ranges=cfg.activation_ranges)
        info: dict[str, Any] = {"calibration": len(calib), "skipped_toolchains": skipped}
        return Compressed(model=model, scored=scored_int8(arts, info), artifacts=arts,
                          finetune=False, info=info)


@METHODS.register()
class QAT:
    """Quantization-aware fine-tuning (torch.ao FX fake-quant, x86), then the same INT8 export."""

    name: ClassVar[str] = "qat"
    # 2: toolchains only for the run's targets; 3: NNCF activation ranges min-max by default
    version: ClassVar[str] = "3"
    per_target: ClassVar[bool] = True

    @dataclass(frozen=True)
    class Config:
        epochs: float | None = None  # default: the suite's fine-tune epochs
        calibration: int = 256
        per_channel: bool = True
        preset: str = "performance"
        activation_ranges: str = "min-max"  # as int8-ptq's

        def __post_init__(self) -> None:
            check_options(self.calibration, self.preset, self.activation_ranges)

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        """torch.ao's QAT modules share the model's parameters and BN buffers, so after the
        fake-quant fine-tune `model` holds the QAT-trained fp32 weights: runtimes whose INT8
        toolchain works from an fp32 graph (ORT, NNCF) quantize those; torch converts the QAT
        graph itself."""
        import warnings

        import torch
        from torch.ao.quantization import get_default_qat_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_qat_fx

        assert ctx.finetune is not None
        calib = calibration_array(ctx, cfg.calibration)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.backends.quantized.engine = "x86"
            prepared = prepare_qat_fx(model.train(), get_default_qat_qconfig_mapping("x86"),
                                      (torch.from_numpy(calib[:2]),))
        shared = {id(p) for p in prepared.parameters()}
        if not all(id(p) in shared for p in model.parameters()):
            raise RuntimeError("torch.ao QAT did not share the model's parameters; cannot "
                               "hand the QAT weights to the other runtimes' toolchains")
        if hasattr(model, "detection_loss"):  # the FX graph has the forward, not the loss
            def loss(m: Any, x: Any, y: Any) -> Any:
                return model.detection_loss(x, y, forward=m)

            ctx.finetune(prepared, epochs=cfg.epochs, loss=loss)
        else:
            ctx.finetune(prepared, epochs=cfg.epochs)
        for mod in model.modules():  # prepare_qat_fx tags the shared modules; untag them
            if hasattr(mod, "qconfig"):
                del mod.qconfig
        arts, skipped = quantize_for_all(model.eval(), ctx, calib, cfg.per_channel, cfg.preset,
                                         qat_prepared=prepared, ranges=cfg.activation_ranges)
        info: dict[str, Any] = {"skipped_toolchains": skipped}
        return Compressed(model=model, scored=scored_int8(arts, info), artifacts=arts,
                          finetune=False, info=info)
