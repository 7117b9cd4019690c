"""Registry contracts, parametrized over every registered name: a new plugin is tested for free."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.api import Artifact, Compressed, Context
from harness.errors import UsageError
from harness.registry import DATASETS, METHODS, MODELS, TARGETS, Registry, describe


def test_duplicate_name_is_rejected() -> None:
    reg: Registry[object] = Registry("thing", "harness.methods", "harness.none")

    @reg.register("a")
    class A:
        pass

    with pytest.raises(UsageError, match="duplicate thing name 'a'"):

        @reg.register("a")
        class B:
            pass


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(UsageError) as exc:
        METHODS.get("no-such-method")
    msg = str(exc.value)
    assert "unknown method 'no-such-method'" in msg
    assert "l1-filter" in msg and "weight-level" in msg


def test_registries_are_populated() -> None:
    assert {"baseline", "l1-filter", "weight-level"} <= set(METHODS.names())
    assert {"torch-cpu", "onnxruntime-cpu", "openvino-cpu", "null"} <= set(TARGETS.names())
    assert {"lenet-300-100", "lenet-5"} <= set(MODELS.names())
    assert {"mnist", "fashion-mnist"} <= set(DATASETS.names())
    assert METHODS.names("l1-*") == ["l1-filter"]


def test_importing_harness_and_listing_loads_no_runtime() -> None:
    code = (
        "import sys; import harness, harness.cli, harness.registry as r;"
        "[x.names() for x in (r.METHODS, r.TARGETS, r.MODELS, r.DATASETS)];"
        "[t().available() for _, t in r.TARGETS.items()];"
        "import harness.executors.ray, harness.plan;"
        "bad = [m for m in ('openvino', 'onnxruntime', 'nncf', 'ray', 'optuna')"
        " if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("name", MODELS.names())
def test_model_contract(name: str) -> None:
    spec = MODELS.get(name)
    assert describe(spec)
    model = spec.build(num_classes=7).eval()
    out = model(torch.zeros((3, *spec.input_shape)))
    if spec.task == "detect":  # raw network outputs; the model decodes them into boxes
        assert out.shape[0] == 3
        dets = model.decode(out.detach().numpy())
        assert len(dets) == 3 and all(d.boxes.shape == (len(d.scores), 4) for d in dets)
        targets = torch.full((3, 2, 6), -1.0)  # one box per image, padded to two rows
        targets[:, 0] = torch.tensor([1.0, 8, 8, 40, 48, 0])
        loss = model.train().detection_loss(torch.zeros((3, *spec.input_shape)), targets)
        assert loss.dim() == 0 and torch.isfinite(loss)
    else:
        assert spec.task == "classify" and out.shape == (3, 7)


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_contract(name: str, data_dir) -> None:  # type: ignore[no-untyped-def]
    cls = DATASETS.get(name)
    assert describe(cls) and cls.where
    ds = cls(data_dir=data_dir)
    assert ds.num_classes > 1  # an instance's: an image folder's classes come from its data
    x, y = ds.test()[0]
    assert tuple(x.shape) == tuple(ds.input_shape)
    if getattr(ds, "task", "classify") == "detect":  # padded (label, x1, y1, x2, y2, difficult)
        assert y.shape[-1] == 6 and 0 <= int(y[0, 0]) < ds.num_classes
    else:
        assert 0 <= int(y) < ds.num_classes
    assert len(ds.calibration(5)) == 5


@pytest.mark.parametrize("name", METHODS.names())
def test_method_contract(name: str, data_dir, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every method: frozen default config, a version, and a model that still predicts."""
    method = METHODS.get(name)
    assert describe(method) and isinstance(method.version, str)
    assert dataclasses.is_dataclass(method.Config)
    cfg = method.Config()
    if dataclasses.fields(cfg):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(cfg, dataclasses.fields(cfg)[0].name, None)
    ds = DATASETS.get("cifar10")(data_dir=data_dir)
    model = MODELS.get("resnet-8").build(num_classes=10).eval()
    ctx = Context(train_data=ds.train(), test_data=ds.test(), num_classes=10,
                  input_shape=(3, 32, 32), teacher=model, finetune=lambda m, **kw: m,
                  train=lambda m, **kw: m, workdir=tmp_path, calibration=ds.calibration,
                  evaluate=lambda m: 0.0)
    import copy

    out = method().apply(copy.deepcopy(model), cfg, ctx)
    assert isinstance(out, Compressed)
    assert out.model.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("name", TARGETS.names())
def test_target_contract(name: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    target = TARGETS.get(name)()
    assert describe(type(target))
    reason = target.available()
    assert reason is None or isinstance(reason, str)
    assert isinstance(target.versions(), dict)
    if reason:
        pytest.skip(reason)
    from harness.export import to_onnx

    model = MODELS.get("lenet-300-100").build(num_classes=10).eval()
    path = to_onnx(model, (1, 28, 28), tmp_path / "m.onnx")
    art = Artifact(path, model, (1, 28, 28), (10,))
    sess = target.prepare(art, 4, 1, "fp32")
    out = sess.run(np.zeros((4, 1, 28, 28), np.float32))
    assert out[0].shape == (4, 10)
    assert isinstance(sess.precision, str)


def test_reading_a_suite_and_the_store_commands_load_no_torch(tmp_path: Path) -> None:
    """A suite's text and the read-only commands need no torch (2-3 s to import here): an
    unknown suite, profile or executor, and `recommend` / `report` / `compare` on a store,
    answer before it loads."""
    code = (
        "import sys; from harness import cli, suite;"
        "from harness.recipe import Recipe; Recipe.from_dict({'epochs': 1}, 'x');"
        "argvs = [['run', '--suite', 'nope'], ['run', '--suite', 'mnist-lenet', '--profile',"
        " 'nope'], ['tune', '--suite', 'mnist-lenet', '--executor', 'nope'],"
        " ['plan', '--suite', 'nope'], ['recommend', '--store', sys.argv[1], '--target', 'x'],"
        " ['report', '--store', sys.argv[1]], ['compare', 'a', 'b', '--store', sys.argv[1]]];\n"
        "for argv in argvs:\n"
        "    sys.argv = ['harness', *argv]\n"
        "    try:\n"
        "        cli.main()\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 2, (argv, e.code)\n"
        "print('torch' in sys.modules)"
    )
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "none.db")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip().splitlines()[-1] == "False", (
        res.stdout[-2000:] + res.stderr[-2000:])
