"""Filter pruning by ratio on torchvision CNNs (residual adds, depthwise convs, squeeze-excite)
through the methods' public entry, and the other methods on torchvision nets.

The nets are built with weights=None; their BatchNorm statistics are then set from a few random
batches so activations are O(1) (an untrained MobileNetV3's logits are ~1e-10 otherwise, and a
runtime comparison at that scale would check nothing).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import Subset, TensorDataset

from conftest import outputs_on_cpu_targets
from harness.api import Context
from harness.metrics import model_metrics
from harness.registry import METHODS

SHAPE = (3, 64, 64)
RATIO = 0.5


def net(name: str, shape: tuple[int, ...] = SHAPE) -> nn.Module:
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the batches below
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, *shape))
    return model.eval()


def ctx(shape: tuple[int, ...] = SHAPE, **kw) -> Context:  # type: ignore[no-untyped-def]
    return Context(train_data=None, test_data=None, num_classes=10, input_shape=shape, **kw)


def compress(method: str, model: nn.Module, shape: tuple[int, ...] = SHAPE,
             **cfg: object):  # type: ignore[no-untyped-def]
    """As the runner calls a method: the registry's class, its Config, apply()."""
    cls = METHODS.get(method)
    return cls().apply(copy.deepcopy(model), cls.Config(**cfg), ctx(shape))


def classifier(model: nn.Module) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


CASES = [("l1-filter", "resnet18"), ("l1-filter", "mobilenet_v2"),
         ("l1-filter", "mobilenet_v3_small"), ("l1-filter", "efficientnet_b0"),
         ("l1-filter", "regnet_y_400mf"), ("fpgm", "resnet18"), ("fpgm", "mobilenet_v3_small")]


@pytest.mark.parametrize(("method", "name"), CASES)
def test_ratio_pruning_shrinks_and_runs_everywhere(method: str, name: str,
                                                   tmp_path: Path) -> None:
    model = net(name)
    comp = compress(method, model, ratio=RATIO)
    pruned = comp.model.eval()
    assert comp.info["removed"], "nothing was pruned"
    before, after = model_metrics(model, SHAPE)["macs"], model_metrics(pruned, SHAPE)["macs"]
    assert after < 0.75 * before, (before, after)
    assert classifier(pruned).out_features == classifier(model).out_features == 10
    x = np.random.default_rng(0).standard_normal((2, *SHAPE)).astype(np.float32)
    # exported to ONNX and run on torch-cpu, onnxruntime-cpu and openvino-cpu (each compared
    # with torch's output inside the helper: rtol 1e-3, atol 1e-3 x max |output|)
    seen = {target: got.shape for target, got, want in
            outputs_on_cpu_targets(pruned, SHAPE, tmp_path, x=x)}
    assert {"onnxruntime-cpu", "openvino-cpu"} <= set(seen)
    assert all(s == (2, 10) for s in seen.values())


def l1_kept(weight: torch.Tensor, n_keep: int) -> list[int]:
    """The indices of the n_keep largest filters by L1 norm, computed here, not by the method."""
    norms = weight.detach().abs().reshape(weight.shape[0], -1).sum(1).numpy()
    return sorted(np.argsort(-norms, kind="stable")[:n_keep].tolist())


def test_kept_filters_of_a_plain_conv_are_the_l1_largest() -> None:
    model = net("resnet18")
    pruned = compress("l1-filter", model, ratio=RATIO).model
    conv = model.layer2[0].conv1  # a block's first conv: its outputs are not tied to the add
    keep = l1_kept(conv.weight, conv.out_channels - round(RATIO * conv.out_channels))
    w = pruned.layer2[0].conv1.weight.detach()
    # the kept output filters (inputs of this conv come from a residual add: all kept)
    torch.testing.assert_close(w, conv.weight.detach()[keep], rtol=0, atol=0)
    torch.testing.assert_close(pruned.layer2[0].bn1.running_mean,
                               model.layer2[0].bn1.running_mean[keep])
    torch.testing.assert_close(pruned.layer2[0].conv2.weight.detach(),
                               model.layer2[0].conv2.weight.detach()[:, keep])
    # outputs tied to a residual add keep their width (Li et al.'s choice)
    assert pruned.layer2[0].conv2.out_channels == 128
    assert pruned.layer2[0].downsample[0].out_channels == 128


