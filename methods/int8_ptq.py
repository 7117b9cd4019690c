"""`int8-ptq`: post-training static INT8 with each runtime's own toolchain (see _quant.py).

Calibration uses training images, never test images. The torch-side accuracy columns
(top1_pruned/retrained) are those of the torch.ao int8 model; each target's top-1 is measured
on its own int8 artifact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.api import Compressed, Context
from harness.methods._quant import calibration_array, quantize_for_all
from harness.registry import METHODS


@METHODS.register()
class Int8PTQ:
    """Static INT8: ORT QDQ (u8/s8), NNCF for OpenVINO, torch.ao x86; calibrated on train data."""

    name: ClassVar[str] = "int8-ptq"
    version: ClassVar[str] = "1"

    @dataclass(frozen=True)
    class Config:
        calibration: int = 256  # training images used to calibrate activation ranges
        per_channel: bool = True  # per-channel weight scales (ORT; NNCF always per-channel)
        preset: str = "performance"  # NNCF: "performance" (symmetric) | "mixed"

        def __post_init__(self) -> None:
            if self.calibration < 1:
                raise ValueError("calibration must be >= 1")
            if self.preset not in ("performance", "mixed"):
                raise ValueError("preset must be 'performance' or 'mixed'")

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        calib = calibration_array(ctx, cfg.calibration)
        arts, skipped = quantize_for_all(model.eval(), ctx, calib, cfg.per_channel, cfg.preset)
        return Compressed(model=model, scored=arts["torch-cpu"].module, artifacts=arts,
                          finetune=False,
                          info={"calibration": len(calib), "skipped_toolchains": skipped})
