"""Models named by reference in a suite file, no plugin needed.

Besides registered names, a suite's `models` list takes

- `torchvision:NAME`: a torchvision classification model (`torchvision.models.list_models(
  module=torchvision.models)`), built with `weights=None` and the dataset's class count;
- `package.module:callable`: the user's own function or class returning an `nn.Module`, called
  with those of `num_classes`, `in_channels`, `image_size` its signature takes.

A reference resolves to a `RefSpec`, which has what a registered `ModelSpec` has (`name`,
`build`, `task`, `input_shape`, `description`), so the registry hands it out from
`MODELS.get(name)` and the runner, the plan and the methods treat both alike.

Options (`[model_options."torchvision:resnet18"]`), arguments of `RefSpec.build`:

- `input_shape = [C, H, W]`: what the network takes. When the dataset's images have another
  H x W, a bilinear resize is the network's first op (exported and timed with it: both the
  baseline and every compressed model pay it, so speedups stay fair; for clean numbers make the
  dataset produce that size). C may be the dataset's channels, or 3 for grey data (see below).
- `checkpoint`: a state dict (`.safetensors`, or a `torch.save`d dict of tensors read with
  `torch.load(weights_only=True)`: never unpickled). Its content hash is part of the baseline's
  cache key (runner.baseline_key).
- `train = false`: the checkpoint is the baseline as it is (no training); it must then hold
  every tensor of the model.

Grey images into an RGB network: the stem conv is rebuilt with one input channel, and a
checkpoint's RGB stem kernels are summed over their input channels. For a grey image x,
conv(W, [x, x, x]) = conv(W_r + W_g + W_b, x) exactly, so this *is* expanding the grey image to
three equal channels, at a third of the stem's cost and without a copy op in the graph.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pickle  # only to name the error torch.load(weights_only=True) raises
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.errors import UsageError

TORCHVISION = "torchvision:"
# torchvision classification models whose auxiliary heads make forward() return tuples in train
_NO_AUX = {"googlenet", "inception_v3"}
# BatchNorm running-statistics momentum, at least PyTorch's default. MobileNetV3 (and a few
# others) use 0.01, tuned for 600 ImageNet epochs: after the few hundred steps of a benchmark
# budget their running statistics are still near their initial values and the model scores
# chance in eval mode (measured: MobileNetV3-Small at 32x32 after 3 epochs of 2000
# Fashion-MNIST PNGs, 94 steps: 11% with 0.01, 78% with 0.1; 79% on batch statistics).
# Momentum only affects training; the exported inference graph is the same.
_BN_MOMENTUM = 0.1


def is_reference(name: str) -> bool:
    """Does `name` look like a reference (`torchvision:NAME` or `module:callable`)?"""
    return ":" in name


def torchvision_names() -> list[str]:
    """torchvision's classification models (detection, segmentation, video live in submodules
    and are not listed by `list_models(module=torchvision.models)`)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


@dataclass(frozen=True)
class RefSpec:
    """A model built from a reference: the interface of `harness.api.ModelSpec`."""

    name: str
    make: Callable[..., nn.Module]  # (num_classes, in_channels, image_size) -> a fresh network
    input_shape: tuple[int, ...] = ()  # () : the dataset's
    task: str = "classify"
    description: str = ""

    def build(self, num_classes: int = 10, in_channels: int = 3,
              image_size: tuple[int, ...] = (224, 224), input_shape: list[int] | None = None,
              checkpoint: str | None = None, train: bool = True) -> nn.Module:
        """A fresh network for data of `in_channels` x `image_size` (the runner passes the
        dataset's), shaped by the suite's options (see the module docstring). `train` is read
        by the runner (whether the baseline is trained); here it only requires a complete
        checkpoint when false."""
        size = tuple(image_size)
        net_c = in_channels
        if input_shape is not None:
            net_c, size = _check_shape(self.name, input_shape, in_channels)
        net = self.make(num_classes, net_c, size)
        if not isinstance(net, nn.Module):
            raise UsageError(f"model '{self.name}' returned {type(net).__name__}, not a "
                             "torch.nn.Module")
        stem = first_conv(net)
        if stem is not None and stem[2].in_channels != in_channels:
            if not (stem[2].in_channels == 3 and in_channels == 1):
                raise UsageError(f"model '{self.name}' takes {stem[2].in_channels}-channel "
                                 f"images but the dataset's have {in_channels} (only grey into "
                                 "RGB is adapted: set the dataset's channels)")
            adapt_stem(net, in_channels, self.name)
        if checkpoint:
            load_checkpoint(net, checkpoint, complete=not train, name=self.name)
        elif not train:
            raise UsageError(f"model_options for '{self.name}': train = false needs a "
                             "checkpoint (the baseline is then the checkpoint as it is)")
        if tuple(image_size) != size:
            return Resized(net, size)
        return net


