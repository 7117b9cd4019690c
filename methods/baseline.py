"""`baseline`: the trained model unchanged; every speedup and accuracy loss is relative to it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from harness.api import Compressed, Context
from harness.registry import METHODS


@METHODS.register()
class Baseline:
    """The trained baseline, unchanged (the reference row of every table)."""

    name: ClassVar[str] = "baseline"
    version: ClassVar[str] = "1"

    @dataclass(frozen=True)
    class Config:
        pass

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        return Compressed(model=model, finetune=False)
