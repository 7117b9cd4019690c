"""CIFAR ResNets: Li's named plans, FPGM, block-wise surgery, export and runtime agreement."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import outputs_on_cpu_targets
from harness.api import Context
from harness.methods._filters import LI_PLANS, block_convs, geometric_median_distance
from harness.metrics import count_params, flops
from harness.registry import METHODS, MODELS

SHAPE = (3, 32, 32)
CTX = Context(train_data=None, test_data=None, num_classes=10, input_shape=SHAPE)

# Li et al. 2016, Table 2: (params pruned %, FLOPs pruned %) for each named configuration
PAPER = {"56-A": (9.4, 10.4), "56-B": (13.7, 27.6), "110-A": (2.3, 15.9), "110-B": (32.4, 38.6)}


def build(name: str, **kw) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    return MODELS.get(name).build(**kw).eval()


def test_resnet_sizes_match_the_papers() -> None:
    """ResNet-56: 0.85M params, 125M multiply-adds; ResNet-110: 1.7M, 253M (Li et al.)."""
    for name, params, macs in (("resnet-56", 0.85e6, 125e6), ("resnet-110", 1.73e6, 253e6)):
        m = build(name)
        assert abs(count_params(m)[0] - params) / params < 0.01
        assert abs(flops(m, SHAPE)[0] / 2 - macs) / macs < 0.01


def test_layer_numbering_follows_li() -> None:
    convs = block_convs(build("resnet-56"))
    assert len(convs) == 27 and convs[0] == (2, 0, "layer1.0.conv1")
    assert convs[9] == (20, 1, "layer2.0.conv1") and convs[-1] == (54, 2, "layer3.8.conv1")


@pytest.mark.parametrize("plan", sorted(PAPER))
def test_li_named_plans_give_the_papers_reductions(plan: str) -> None:
    model = build("resnet-" + plan.split("-")[0])
    method = METHODS.get("l1-filter")
    out = method().apply(copy.deepcopy(model), method.Config(plan=plan), CTX).model
    params = 100 * (1 - count_params(out)[0] / count_params(model)[0])
    fl = 100 * (1 - flops(out, SHAPE)[0] / flops(model, SHAPE)[0])
    want_params, want_flops = PAPER[plan]
    assert abs(params - want_params) < 0.25 and abs(fl - want_flops) < 0.25, (params, fl)
    skipped, _ = LI_PLANS[plan]
    mods = dict(out.named_modules())
    for num, stage, name in block_convs(out):
        full = (16, 32, 64)[stage]
        if num in skipped:
            assert mods[name].out_channels == full
        # the second conv of every block keeps its outputs: they are tied to the shortcut
        assert mods[name.replace("conv1", "conv2")].out_channels == full


def test_plan_for_the_wrong_depth_is_an_error() -> None:
    method = METHODS.get("l1-filter")
    with pytest.raises(ValueError, match="plan '56-A' is for ResNet-56; this model has depth 20"):
        method().apply(build("resnet-20"), method.Config(plan="56-A"), CTX)


@pytest.mark.parametrize("method_name", ["l1-filter", "fpgm"])
@pytest.mark.parametrize("model_name", ["resnet-20", "preresnet-56"])
def test_filter_pruned_resnet_is_smaller_and_runs_everywhere(method_name: str, model_name: str,
                                                             tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = build(model_name)
    method = METHODS.get(method_name)
    out = method().apply(copy.deepcopy(model), method.Config(ratio=0.5), CTX).model.eval()
    assert count_params(out)[0] < 0.75 * count_params(model)[0]
    checked = [name for name, _, _ in outputs_on_cpu_targets(out, SHAPE, tmp_path)]
    assert "torch-cpu" in checked


def test_fpgm_prunes_the_filters_nearest_the_geometric_median() -> None:
    w = torch.zeros(5, 1, 1, 1)
    w[:, 0, 0, 0] = torch.tensor([0.0, 0.1, -0.1, 5.0, -5.0])
    scores = geometric_median_distance(w)
    assert int(scores.argmin()) == 0  # the central filter is the most replaceable
    assert set(scores.argsort()[:3].tolist()) == {0, 1, 2}
    # L1 would keep the large ones too, but for a different reason: check they differ somewhere
    w2 = torch.tensor([[3.0], [3.1], [-3.0], [0.5], [10.0]]).view(5, 1, 1, 1)
    assert int(geometric_median_distance(w2).argmin()) != int(w2.flatten().abs().argmin())


def test_resnet_on_one_channel_input() -> None:
    m = build("resnet-20", in_channels=1)
    assert m(torch.zeros(2, 1, 32, 32)).shape == (2, 10)


def test_round_to_keeps_a_multiple_of_it_in_every_pruned_layer() -> None:
    from harness.methods.l1_filter import removed_count

    assert [removed_count(16, 0.4), removed_count(32, 0.4), removed_count(64, 0.4)] == [6, 13, 26]
    assert [removed_count(16, 0.4, 8), removed_count(32, 0.4, 8), removed_count(64, 0.4, 8)] \
        == [8, 16, 24]  # keeps 8 / 16 / 40
    assert removed_count(4, 0.9, 8) == 0  # never fewer than one multiple, never more than all
    model = build("resnet-56")
    method = METHODS.get("l1-filter")
    before = {n: m.out_channels for n, m in model.named_modules()
              if isinstance(m, torch.nn.Conv2d)}
    out = method().apply(copy.deepcopy(model), method.Config(ratio=0.4, round_to=8), CTX).model
    pruned = {n: m.out_channels for n, m in out.named_modules()
              if isinstance(m, torch.nn.Conv2d) and m.out_channels != before[n]}
    assert pruned and all(c % 8 == 0 for c in pruned.values()), pruned
    with pytest.raises(ValueError, match="round_to must be >= 1"):
        method.Config(ratio=0.4, round_to=0)