def _check_shape(name: str, shape: list[int], data_channels: int) -> tuple[int, tuple[int, int]]:
    if len(shape) != 3 or min(shape) < 1:
        raise UsageError(f"model_options for '{name}': input_shape must be [C, H, W], e.g. "
                         f"[3, 64, 64], not {list(shape)}")
    c, h, w = shape
    if c != data_channels and not (c == 3 and data_channels == 1):
        raise UsageError(f"model_options for '{name}': input_shape has {c} channels but the "
                         f"dataset's images have {data_channels} (use {data_channels}, or 3 "
                         "for grey images into an RGB network)")
    return c, (h, w)


class Resized(nn.Module):
    """The network behind a fixed bilinear resize to the size it was built for: the dataset's
    images reach it at that size on every runtime (ONNX `Resize`)."""

    def __init__(self, net: nn.Module, size: tuple[int, int]) -> None:
        super().__init__()
        self.size = tuple(size)
        self.net = net

    def extra_repr(self) -> str:  # in the repr that export.network_key hashes
        return f"size={self.size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, size=self.size, mode="bilinear", align_corners=False)
        return self.net(x)


def first_conv(net: nn.Module) -> tuple[nn.Module, str, nn.Conv2d] | None:
    """(parent, attribute, conv) of the first Conv2d in module order: the stem of every
    torchvision classification model."""
    for parent in net.modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                return parent, attr, child
    return None


