"""Detectors: data formats, export agreement on every runtime, pruning, an end-to-end sweep."""

from __future__ import annotations

import copy
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import outputs_on_cpu_targets, run_cli
from harness.api import Context, build_model
from harness.benchmarks.datasets.detection import VOC_CLASSES, targets_to_lists
from harness.errors import UsageError
from harness.metrics import count_params
from harness.registry import DATASETS, METHODS, MODELS

VOC_SUITE = """
name = "tiny-voc"
dataset = "voc2007"
dataset_options = { size = 64 }
models = ["yolov2-tiny"]

[[methods]]
name = "l1-filter"
grid = { ratio = [0.5] }

[[methods]]
name = "int8-ptq"
config = { calibration = 8 }

[profiles.smoke]
train = { epochs = 2, lr = 0.002, optimizer = "adam", batch_size = 4 }
finetune = { epochs = 1, lr = 0.0005, optimizer = "adam", batch_size = 4 }
timing = { batch_sizes = [1, 4], iterations = 4, warmup = 1, rounds = 2, threads = 1 }
"""


def test_voc_reader_scales_boxes_and_keeps_difficult(data_dir: Path) -> None:
    ds = DATASETS.get("voc2007")(data_dir=data_dir, size=64)
    train, test = ds.train(), ds.test()
    assert train.tensors[0].shape == (12, 3, 64, 64) and len(test) == 6
    t = targets_to_lists(train.tensors[1])
    import xml.etree.ElementTree as ET

    root = data_dir / "VOCdevkit" / "VOC2007"
    obj = ET.parse(root / "Annotations" / "000000.xml").find("object")
    box = obj.find("bndbox")
    x1, y1 = float(box.find("xmin").text), float(box.find("ymin").text)
    assert t[0]["labels"][0] == VOC_CLASSES.index(obj.find("name").text)
    assert t[0]["boxes"][0][0] == pytest.approx((x1 - 1) * 64 / 64)  # width 64 -> 64
    assert t[0]["boxes"][0][1] == pytest.approx((y1 - 1) * 64 / 48)  # height 48 -> 64
    assert bool(t[0]["difficult"][0]) and not t[1]["difficult"].any()


def test_fashion_det_scenes_are_deterministic_and_sane(tmp_path: Path, data_dir: Path) -> None:
    ds = DATASETS.get("fashion-det")(data_dir=data_dir, train_scenes=20, test_scenes=5)
    again = DATASETS.get("fashion-det")(data_dir=data_dir, train_scenes=20, test_scenes=5)
    assert torch.equal(ds.train().tensors[0], again.train().tensors[0])
    for t in targets_to_lists(ds.train().tensors[1]):
        assert 1 <= len(t["labels"]) <= 4
        assert (t["boxes"][:, :2] >= 0).all() and (t["boxes"][:, 2:] <= 96).all()
        assert (t["boxes"][:, 2:] > t["boxes"][:, :2]).all()


def test_task_mismatch_is_a_usage_error(tmp_path: Path, data_dir: Path) -> None:
    from harness import suite as suites
    from harness.runner import RunOptions, Runner

    p = tmp_path / "bad.toml"
    p.write_text(VOC_SUITE.replace('models = ["yolov2-tiny"]', 'models = ["lenet-5"]'))
    with pytest.raises(UsageError, match="'lenet-5' is a classify model but dataset 'voc2007'"):
        Runner(RunOptions(suite=suites.load(str(p)), profile="smoke", targets=["null"],
                          store=tmp_path / "s.db", cache_dir=tmp_path / "c", data_dir=data_dir))


@pytest.fixture(scope="module")
def yolo() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(MODELS.get("yolov2-tiny"), 20, (3, 64, 64)).eval()


