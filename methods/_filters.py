"""Filter pruning, split as Torch-Pruning splits it: criterion, plan, surgery.

- criterion: scores one layer's output filters/neurons (low score = pruned first);
- plan: which layers lose how many filters (a method's business);
- surgery: Torch-Pruning's dependency graph removes them and slices every coupled layer
  (next layer's inputs, BN, flatten), leaving a smaller dense model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Criterion = Callable[[torch.Tensor], torch.Tensor]


def l1_norm(weight: torch.Tensor) -> torch.Tensor:
    """Li et al. 2016: sum of absolute kernel weights per output filter."""
    return weight.detach().flatten(1).abs().sum(1)


def geometric_median_distance(weight: torch.Tensor) -> torch.Tensor:
    """FPGM (He et al. 2019): each filter's summed Euclidean distance to all the others; the
    smallest sums sit nearest the geometric median, so they are the most replaceable."""
    flat = weight.detach().flatten(1).double()
    return torch.cdist(flat, flat).sum(1)


def lowest(scores: torch.Tensor, n: int) -> list[int]:
    """Indices of the `n` lowest scores (ties broken by index, so results are reproducible)."""
    order = sorted(range(len(scores)), key=lambda i: (float(scores[i]), i))
    return sorted(order[:n])


def dependency_graph(model: nn.Module, example: torch.Tensor) -> Any:
    """Torch-Pruning's dependency graph of `model`, traced on `example`.

    The graph is traced through autograd, so every parameter must require grad while it is
    built; it is traced in eval mode so the trace neither updates BatchNorm's running
    statistics nor fails on a 1x1 map at batch 1. Both are restored afterwards."""
    import torch_pruning as tp

    flags = [(p, p.requires_grad) for p in model.parameters()]
    modes = [(m, m.training) for m in model.modules()]
    for p, _ in flags:
        p.requires_grad_(True)
    model.eval()
    try:
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode


def _out_channels_fn(mod: nn.Module) -> Callable[..., Any]:
    import torch_pruning as tp

    if isinstance(mod, nn.Linear):
        return tp.prune_linear_out_channels
    return tp.prune_conv_out_channels


def prune_filters(
    model: nn.Module,
    plan: dict[str, int],
    criterion: Criterion,
    example: torch.Tensor,
) -> dict[str, list[int]]:
    """Remove `plan[layer]` output filters from each named conv/linear layer, in place.

    All layers are scored on the weights as they are before any removal (Li's "independent"
    strategy), then cut; Torch-Pruning removes the same channels from every layer coupled to
    them (BN, the next layer's inputs, a depthwise conv and its squeeze-excite). A layer whose
    channels a residual add joins is scored over every layer writing them (`group_filters`),
    since removing a channel removes it from all of them. Returns the removed indices per
    layer. Two planned layers whose outputs are coupled (one group) are an error: the second's
    scores would refer to channels the first already removed."""
    modules = dict(model.named_modules())
    graph = dependency_graph(model, example)
    chosen: dict[str, list[int]] = {}
    width: dict[str, int] = {}
    for name, n in plan.items():
        mod = modules[name]
        n = min(int(n), mod.weight.shape[0] - 1)  # never remove a whole layer
        group = graph.get_pruning_group(mod, _out_channels_fn(mod), idxs=[0])
        groups = _channel_groups(group)
        if groups > 1:  # the same positions in every channel group (see _channel_groups)
            per = mod.weight.shape[0] // groups
            k = min(int(round(n / groups)), per - 1)
            scores = criterion(mod.weight).reshape(groups, per).sum(0)
            idxs = [g * per + p for g in range(groups) for p in lowest(scores, k)] if k else []
        elif n > 0 and _residual_add(group):  # one channel set written by several layers
            idxs = lowest(criterion(group_filters(graph, group, mod)), n)
        else:
            idxs = lowest(criterion(mod.weight), n) if n > 0 else []
        if idxs:
            chosen[name] = idxs
            width[name] = mod.weight.shape[0]
    for name, idxs in chosen.items():
        mod = modules[name]
        if mod.weight.shape[0] != width[name]:
            raise ValueError(f"layer {name}'s outputs are coupled to another planned layer "
                             f"(one pruning group): plan only one of them")
        group = graph.get_pruning_group(mod, _out_channels_fn(mod), idxs=idxs)
        if not graph.check_pruning_group(group):
            raise ValueError(f"cannot remove {len(idxs)} filters from {name}")
        group.prune()
    return chosen


def group_filters(graph: Any, group: Any, root: nn.Module) -> torch.Tensor:
    """One row per channel of a group that several layers write (the channels a residual add
    joins): each writer's filter for that channel, flattened and laid end to end, root first.
    The criterion then treats a channel's filters in every writer as one filter, as Li's L1
    norm and FPGM's distances extend to a coupled group (Torch-Pruning scores such a group over
    all its layers too): the L1 norm of the row is the sum of the writers' L1 norms."""
    writers = [root]
    for dep, _ in group:
        m = dep.target.module
        if (isinstance(m, nn.Conv2d | nn.Linear) and graph.is_out_channel_pruning_fn(dep.handler)
                and all(m is not w for w in writers)):
            writers.append(m)
    width = root.weight.shape[0]
    return torch.cat([w.weight.detach().reshape(width, -1) for w in writers
                      if w.weight.shape[0] == width], dim=1)