def adapt_stem(net: nn.Module, in_channels: int, name: str) -> None:
    """Rebuild the stem conv for `in_channels` inputs (fresh weights of the same shape
    otherwise; a checkpoint loaded afterwards sums its RGB kernels into it)."""
    found = first_conv(net)
    if found is None or found[2].groups != 1:
        raise UsageError(f"model '{name}': cannot adapt its first layer to {in_channels}-channel "
                         "images (no plain Conv2d stem); give the data the channels it takes")
    parent, attr, conv = found
    setattr(parent, attr, nn.Conv2d(in_channels, conv.out_channels, conv.kernel_size,
                                    conv.stride, conv.padding, conv.dilation,
                                    bias=conv.bias is not None, padding_mode=conv.padding_mode))


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict of tensors: safetensors, or torch.load with weights_only=True (refuses
    anything but tensors and plain containers, so no code runs from the file)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"checkpoint '{path}' is not a file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # objects weights_only refuses (torch's own
        # message suggests loading it anyway, weights_only=False: never here), or no pickle
        what = ("it holds pickled objects, which CompressMark never unpickles"
                if "unsupported global" in str(exc).lower()
                else "it is not a file torch.save wrote")
        raise UsageError(f"checkpoint '{path}' cannot be read as a state dict of tensors: "
                         f"{what} (save model.state_dict() with torch.save, or as "
                         ".safetensors)") from None
    except Exception as exc:  # not a tensor file at all
        said = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
        raise UsageError(f"checkpoint '{path}' cannot be read as a state dict of tensors "
                         f"({type(exc).__name__}: {said[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UsageError(f"checkpoint '{path}' is not a state dict (name -> tensor)")
    return state


def load_checkpoint(net: nn.Module, path: str | Path, complete: bool, name: str) -> None:
    """Load the tensors whose name and shape match (an RGB stem summed for a grey one); the
    rest keep their fresh values, e.g. a classifier for another class count. `complete`
    (train = false: the checkpoint is the baseline) requires every tensor to come from it."""
    state = read_state(path)
    own = net.state_dict()
    fit: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            continue
        mine = own[key]
        if mine.shape == value.shape:
            fit[key] = value
        elif (value.dim() == 4 and mine.dim() == 4 and mine.shape[1] == 1
              and mine.shape[0] == value.shape[0] and mine.shape[2:] == value.shape[2:]):
            fit[key] = value.sum(1, keepdim=True)  # the RGB stem on grey images (docstring)
    if not fit:
        raise UsageError(f"checkpoint '{path}': no tensor matches model '{name}' by name and "
                         f"shape (the model has e.g. {', '.join(list(own)[:3])})")
    missing = [k for k in own if k not in fit and not k.endswith("num_batches_tracked")]
    if complete and missing:
        wrong = [k for k in missing if k in state]  # there, with another shape
        said = (f"; {len(wrong)} of them with another shape, e.g. {wrong[0]} "
                f"{tuple(state[wrong[0]].shape)} where the model has "
                f"{tuple(own[wrong[0]].shape)}" if wrong else "")
        raise UsageError(f"checkpoint '{path}' lacks {len(missing)} tensor(s) of model '{name}' "
                         f"(e.g. {', '.join(missing[:3])}{said}): train = false needs all of "
                         "them")
    unused = [k for k in state if k not in own]
    if complete and unused:  # another architecture whose names happen to cover this one
        raise UsageError(f"checkpoint '{path}' holds {len(unused)} tensor(s) model '{name}' "
                         f"does not have (e.g. {', '.join(unused[:3])}): it is not this "
                         "model's checkpoint, and train = false needs exactly that")
    net.load_state_dict(fit, strict=False)


def _torchvision(name: str) -> RefSpec:
    import torchvision

    arch = name[len(TORCHVISION):]
    valid = torchvision_names()
    if arch not in valid:
        close = difflib.get_close_matches(arch, valid, n=5, cutoff=0.5)
        listed = ", ".join(close) if close else ", ".join(valid[:12]) + ", ..."
        raise UsageError(f"unknown torchvision classification model '{arch}' in '{name}' "
                         f"(choose from: {listed}; all: torchvision.models.list_models())")

    def make(num_classes: int, in_channels: int, image_size: tuple[int, ...]) -> nn.Module:
        kw: dict[str, Any] = {"weights": None, "num_classes": num_classes}
        if arch in _NO_AUX:
            kw.update(aux_logits=False, init_weights=True)
        net = torchvision.models.get_model(arch, **kw)
        for m in net.modules():  # see _BN_MOMENTUM
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.momentum or 1) < _BN_MOMENTUM:
                m.momentum = _BN_MOMENTUM
        return net

    return RefSpec(name, make, description=f"torchvision.models.{arch} (weights=None)")


def _callable(name: str) -> RefSpec:
    module_name, _, attr = name.partition(":")
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".")):
        raise UsageError(f"model reference '{name}' must be 'torchvision:NAME' or "
                         "'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the user's module failing at import
        raise UsageError(f"model '{name}': cannot import module '{module_name}' "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); is it "
                         "installed or on PYTHONPATH?") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        public = sorted(n for n, v in vars(module).items()
                        if callable(v) and not n.startswith("_"))[:10]
        raise UsageError(f"model '{name}': module '{module_name}' has no callable '{attr}' "
                         f"(it has: {', '.join(public) or 'none'})")
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]

    takes_all = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())

    def make(num_classes: int, in_channels: int, image_size: tuple[int, ...]) -> nn.Module:
        given = {"num_classes": num_classes, "in_channels": in_channels,
                 "image_size": tuple(image_size)}
        if not takes_all:  # a builder taking **kwargs is given all three
            given = {k: v for k, v in given.items() if k in params}
        try:
            return obj(**given)
        except Exception as exc:  # the user's code: say which call failed, in one line
            raise UsageError(f"model '{name}': {module_name}.{attr}("
                             f"{', '.join(given)}) raised "
                             f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}") from None

    doc = (inspect.getdoc(obj) or "").strip().splitlines()
    return RefSpec(name, make, description=doc[0] if doc else f"{module_name}.{attr}")


_RESOLVED: dict[str, RefSpec] = {}


def resolve(name: str) -> RefSpec:
    """The spec of a reference (one per name and process), or a one-line UsageError."""
    if name not in _RESOLVED:
        if name.startswith(TORCHVISION):
            _RESOLVED[name] = _torchvision(name)
        else:
            _RESOLVED[name] = _callable(name)
    return _RESOLVED[name]
