"""The contracts between the five areas. Keep them small: issues 3-5 build on them.

Methods compress, targets predict, the harness alone trains, measures, times and stores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

@dataclass(frozen=True)
class ModelSpec:
    """A buildable network: `build(num_classes=...)` returns a fresh nn.Module."""

    name: str
    build: Callable[..., Any]
    input_shape: tuple[int, ...]  # one sample, e.g. (1, 28, 28)
    task: str = "classify"  # "classify" | "detect"
    description: str = ""


@runtime_checkable
class DatasetSpec(Protocol):
    """A dataset: iterables of (x, y) tensors. `where` says how to get it when it is missing."""

    name: str
    num_classes: int
    input_shape: tuple[int, ...]
    where: str

    def train(self) -> Any: ...  # a torch Dataset

    def test(self) -> Any: ...

    def calibration(self, n: int) -> Any: ...


@dataclass
class Context:
    """What a method may use: data, the teacher (the trained baseline), a fine-tune loop, a log."""

    train_data: Any  # torch Dataset
    test_data: Any
    num_classes: int
    input_shape: tuple[int, ...]
    device: str = "cpu"
    teacher: Any = None
    # finetune(model, epochs=None, masks=None, loss=None, extra_params=None, constraint=None):
    # the suite's fine-tune recipe; train(...) the same with its baseline training recipe
    finetune: Callable[..., Any] | None = None
    train: Callable[..., Any] | None = None
    train_epochs: float = 1.0  # the epochs of the suite's baseline recipe (a student's budget)
    evaluate: Callable[[Any], float] | None = None  # top-1 in [0, 1] on the test subset
    log: Callable[[str], None] = print
    seed: int = 0
    workdir: Path | None = None  # where a method may write its own artifacts (cached with it)
    calibration: Callable[[int], Any] | None = None  # n -> the first n calibration items
    # the targets of this run (None: all): per-runtime toolchains (INT8) run only for these
    targets: tuple[str, ...] | None = None


@dataclass(frozen=True)
class TargetArtifact:
    """A runtime-specific model a method made itself (e.g. a QDQ ONNX, an NNCF IR, a torch.ao
    int8 module), with the toolchain that made it: the row says so."""

    path: Path | None = None  # an ONNX or OpenVINO IR (.xml) file
    module: Any = None  # an nn.Module, for eager runtimes
    toolchain: str = ""
    precision: str = "int8"


@dataclass
class Compressed:
    """What a method returns. `finetune` False means the method already trained the model."""

    model: Any  # nn.Module: what torch-side accuracy, parameters and FLOPs are measured on
    # per target name: a runtime-specific artifact; targets not listed get the ONNX export of
    # `model` (a method with artifacts for some targets only fails the others' cells)
    artifacts: dict[str, TargetArtifact] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    masks: dict[str, Any] | None = None  # parameter name -> 0/1 mask held during fine-tuning
    constraint: Callable[[Any], None] | None = None  # re-applied after every fine-tune step
    finetune: bool = True
    scored: Any = None  # the module whose torch-side top-1 is reported, when not `model`
    # the one-shot accuracy (compressed straight to the final state, no retraining) when the
    # method retrains inside apply: the runner reports it as top1_pruned instead of `model`'s
    top1_pruned: float | None = None


class Method(Protocol):
    """How a model is compressed. One file per family in `methods/`, registered by decorator."""

    name: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type]  # a frozen dataclass; suite files sweep its fields

    def apply(self, model: Any, cfg: Any, ctx: Context) -> Compressed: ...


@dataclass(frozen=True)
class Artifact:
    """What a target loads: the exported ONNX file and, for eager runtimes, the module itself."""

    onnx_path: Path | None
    module: Any = None
    input_shape: tuple[int, ...] = ()  # one sample
    output_shape: tuple[int, ...] = ()  # one sample's first output
    precision: str = "fp32"


class Session(Protocol):
    """A prepared model. `run` predicts only; it never times itself (harness/timing.py does)."""

    precision: str  # the precision the runtime actually uses, e.g. "fp32", "bf16"

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...


class Target(Protocol):
    """Where a model runs. `available()` is None when usable, else a one-line reason.

    Optional class attributes the runner reads: `scores_accuracy` (False: timing only),
    `settings` (runtime knobs beyond threads, passed to `prepare`), `session_threads` (True,
    the default: each session owns its threads, so calls under timing.REOPEN_BELOW_MS are
    timed on fresh sessions every round; False where sessions share the process's threads or
    opening one is costly, as torch's)."""

    name: ClassVar[str]

    def available(self) -> str | None: ...

    def versions(self) -> dict[str, str]: ...

    def prepare(self, artifact: Artifact, batch: int, threads: int, precision: str) -> Session: ...


def session_threads(target: Any) -> bool:
    """Do `target`'s sessions own their threads (`Target.session_threads`, default True)? The
    runner reopens such sessions for short calls and `harness plan` costs it: one rule."""
    return bool(getattr(target, "session_threads", True))


def build_model(spec: ModelSpec, num_classes: int, input_shape: tuple[int, ...],
                options: dict[str, Any] | None = None) -> Any:
    """A fresh model sized for a dataset: its classes, and its input channels and image size
    where the builder takes them (so the CIFAR ResNets also run on 1-channel Fashion-MNIST and
    detectors make their anchors for the dataset's image size); `options` are the suite's
    `model_options` for this model."""
    import inspect

    kw: dict[str, Any] = {"num_classes": num_classes, **(options or {})}
    params = inspect.signature(spec.build).parameters
    if "in_channels" in params:
        kw["in_channels"] = input_shape[0]
    if "image_size" in params:
        kw["image_size"] = tuple(input_shape[1:])
    return spec.build(**kw)


def calibration_subset(data: Any, n: int) -> Any:
    """The first `n` items of `data` in a fixed shuffled order (seed 0): calibration sets."""
    import torch
    from torch.utils.data import Subset

    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n]
    return Subset(data, order.tolist())
