"""Structural and weight-level pruning on the LeNets: smaller, and exact where nothing was cut."""

from __future__ import annotations

import copy

import pytest
import torch

from harness.api import Context
from harness.metrics import count_params, flops, layer_table
from harness.registry import METHODS, MODELS
from harness.train import Recipe, fit


def ctx(shape=(1, 28, 28)) -> Context:  # type: ignore[no-untyped-def]
    return Context(train_data=None, test_data=None, num_classes=10, input_shape=shape)


def build(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS.get(name).build(num_classes=10).eval()


@pytest.mark.parametrize("name", ["lenet-300-100", "lenet-5"])
def test_l1_filter_makes_a_smaller_dense_model(name: str) -> None:
    model = build(name)
    method = METHODS.get("l1-filter")
    out = method().apply(copy.deepcopy(model), method.Config(ratio=0.5), ctx()).model
    before, after = count_params(model)[0], count_params(out)[0]
    assert after < 0.6 * before
    # every weight is still non-zero: the model is dense, just smaller
    assert count_params(out)[1] == count_params(out)[0] or count_params(out)[1] > 0.99 * after
    assert flops(out, (1, 28, 28))[0] < flops(model, (1, 28, 28))[0]
    assert out(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_lenet5_shapes_follow_the_plan() -> None:
    model = build("lenet-5")
    method = METHODS.get("l1-filter")
    out = method().apply(model, method.Config(ratio=0.5), ctx()).model
    assert out.conv1.out_channels == 10 and out.conv2.in_channels == 10
    assert out.conv2.out_channels == 25 and out.fc1.in_features == 25 * 16
    assert out.fc1.out_features == 250 and out.fc2.in_features == 250
    assert out.fc2.out_features == 10  # the classifier keeps its outputs


@pytest.mark.parametrize("name", ["lenet-300-100", "lenet-5"])
def test_outputs_identical_where_nothing_was_pruned(name: str) -> None:
    """Zero some filters (weights and bias) so they are the lowest-L1 ones and contribute
    nothing: removing them must leave the network's outputs exactly as they were."""
    model = build(name)
    layers = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d | torch.nn.Linear)]
    mods = dict(model.named_modules())
    with torch.no_grad():
        for n in layers[:-1]:
            k = mods[n].weight.shape[0] // 4
            mods[n].weight[:k] = 0
            mods[n].bias[:k] = 0
    x = torch.randn(8, 1, 28, 28)
    want = model(x)
    method = METHODS.get("l1-filter")
    pruned = method().apply(copy.deepcopy(model), method.Config(ratio=0.25), ctx()).model
    assert count_params(pruned)[0] < count_params(model)[0]
    torch.testing.assert_close(pruned(x), want, rtol=1e-5, atol=1e-5)


def test_l1_ranks_by_l1_norm() -> None:
    model = build("lenet-300-100")
    with torch.no_grad():
        model.fc1.weight[7] *= 100  # the largest neuron must survive
        model.fc1.weight[3] *= 0.001  # the smallest must go
    keep_row = model.fc1.weight[7].clone()
    method = METHODS.get("l1-filter")
    out = method().apply(model, method.Config(ratio=0.5, layers=("fc1",)), ctx()).model
    assert out.fc1.out_features == 150 and out.fc2.out_features == 100
    assert any(torch.equal(r, keep_row) for r in out.fc1.weight)


def test_unknown_layer_is_an_error() -> None:
    method = METHODS.get("l1-filter")
    with pytest.raises(ValueError, match="no layer named nope"):
        method().apply(build("lenet-5"), method.Config(layers=("nope",)), ctx())


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_weight_level_reaches_sparsity_and_keeps_shape(scope: str) -> None:
    model = build("lenet-5")
    method = METHODS.get("weight-level")
    comp = method().apply(copy.deepcopy(model), method.Config(sparsity=0.8, scope=scope), ctx())
    rows = layer_table(comp.model, (1, 28, 28))
    total = sum(r["weights"] for r in rows)
    nnz = sum(r["nonzero"] for r in rows)
    assert abs(nnz / total - 0.2) < 0.01
    if scope == "layer":
        assert all(abs(r["density"] - 0.2) < 0.01 for r in rows)
    assert count_params(comp.model)[0] == count_params(model)[0]  # same shape, zeros stored
    dense, effective = flops(comp.model, (1, 28, 28))
    # effective FLOPs scale each layer by its density (global pruning spares the small convs)
    assert effective == dense - sum(r["flops"] - r["flops_effective"] for r in rows)
    assert effective < (0.3 if scope == "layer" else 0.6) * dense


def test_weight_level_masks_hold_during_finetune(data_dir) -> None:  # type: ignore[no-untyped-def]
    from harness.registry import DATASETS

    ds = DATASETS.get("mnist")(data_dir=data_dir)
    model = build("lenet-300-100")
    method = METHODS.get("weight-level")
    calls = []

    def finetune(m, masks=None, **kw):  # type: ignore[no-untyped-def]
        calls.append(masks)
        return fit(m, ds.train(), Recipe(epochs=0.5, lr=0.05), masks=masks)

    c = Context(train_data=ds.train(), test_data=ds.test(), num_classes=10,
                input_shape=(1, 28, 28), finetune=finetune)
    comp = method().apply(model, method.Config(sparsity=0.9, steps=3), c)
    assert len(calls) == 2  # prune -> retrain -> prune -> retrain -> prune (runner retrains last)
    zeros_before = {n: (p == 0) for n, p in comp.model.named_parameters() if n in comp.masks}
    fit(comp.model, ds.train(), Recipe(epochs=1, lr=0.05), masks=comp.masks)
    for n, p in comp.model.named_parameters():
        if n in zeros_before:
            assert bool((p[zeros_before[n]] == 0).all())
    assert abs(comp.info["sparsity_actual"] - 0.9) < 0.01


def test_weight_level_quality_threshold() -> None:
    """Han's rule: per-layer threshold = quality x std of the layer's weights."""
    model = build("lenet-300-100")
    w = model.fc1.weight.detach().clone()
    method = METHODS.get("weight-level")
    comp = method().apply(model, method.Config(quality=1.0), ctx())
    expected = (w.abs() > w.std()).float()
    torch.testing.assert_close(comp.masks["fc1.weight"], expected)


def test_lenet5_flops_match_hand_count() -> None:
    """conv1 20x24x24x25, conv2 50x8x8x500, fc1 800x500, fc2 500x10 multiply-adds, x2."""
    dense, effective = flops(build("lenet-5"), (1, 28, 28))
    assert dense == 2 * (20 * 24 * 24 * 25 + 50 * 8 * 8 * 500 + 800 * 500 + 500 * 10)
    assert effective == dense