@pytest.mark.parametrize("pruned", [False, True])
def test_exported_detector_agrees_with_torch_on_every_runtime(yolo, pruned, tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = copy.deepcopy(yolo)
    if pruned:
        method = METHODS.get("l1-filter")
        model = method().apply(model, method.Config(ratio=0.5),
                               Context(None, None, 20, (3, 64, 64))).model.eval()
        assert count_params(model)[0] < 0.4 * count_params(yolo)[0]
    checked = []
    for name, got, want in outputs_on_cpu_targets(model, (3, 64, 64), tmp_path):
        checked.append(name)
        ref = yolo.decode(want, score_threshold=0.0)
        for a, b in zip(yolo.decode(got, score_threshold=0.0), ref, strict=True):
            n = min(10, len(a.scores), len(b.scores))
            np.testing.assert_allclose(a.scores[:n], b.scores[:n], atol=1e-3)
            np.testing.assert_allclose(a.boxes[:n], b.boxes[:n], atol=0.05)
    assert "torch-cpu" in checked


def test_voc_detection_sweep_end_to_end(tmp_path: Path, data_dir: Path) -> None:
    suite = tmp_path / "tiny-voc.toml"
    suite.write_text(VOC_SUITE)
    res = run_cli("run", "--suite", str(suite), "--profile", "smoke", "--data-dir",
                  str(data_dir), "--store", str(tmp_path / "r.db"), "--report-dir",
                  str(tmp_path / "rep"), "--target", "onnxruntime-cpu", "--target",
                  "openvino-cpu", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(tmp_path / "r.db")
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT * FROM cells").fetchall()
    con.close()
    assert len(rows) == 3 * 2 and all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert {r["metric"] for r in rows} == {"map50"}
    assert all(0.0 <= r["top1_target"] <= 1.0 and r["postprocess_ms"] > 0 for r in rows)
    assert all(r["top1_pruned"] is not None and r["top1_retrained"] is not None for r in rows)
    l1 = [r for r in rows if r["method"] == "l1-filter"][0]
    base = [r for r in rows if r["method"] == "baseline"][0]
    assert l1["params_total"] < base["params_total"]
    assert "mAP@0.5" in res.stdout and "Decode+NMS" in res.stdout
    assert (tmp_path / "rep" / "accuracy_vs_prune_ratio.png").exists()


def shipped_voc_l1_rows(tmp_path: Path, data_dir: Path, *models: str) -> list[tuple]:
    """Run the shipped voc-detection suite's L1 cells (smoke, ORT) for `models` on the tiny VOC
    folder; its cells as (model, method, status, error, params_total)."""
    res = run_cli("run", "--suite", "voc-detection", "--profile", "smoke", "--data-dir",
                  str(data_dir), "--method", "l1-filter",
                  *[arg for m in models for arg in ("--model", m)],
                  "--target", "onnxruntime-cpu",
                  "--store", str(tmp_path / "r.db"), "--report-dir", str(tmp_path / "rep"),
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(tmp_path / "r.db")
    rows = con.execute("SELECT model, method, status, error, params_total FROM cells").fetchall()
    con.close()
    return rows


def test_shipped_voc_detection_suite_runs_on_a_voc_folder(tmp_path: Path, data_dir: Path) -> None:
    rows = shipped_voc_l1_rows(tmp_path, data_dir, "yolov2-tiny")
    assert [r[2] for r in rows] == ["ok"] * 4  # baseline + three L1 ratios


def test_qat_trains_a_detector_through_its_fake_quant_graph(yolo, tmp_path, data_dir) -> None:  # type: ignore[no-untyped-def]
    """QAT fine-tunes torch.ao's FX graph, which lacks the detector's loss: the loss is the
    model's own, with the graph standing in for its forward."""
    from harness.scoring import DetectScorer
    from harness.train import Recipe, fit

    ds = DATASETS.get("voc2007")(data_dir=data_dir, size=64)
    seen = []

    def finetune(m, epochs=None, loss=None, **kw):  # type: ignore[no-untyped-def]
        seen.append(type(m).__name__)
        return fit(m, ds.train(), Recipe(epochs=epochs or 1, lr=1e-4, batch_size=4),
                   loss_fn=loss or DetectScorer.loss, **kw)

    ctx = Context(ds.train(), ds.test(), 20, (3, 64, 64), workdir=tmp_path,
                  calibration=ds.calibration, finetune=finetune)
    model = copy.deepcopy(yolo)
    method = METHODS.get("qat")
    comp = method().apply(model, method.Config(calibration=8), ctx)
    assert seen == ["GraphModule"]
    assert {"torch-cpu", "onnxruntime-cpu"} <= set(comp.artifacts)
    x = ds.test().tensors[0][:2]
    with torch.no_grad():
        q, f = comp.scored(x), comp.model(x)
    assert q.shape == f.shape and torch.isfinite(q).all()
    corr = np.corrcoef(q.flatten().numpy(), f.flatten().numpy())[0, 1]
    assert corr > 0.9  # the INT8 graph of the QAT weights


def test_shipped_voc_suite_runs_torchvision_detectors_on_a_voc_folder(
        tmp_path: Path, data_dir: Path) -> None:
    """SSDlite and Faster R-CNN at VOC's 320 px, 3 channels, 20 classes, through the CLI:
    baseline and L1 cells, scored by mAP@0.5 on the runtime with their decode timed, the
    pruned ones smaller and cheaper, with accuracies before and after fine-tuning (the one
    end-to-end sweep of the torchvision detectors: it costs about two minutes here)."""
    rows = shipped_voc_l1_rows(tmp_path, data_dir, "ssdlite-mobilenet-v3",
                               "fasterrcnn-mobilenet-v3-fpn")
    assert len(rows) == 4 and all(r[2] == "ok" for r in rows), rows
    con = sqlite3.connect(tmp_path / "r.db")
    con.row_factory = sqlite3.Row
    full = con.execute("SELECT * FROM cells").fetchall()
    con.close()
    assert all(r["metric"] == "map50" and r["postprocess_ms"] > 0 for r in full)
    for model in ("ssdlite-mobilenet-v3", "fasterrcnn-mobilenet-v3-fpn"):
        base, l1 = (next(r for r in full if r["model"] == model and r["method"] == m)
                    for m in ("baseline", "l1-filter"))
        assert l1["params_total"] < base["params_total"] and l1["flops"] < base["flops"]
        assert l1["top1_pruned"] is not None and l1["top1_retrained"] is not None