def test_depthwise_and_squeeze_excite_follow_the_expansion_conv() -> None:
    model = net("mobilenet_v3_small")
    pruned = compress("l1-filter", model, ratio=RATIO).model
    old, new = model.features[4].block, pruned.features[4].block
    expand = old[0][0]
    keep = l1_kept(expand.weight, 96 - round(RATIO * 96))
    torch.testing.assert_close(new[0][0].weight.detach(), expand.weight.detach()[keep])
    # the depthwise conv is pruned with its producer, channel for channel
    assert new[1][0].groups == new[1][0].in_channels == new[1][0].out_channels == len(keep)
    torch.testing.assert_close(new[1][0].weight.detach(), old[1][0].weight.detach()[keep])
    # squeeze-excite: fc1 reads the kept channels and loses its own lowest-L1 half, fc2 scales
    # exactly the kept channels
    fc1_keep = l1_kept(old[2].fc1.weight, 24 - round(RATIO * 24))
    torch.testing.assert_close(new[2].fc1.weight.detach(),
                               old[2].fc1.weight.detach()[fc1_keep][:, keep])
    torch.testing.assert_close(new[2].fc2.weight.detach(),
                               old[2].fc2.weight.detach()[keep][:, fc1_keep])
    assert new[3][0].out_channels == 40  # the projection (block output) keeps its width


def test_grouped_conv_loses_the_same_positions_in_every_group() -> None:
    """RegNet's grouped 3x3 conv reads the 1x1 conv's outputs group by group: the 1x1 loses
    the positions whose L1 norms, summed over the groups, are lowest, in every group."""
    model = net("regnet_x_400mf")
    pruned = compress("l1-filter", model, ratio=RATIO).model
    old = model.trunk_output.block2[0].f
    new = pruned.trunk_output.block2[0].f
    a, b = old.a[0], old.b[0]
    groups, per = b.groups, a.out_channels // b.groups
    assert groups > 1 and per > 1
    norms = a.weight.detach().abs().reshape(groups, per, -1).sum((0, 2)).numpy()
    pos = sorted(np.argsort(-norms, kind="stable")[:per - round(RATIO * per)].tolist())
    keep = [g * per + p for g in range(groups) for p in pos]
    torch.testing.assert_close(new.a[0].weight.detach(), a.weight.detach()[keep])
    assert new.b[0].groups == groups  # still grouped, each group narrower by the same count
    # its own outputs are scored the same way (on its weights before any removal), and it
    # reads, in every group, the kept positions of the 1x1 conv
    per_b = b.out_channels // groups
    norms_b = b.weight.detach().abs().reshape(groups, per_b, -1).sum((0, 2)).numpy()
    pos_b = sorted(np.argsort(-norms_b, kind="stable")[:per_b - round(RATIO * per_b)].tolist())
    keep_b = [g * per_b + p for g in range(groups) for p in pos_b]
    torch.testing.assert_close(new.b[0].weight.detach(), b.weight.detach()[keep_b][:, pos])


def test_fpgm_removes_the_filters_nearest_the_geometric_median() -> None:
    model = net("resnet18")
    pruned = compress("fpgm", model, ratio=RATIO).model
    w = model.layer1[0].conv1.weight.detach().reshape(64, -1).double().numpy()
    dist = np.sqrt(((w[:, None, :] - w[None, :, :]) ** 2).sum(-1)).sum(1)
    keep = sorted(np.argsort(dist, kind="stable")[32:].tolist())
    torch.testing.assert_close(pruned.layer1[0].conv1.weight.detach(),
                               model.layer1[0].conv1.weight.detach()[keep])