def _channel_groups(group: Any) -> int:
    """The channel groups of the grouped (not depthwise) convs a pruning group touches (RegNet,
    ResNeXt), 1 if none, 0 if they disagree. A grouped conv stays valid only when every group
    loses the same number of channels; Torch-Pruning's grouped-conv surgery further assumes
    the same positions in each group (as its own pruners choose them), so such a layer is
    scored per position: the criterion of each filter summed over the groups."""
    sizes = {m.groups for dep, _ in group
             if isinstance(m := dep.target.module, nn.Conv2d) and m.groups > 1
             and not m.groups == m.in_channels == m.out_channels}
    return 1 if not sizes else (sizes.pop() if len(sizes) == 1 else 0)


def _residual_add(group: Any) -> bool:
    """True when the group's channels meet at an add with two tensor inputs (a residual
    connection): the channels of several layers are then one set."""
    import torch_pruning as tp

    for dep, _ in group:
        for node in (dep.source, dep.target):
            op = node.module
            if (isinstance(op, tp.ops._ElementWiseOp) and len(node.inputs) >= 2
                    and re.match(r"(add|sub)", str(op._grad_fn).lower())):
                return True
    return False


def generic_layers(model: nn.Module, example: torch.Tensor, residual: bool = False) -> list[str]:
    """The prunable layers of any conv net, from Torch-Pruning's dependency graph.

    Every conv/linear layer in registration order roots the group of channels coupled to its
    outputs (BN, the next layer's inputs, a depthwise conv and its BN, a squeeze-excite's
    expand conv and scale, a concatenation's slice); a layer whose outputs an earlier layer's
    group already covers is not a root (an inverted-residual block's depthwise conv follows its
    1x1 expansion conv). A root is prunable unless
    - it is the last conv/linear layer or its group includes it (the classifier or head keeps
      its outputs);
    - its group meets at a residual add, unless `residual` (Li et al.'s choice for ResNets,
      the default for every net: only layers whose outputs are not tied to a shortcut are
      pruned, so a ResNet loses each block's inner width and a MobileNet each block's expanded
      width, while block outputs keep their size; with `residual` the channels a shortcut
      carries are pruned too, scored over every layer that writes them: `group_filters`);
    - its group touches grouped (non-depthwise) convs whose group counts disagree, or that
      leave fewer than 2 channels per group (a grouped conv's group is pruned position-wise:
      see _channel_groups);
    - Torch-Pruning's check_pruning_group rejects removing all but one of its channels.
    The criterion then scores the root's own filters (see prune_filters)."""
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    if not layers:
        return []
    classifier = layers[-1][1]
    graph = dependency_graph(model, example)
    covered: set[int] = {id(classifier)}
    out: list[str] = []
    for name, mod in layers[:-1]:
        if id(mod) in covered or mod not in graph.module2node or mod.weight.shape[0] < 2:
            continue
        group = graph.get_pruning_group(mod, _out_channels_fn(mod), idxs=[0])
        owners = [dep.target.module for dep, _ in group
                  if graph.is_out_channel_pruning_fn(dep.handler)]
        touches_classifier = any(m is classifier for m in owners)
        covered.update(id(m) for m in owners)
        groups = _channel_groups(group)
        if (touches_classifier or (not residual and _residual_add(group)) or groups == 0
                or mod.weight.shape[0] % groups or mod.weight.shape[0] // groups < 2):
            continue
        if not graph.check_pruning_group(graph.get_pruning_group(
                mod, _out_channels_fn(mod), idxs=list(range(mod.weight.shape[0] - 1)))):
            continue
        out.append(name)
    return out


def prunable_layers(model: nn.Module, example: torch.Tensor | None = None,
                    residual: bool = False) -> list[str]:
    """What a plain ratio sweep prunes. A model may say itself (`model.prunable_layers()`, e.g.
    the torchvision detectors: the inside of each inverted-residual block, so heads and FPN keep
    their channels). CIFAR residual networks (`model.stages()`): the first conv of every block
    (Li et al.: the second conv's outputs are tied to the shortcut). Any other net, given an
    example input: `generic_layers` (Torch-Pruning's dependency graph; on a plain chain such as
    the LeNets or YOLOv2-tiny it is every conv/linear layer but the last). Without an example
    the graph cannot be traced: every conv/linear layer but the last (the classifier or
    detection head keeps its outputs), which is only right for plain chains. `residual` (also
    prune the channels residual adds join) needs the graph: only for nets of the last kind."""
    if residual:
        if hasattr(model, "prunable_layers") or hasattr(model, "stages"):
            raise ValueError("residual = true is for nets pruned through the dependency graph "
                             "(torchvision and your own); this model names its own prunable "
                             "layers (CIFAR ResNets keep Li et al.'s shortcut widths)")
        if example is None:
            raise ValueError("residual = true needs an example input to trace the model")
        return generic_layers(model, example, residual=True)
    if hasattr(model, "prunable_layers"):
        return list(model.prunable_layers())
    if hasattr(model, "stages"):
        return [name for _, _, name in block_convs(model)]
    if example is not None:
        return generic_layers(model, example)
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    return names[:-1]


def block_convs(model: nn.Module) -> list[tuple[int, int, str]]:
    """(Li's layer number, stage index, module name) of each residual block's first conv.
    The stem conv is layer 1; block b (counted over all stages) has layers 2b+2 and 2b+3."""
    out, b = [], 0
    for s, stage in enumerate(model.stages()):  # type: ignore[operator]
        prefix = next(n for n, m in model.named_modules() if m is stage)
        for j in range(len(stage)):
            out.append((2 * b + 2, s, f"{prefix}.{j}.conv1"))
            b += 1
    return out


# Li et al. 2016, Table/section 4.2: skipped layers and per-stage prune ratios (16/32/64 ch).
LI_PLANS: dict[str, tuple[frozenset[int], tuple[float, float, float]]] = {
    "56-A": (frozenset({16, 20, 38, 54}), (0.1, 0.1, 0.1)),
    "56-B": (frozenset({16, 18, 20, 34, 38, 54}), (0.6, 0.3, 0.1)),
    "110-A": (frozenset({36}), (0.5, 0.0, 0.0)),
    "110-B": (frozenset({36, 38, 74}), (0.5, 0.4, 0.3)),
}


def li_plan(model: nn.Module, plan: str) -> dict[str, int]:
    """Filters to remove per block conv under one of Li's named plans."""
    if plan not in LI_PLANS:
        raise ValueError(f"unknown plan '{plan}' (choose from: {', '.join(LI_PLANS)})")
    if not hasattr(model, "stages"):
        raise ValueError(f"plan '{plan}' is for CIFAR ResNets; this model has no residual stages")
    convs = block_convs(model)
    depth = 2 * len(convs) + 2
    want = int(plan.split("-")[0])
    if depth != want:
        raise ValueError(f"plan '{plan}' is for ResNet-{want}; this model has depth {depth}")
    skip, ratios = LI_PLANS[plan]
    modules = dict(model.named_modules())
    # ceil, not round: it reproduces the paper's reported reductions (56-A: -9.4% params,
    # -10.4% FLOPs; 56-B: -13.7%/-27.6%; 110-A: -2.3%/-15.9%; 110-B: -32.4%/-38.6%)
    return {name: math.ceil(round(ratios[s] * modules[name].out_channels, 6))
            for num, s, name in convs if num not in skip}
