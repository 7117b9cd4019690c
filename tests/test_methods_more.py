"""low-rank, weight sharing, distillation, pipelines: exactness checks and tiny real runs."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness import suite
from harness.api import Context
from harness.export import to_onnx
from harness.metrics import count_params
from harness.methods.distill import kd_loss
from harness.methods.low_rank import (
    factorize_conv_channel,
    factorize_conv_spatial,
    factorize_linear,
)
from harness.methods.pipeline import parse_step
from harness.registry import DATASETS, METHODS, MODELS
from harness.train import Recipe, evaluate, fit


def test_low_rank_at_full_rank_reproduces_each_layer() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, stride=2, padding=1, bias=True)
    x = torch.randn(2, 8, 9, 9)
    with torch.no_grad():
        want = conv(x)
        torch.testing.assert_close(factorize_conv_channel(conv, 12)(x), want, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(factorize_conv_spatial(conv, 24)(x), want, atol=1e-5, rtol=1e-4)
        lin = nn.Linear(20, 7)
        v = torch.randn(3, 20)
        torch.testing.assert_close(factorize_linear(lin, 7)(v), lin(v), atol=1e-5, rtol=1e-4)


def test_low_rank_truncation_is_the_best_approximation() -> None:
    """At rank r the factor pair equals the truncated SVD: error = the dropped singular values."""
    torch.manual_seed(0)
    lin = nn.Linear(30, 20, bias=False)
    s = torch.linalg.svdvals(lin.weight.detach())
    approx = factorize_linear(lin, 5)
    with torch.no_grad():
        w = approx[1].weight @ approx[0].weight
    err = torch.linalg.matrix_norm(w - lin.weight.detach())
    assert abs(float(err) - float(s[5:].square().sum().sqrt())) < 1e-4


@pytest.mark.parametrize("mode", ["channel", "spatial"])
def test_low_rank_resnet_is_smaller_and_exports(mode: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = MODELS.get("resnet-20").build().eval()
    method = METHODS.get("low-rank")
    out = method().apply(copy.deepcopy(model), method.Config(rank_ratio=0.25, mode=mode),
                         Context(None, None, 10, (3, 32, 32))).model.eval()
    assert count_params(out)[0] < 0.6 * count_params(model)[0]
    assert out(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert to_onnx(out, (3, 32, 32), tmp_path / "lr.onnx").stat().st_size > 0


def test_kd_loss_matches_a_hand_computation() -> None:
    s = torch.tensor([[2.0, 0.0, -1.0]])
    t = torch.tensor([[1.0, 1.0, 0.0]])
    y = torch.tensor([0])
    T, alpha = 2.0, 0.75
    ps = [float(v) for v in torch.softmax(s / T, 1)[0]]
    pt = [float(v) for v in torch.softmax(t / T, 1)[0]]
    import math

    kl = sum(b * math.log(b / a) for a, b in zip(ps, pt, strict=True))
    ce = -math.log(float(torch.softmax(s, 1)[0, 0]))
    want = alpha * T * T * kl + (1 - alpha) * ce
    assert abs(float(kd_loss(s, t, y, T, alpha)) - want) < 1e-6
    assert abs(float(kd_loss(s, t, y, T, 0.0)) - float(F.cross_entropy(s, y))) < 1e-6


def test_suite_reports_scratch_next_to_each_distilled_student() -> None:
    s = suite.load("cifar10-resnet")
    methods = [r.method for r in s.runs]
    assert "scratch" in methods
    assert methods.index("scratch") < methods.index("kd")
    scratch = [r for r in s.runs if r.method == "scratch"]
    assert len(scratch) == 1 and scratch[0].config["student"] == "resnet-20"


@pytest.fixture(scope="module")
def cifar_ctx(data_dir, tmp_path_factory):  # type: ignore[no-untyped-def]
    ds = DATASETS.get("cifar10")(data_dir=data_dir)
    torch.manual_seed(0)
    teacher = MODELS.get("resnet-14").build()
    recipe = Recipe(epochs=4, lr=0.05, batch_size=32)
    fit(teacher, ds.train(), recipe)

    def train(m, epochs=None, loss=None, extra_params=None, **kw):  # type: ignore[no-untyped-def]
        r = Recipe(epochs=epochs if epochs is not None else recipe.epochs, lr=0.05,
                   batch_size=32)
        return fit(m, ds.train(), r, extra_params=extra_params,
                   **({"loss_fn": loss} if loss else {}), **kw)

    ctx = Context(train_data=ds.train(), test_data=ds.test(), num_classes=10,
                  input_shape=(3, 32, 32), teacher=teacher.eval(), train=train, finetune=train,
                  train_epochs=recipe.epochs, workdir=tmp_path_factory.mktemp("w"),
                  calibration=ds.calibration)
    return ds, ctx


@pytest.mark.parametrize("name", ["scratch", "kd", "fitnets"])
def test_students_are_trained_named_models(name: str, cifar_ctx) -> None:  # type: ignore[no-untyped-def]
    ds, ctx = cifar_ctx
    method = METHODS.get(name)
    before = copy.deepcopy(ctx.teacher.state_dict())
    comp = method().apply(None, method.Config(student="resnet-8"), ctx)
    student = comp.model.eval()
    assert count_params(student)[0] == count_params(MODELS.get("resnet-8").build())[0]
    assert evaluate(student, ds.test()) > 0.3  # learned (chance is 0.1)
    assert not comp.finetune
    for k, v in ctx.teacher.state_dict().items():  # the teacher is never modified
        assert torch.equal(v, before[k]), k


def test_weight_sharing_keeps_at_most_2_to_the_bits_values(cifar_ctx) -> None:  # type: ignore[no-untyped-def]
    ds, ctx = cifar_ctx
    model = copy.deepcopy(ctx.teacher)
    with torch.no_grad():
        model.layer1[0].conv1.weight[:4] = 0  # zeros from earlier pruning stay zero
    method = METHODS.get("weight-sharing")
    comp = method().apply(model, method.Config(bits=3), ctx)
    fit(comp.model, ds.train(), Recipe(epochs=0.5, lr=0.05, batch_size=32),
        constraint=comp.constraint)
    for name, mod in comp.model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            w = mod.weight.detach()
            assert len(torch.unique(w[w != 0])) <= 8, name
    assert bool((comp.model.layer1[0].conv1.weight[:4] == 0).all())
    dense = 4 * count_params(model)[0]
    assert comp.info["size_codebook_bytes"] < 0.2 * dense


def test_pipeline_prunes_then_quantizes(cifar_ctx) -> None:  # type: ignore[no-untyped-def]
    assert parse_step("l1-filter:plan=56-B,ratio=0.5") == ("l1-filter", {"plan": "56-B",
                                                                         "ratio": 0.5})
    _, ctx = cifar_ctx
    model = copy.deepcopy(ctx.teacher)
    method = METHODS.get("pipeline")
    comp = method().apply(model, method.Config(steps=("l1-filter:ratio=0.5", "int8-ptq:calibration=32")), ctx)
    assert count_params(comp.model)[0] < count_params(ctx.teacher)[0]
    assert {"onnxruntime-cpu", "openvino-cpu", "torch-cpu"} <= set(comp.artifacts)
    with pytest.raises(ValueError, match="pipelines do not nest"):
        method.Config(steps=("pipeline",))