@pytest.mark.parametrize("name", ["lenet-300-100", "lenet-5", "yolov2-tiny"])
def test_plain_chains_keep_their_layers(name: str) -> None:
    """On a net without shortcuts or depthwise convs the graph's answer is the old rule:
    every conv/linear layer but the last."""
    from harness.api import build_model
    from harness.methods._filters import generic_layers
    from harness.registry import MODELS

    spec = MODELS.get(name)
    model = build_model(spec, 10, spec.input_shape).eval()
    plain = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)][:-1]
    assert generic_layers(model, torch.zeros((1, *spec.input_shape))) == plain


def test_coupled_layers_named_together_are_an_error() -> None:
    model = net("mobilenet_v2")
    with pytest.raises(ValueError, match="coupled"):
        compress("l1-filter", model, ratio=RATIO,
                 layers=("features.2.conv.0.0", "features.2.conv.1.0"))


def test_residual_prunes_the_shortcut_channels_scored_over_every_writer(tmp_path: Path) -> None:
    """residual = true: a ResNet's stage widths (the channels its adds join) shrink too. The
    stem's channel set is written by conv1 and layer1's two blocks' conv2; the kept channels
    are those with the largest L1 norm summed over those three writers, computed here."""
    model = net("resnet18")
    inner = compress("l1-filter", model, ratio=RATIO)
    comp = compress("l1-filter", model, ratio=RATIO, residual=True)
    pruned = comp.model.eval()
    stem = group_keep([model.conv1, model.layer1[0].conv2, model.layer1[1].conv2], 32)
    for new in (pruned.conv1, pruned.layer1[0].conv2, pruned.layer1[1].conv2):
        assert new.out_channels == 32
    torch.testing.assert_close(pruned.conv1.weight.detach(), model.conv1.weight.detach()[stem],
                               rtol=0, atol=0)
    torch.testing.assert_close(pruned.bn1.running_var, model.bn1.running_var[stem])
    # layer2's downsample conv reads the stem's channel set and writes layer2's (whose writers
    # are its two conv2s and the downsample itself): both sliced by the summed norms
    old = model.layer2[0]
    l2 = group_keep([old.conv2, old.downsample[0], model.layer2[1].conv2], 64)
    torch.testing.assert_close(pruned.layer2[0].downsample[0].weight.detach(),
                               old.downsample[0].weight.detach()[l2][:, stem], rtol=0, atol=0)
    # every stage loses half its width, down to the classifier's inputs
    assert [pruned.layer1[0].conv2.out_channels, pruned.layer2[1].conv2.out_channels,
            pruned.layer3[1].conv2.out_channels, pruned.layer4[1].conv2.out_channels] \
        == [32, 64, 128, 256]
    assert classifier(pruned).in_features == 256 and classifier(pruned).out_features == 10
    macs = [model_metrics(m, SHAPE)["macs"] for m in (model, inner.model, pruned)]
    assert macs[2] < 0.35 * macs[0] < macs[1], macs
    seen = {t: got.shape for t, got, _ in outputs_on_cpu_targets(pruned, SHAPE, tmp_path)}
    assert {"onnxruntime-cpu", "openvino-cpu"} <= set(seen)


def group_keep(writers: list[nn.Module], n_keep: int) -> list[int]:
    """The n_keep channels with the largest L1 norm summed over every layer writing them."""
    norms = sum(w.weight.detach().abs().reshape(w.weight.shape[0], -1).sum(1) for w in writers)
    return sorted(np.argsort(-norms.numpy(), kind="stable")[:n_keep].tolist())


@pytest.mark.parametrize("name", ["mobilenet_v2", "regnet_y_400mf"])
def test_residual_pruning_runs_on_other_shortcut_nets(name: str, tmp_path: Path) -> None:
    shape = (3, 32, 32)
    model = net(name, shape)
    inner = compress("l1-filter", model, shape, ratio=RATIO)
    comp = compress("fpgm" if name == "mobilenet_v2" else "l1-filter", model, shape,
                    ratio=RATIO, residual=True)
    assert len(comp.info["removed"]) > len(inner.info["removed"])
    macs = [model_metrics(m, shape)["macs"] for m in (inner.model, comp.model)]
    assert macs[1] < macs[0], macs
    list(outputs_on_cpu_targets(comp.model.eval(), shape, tmp_path))


def test_residual_is_refused_where_the_model_names_its_layers() -> None:
    from harness.api import build_model
    from harness.registry import MODELS

    spec = MODELS.get("resnet-20")
    model = build_model(spec, 10, (1, 32, 32))
    with pytest.raises(ValueError, match="residual = true is for nets pruned through"):
        compress("l1-filter", model, (1, 32, 32), ratio=RATIO, residual=True)
    with pytest.raises(ValueError, match="Li's named plans keep shortcut"):
        METHODS.get("l1-filter").Config(plan="56-A", residual=True)


def calibration_ctx(shape: tuple[int, ...], work: Path) -> Context:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, *shape, generator=g),
                         torch.randint(0, 10, (64,), generator=g))
    return ctx(shape, workdir=work, calibration=lambda n: Subset(data, range(min(n, 64))),
               targets=("torch-cpu", "onnxruntime-cpu", "openvino-cpu"))


@pytest.mark.parametrize(("method", "cfg", "name"), [
    ("low-rank", {"rank_ratio": 0.5}, "resnet18"),
    ("low-rank", {"rank_ratio": 0.5}, "mobilenet_v3_small"),
    ("weight-level", {"sparsity": 0.8}, "mobilenet_v3_small"),
    ("weight-sharing", {"bits": 4}, "mobilenet_v3_small"),
])
def test_other_methods_on_torchvision_nets(method: str, cfg: dict, name: str,
                                           tmp_path: Path) -> None:
    shape = (3, 32, 32)
    model = net(name, shape)
    comp = compress(method, model, shape, **cfg)
    out = comp.model.eval()
    assert classifier(out).out_features == 10
    if method == "low-rank":
        assert comp.info["ranks"], "no layer was factorized"
        assert sum(p.numel() for p in out.parameters()) < sum(p.numel() for p in model.parameters())
    if method == "weight-level":
        assert comp.info["sparsity_actual"] == pytest.approx(0.8, abs=0.01)
    if method == "weight-sharing":
        convs = [m for m in out.modules() if isinstance(m, nn.Conv2d) and m.weight.numel() > 64]
        assert all(m.weight.unique().numel() <= 2**4 + 1 for m in convs)  # + the zeros
    list(outputs_on_cpu_targets(out, shape, tmp_path))  # exports and agrees on every runtime


def test_int8_ptq_on_mobilenet_v3(tmp_path: Path) -> None:
    from harness.api import Artifact
    from harness.registry import TARGETS

    shape = (3, 32, 32)
    model = net("mobilenet_v3_small", shape)
    cls = METHODS.get("int8-ptq")
    comp = cls().apply(copy.deepcopy(model), cls.Config(calibration=32),
                       calibration_ctx(shape, tmp_path))
    assert {"torch-cpu", "onnxruntime-cpu", "openvino-cpu"} <= set(comp.artifacts)
    x = np.random.default_rng(3).standard_normal((8, *shape)).astype(np.float32)
    with torch.inference_mode():
        want = model(torch.from_numpy(x)).numpy()
    for name, art in comp.artifacts.items():
        target = TARGETS.get(name)()
        if target.available():
            continue
        got = target.prepare(Artifact(art.path, art.module, shape, (10,), "int8"), 8, 1,
                             "int8").run(x)[0]
        assert got.shape == want.shape
        # INT8 is an approximation, and of an untrained net calibrated on noise a rough one
        # (NNCF's reads 0.81 here): the logits must still track
        # fp32's, which a broken graph (wrong scales, dropped SE) would not (~0)
        corr = np.corrcoef(got.ravel(), want.ravel())[0, 1]
        assert corr > 0.6, (name, corr)
