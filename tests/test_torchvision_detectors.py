"""torchvision's SSDlite and Faster R-CNN: the network part exports and agrees with torch on every
runtime, decoding matches torchvision's own detector, pruning keeps heads consistent, INT8 works
where torch.ao cannot trace, and a sweep runs end to end."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import outputs_on_cpu_targets
from harness.api import Context, build_model
from harness.detection_metrics import iou
from harness.errors import UsageError
from harness.metrics import count_params
from harness.registry import METHODS, MODELS

SHAPE = (1, 96, 96)
SSD, FRCNN = "ssdlite-mobilenet-v3", "fasterrcnn-mobilenet-v3-fpn"


def scenes(n: int, seed: int = 0) -> np.ndarray:
    """Bright rectangles on a dark canvas (normalised like fashion-det)."""
    rng = np.random.default_rng(seed)
    x = np.full((n, *SHAPE), -1.0, np.float32)
    for i in range(n):
        for _ in range(3):
            x0, y0 = rng.integers(0, 60, 2)
            w, h = rng.integers(16, 36, 2)
            x[i, 0, y0:y0 + h, x0:x0 + w] = rng.uniform(0.0, 1.0)
    return x


def settled(name: str, **options) -> torch.nn.Module:  # type: ignore[no-untyped-def]
    """A fresh detector with BN statistics from real-looking images and heads drawn wider than
    torchvision's init, so scores are spread (an untrained RPN scores every anchor alike)."""
    torch.manual_seed(0)
    model = build_model(MODELS.get(name), 10, SHAPE, options)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model.net.backbone(torch.from_numpy(scenes(16, seed=1)))
        heads = model.net.head if name == SSD else model.net.rpn.head
        for p in heads.parameters():
            p.normal_(0.0, 0.05)
    return model.eval()


@pytest.fixture(scope="module")
def ssd() -> torch.nn.Module:
    return settled(SSD)


@pytest.fixture(scope="module")
def frcnn() -> torch.nn.Module:
    return settled(FRCNN)


def same_detections(got, want, min_score: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Every confident reference detection is found again: same label, IoU > 0.98, score
    within 2e-3 (order may differ where scores tie)."""
    for a, b in zip(got, want, strict=True):
        keep = b.scores >= min_score
        assert keep.any()
        for box, score, label in zip(b.boxes[keep], b.scores[keep], b.labels[keep]):
            cand = (a.labels == label) & (np.abs(a.scores - score) < 2e-3)
            assert cand.any() and iou(box, a.boxes[cand]).max() > 0.98, (box, score, label)


def test_ssd_network_part_agrees_on_every_runtime_and_decodes_like_torchvision(
        ssd, tmp_path) -> None:  # type: ignore[no-untyped-def]
    x = scenes(3)
    names = []
    for name, got, want in outputs_on_cpu_targets(ssd, SHAPE, tmp_path, x=x):
        names.append(name)
        same_detections(ssd.decode(got), ssd.decode(want))
    assert names[0] == "torch-cpu" and len(names) >= 2
    # torchvision's own SSD (transform skipped: images are already normalised, right size)
    net = ssd.net
    with torch.no_grad():
        feats = list(net.backbone(torch.from_numpy(x)).values())
        head = net.head(feats)
        from torchvision.models.detection.image_list import ImageList

        anchors = net.anchor_generator(ImageList(torch.from_numpy(x), [SHAPE[1:]] * 3), feats)
        ref = net.postprocess_detections(head, anchors, [SHAPE[1:]] * 3)
        ours = ssd.decode(ssd(torch.from_numpy(x)).numpy())
    for d, r in zip(ours, ref, strict=True):
        np.testing.assert_allclose(d.boxes, r["boxes"].numpy(), atol=1e-4)
        np.testing.assert_array_equal(d.labels, r["labels"].numpy() - 1)


def test_frcnn_fixed_shape_proposals_match_torchvision_rpn(frcnn) -> None:  # type: ignore[no-untyped-def]
    """The exportable proposal selection keeps what torchvision's RPN keeps (and flags the rest)."""
    from torchvision.models.detection.image_list import ImageList

    x = torch.from_numpy(scenes(3))
    with torch.no_grad():
        feats = frcnn.net.backbone(x)
        boxes, objectness = frcnn._proposals(list(feats.values()))
        ref, _ = frcnn.net.rpn(ImageList(x, [SHAPE[1:]] * 3), feats)
    assert boxes.shape == (3, frcnn.post_nms, 4)
    for b, o, r in zip(boxes, objectness, ref, strict=True):
        kept = b[o >= 0]
        assert len(kept) == len(r) > 0
        np.testing.assert_allclose(np.sort(kept.numpy(), 0), np.sort(r.numpy(), 0), atol=1e-4)


def test_frcnn_exports_and_agrees_on_every_runtime(frcnn, tmp_path) -> None:  # type: ignore[no-untyped-def]
    names = []
    for name, got, want in outputs_on_cpu_targets(frcnn, SHAPE, tmp_path, x=scenes(3),
                                                   raw=False):
        names.append(name)
        assert got.shape == want.shape
        same_detections(frcnn.decode(got), frcnn.decode(want))
    assert len(names) >= 2


@pytest.mark.parametrize("name", [SSD, FRCNN])
def test_pruned_detector_is_smaller_keeps_its_heads_and_still_trains(name, ssd, frcnn) -> None:  # type: ignore[no-untyped-def]
    base = ssd if name == SSD else frcnn
    model = copy.deepcopy(base)
    method = METHODS.get("l1-filter")
    comp = method().apply(model, method.Config(ratio=0.5), Context(None, None, 10, SHAPE))
    pruned = comp.model.eval()
    assert count_params(pruned)[0] < 0.8 * count_params(base)[0]
    assert len(comp.info["removed"]) == len(base.prunable_layers())
    x = torch.from_numpy(scenes(2))
    with torch.no_grad():
        assert pruned(x).shape == base(x).shape  # same anchors/proposals, same classes
    if name == FRCNN:
        assert pruned.net.roi_heads.box_head.fc6.out_features == 512
        assert pruned.net.backbone.fpn.inner_blocks[0][0].out_channels == 256
        assert pruned.net.roi_heads.box_predictor.cls_score.out_features == 11
    else:
        def head_outputs(m: torch.nn.Module) -> list[int]:
            return [b[-1].out_channels for b in m.net.head.classification_head.module_list]

        assert head_outputs(pruned) == head_outputs(base)
    targets = torch.full((2, 4, 6), -1.0)
    targets[:, 0] = torch.tensor([3.0, 10, 10, 50, 60, 0])
    pruned.train()
    loss = pruned.detection_loss(x, targets)
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0
                                        for p in pruned.parameters())


def test_int8_falls_back_to_onnxruntime_scoring_where_fx_cannot_trace(tmp_path: Path) -> None:
    """torch.ao FX cannot trace control flow on a tensor (as in torchvision's box predictor):
    torch-cpu is skipped with the reason, the other toolchains still quantize and torch-side
    accuracy comes from ORT INT8."""
    class Branching(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.fc = torch.nn.Linear(8, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.conv(x))
            if h.dim() == 4:  # FX: "symbolically traced variables cannot be used as inputs
                h = h.mean((2, 3))  # to control flow"
            return self.fc(h)

    torch.manual_seed(0)
    model = Branching().eval()
    calib = torch.randn(32, 1, 8, 8)
    ctx = Context(None, None, 4, (1, 8, 8), workdir=tmp_path,
                  calibration=lambda n: torch.utils.data.TensorDataset(calib[:n],
                                                                       torch.zeros(n)))
    method = METHODS.get("int8-ptq")
    comp = method().apply(model, method.Config(calibration=32), ctx)
    assert "torch-cpu" not in comp.artifacts and "onnxruntime-cpu" in comp.artifacts
    assert "FX" in comp.info["skipped_toolchains"]["torch-cpu"]
    assert comp.info["torch_accuracy_from"].startswith("onnxruntime-cpu")
    with torch.no_grad():
        q, f = comp.scored(calib[:8]), model(calib[:8])
    assert q.shape == f.shape and not torch.equal(q, f)  # really the INT8 model
    assert (q - f).abs().max() < 0.1 * f.abs().max() + 0.05


def test_model_options_reach_the_builder_and_bad_ones_are_named(tmp_path: Path) -> None:
    from harness.suite import load

    base = """
name = "opts"
dataset = "fashion-det"
models = ["fasterrcnn-mobilenet-v3-fpn"]
{extra}
[profiles.smoke]
train = {{ epochs = 1 }}
finetune = {{ epochs = 1 }}
"""
    path = tmp_path / "opts.toml"
    path.write_text(base.format(extra="[model_options.fasterrcnn-mobilenet-v3-fpn]\n"
                                      "proposals = 20\nrois_per_image = 16\n"))
    suite = load(str(path))
    model = build_model(MODELS.get(FRCNN), 10, SHAPE, suite.model_options[FRCNN])
    assert model.post_nms == 20 and model.net.roi_heads.fg_bg_sampler.batch_size_per_image == 16
    path.write_text(base.format(extra="[model_options.fasterrcnn-mobilenet-v3-fpn]\nrois = 16\n"))
    with pytest.raises(UsageError, match="unknown key 'rois'.*rois_per_image"):
        load(str(path))
    path.write_text(base.format(extra="[model_options.yolov2-tiny]\ncheckpoint = 'x'\n"))
    with pytest.raises(UsageError, match="not among the suite's models"):
        load(str(path))


def test_checkpoint_loads_matching_tensors(ssd, tmp_path: Path) -> None:
    path = tmp_path / "ssd.pt"
    torch.save(ssd.net.state_dict(), path)
    again = build_model(MODELS.get(SSD), 10, SHAPE, {"checkpoint": str(path)})
    for (k, a), b in zip(ssd.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(a, b), k
    rgb = build_model(MODELS.get(SSD), 10, (3, 96, 96))  # an RGB checkpoint on grey images
    torch.save(rgb.net.state_dict(), path)
    grey = build_model(MODELS.get(SSD), 10, SHAPE, {"checkpoint": str(path)})
    stem = "backbone.features.0.0.0.weight"
    torch.testing.assert_close(grey.net.state_dict()[stem],
                               rgb.net.state_dict()[stem].sum(1, keepdim=True))
    torch.save({"unrelated": torch.zeros(3)}, path)
    with pytest.raises(ValueError, match="no tensor matches"):
        build_model(MODELS.get(SSD), 10, SHAPE, {"checkpoint": str(path)})


SUITE = """
name = "tiny-tv-det"
dataset = "fashion-det"
dataset_options = { train_scenes = 48, test_scenes = 16 }
models = ["ssdlite-mobilenet-v3", "fasterrcnn-mobilenet-v3-fpn"]

[model_options.fasterrcnn-mobilenet-v3-fpn]
rois_per_image = 16
proposals = 20

[[methods]]
name = "l1-filter"
grid = { ratio = [0.5] }

[profiles.smoke]
train = { epochs = 1, lr = 0.002, optimizer = "adam", batch_size = 16 }
finetune = { epochs = 1, lr = 0.0005, optimizer = "adam", batch_size = 16 }
timing = { batch_sizes = [1, 4], iterations = 3, warmup = 1, rounds = 2, threads = 1 }
"""


def test_checkpoint_content_is_part_of_the_baseline_key(ssd, tmp_path: Path, data_dir) -> None:  # type: ignore[no-untyped-def]
    import dataclasses
    import os

    from harness import suite as suites
    from harness.runner import Runner, RunOptions

    ckpt = tmp_path / "w.pt"
    torch.save(ssd.net.state_dict(), ckpt)
    path = tmp_path / "s.toml"
    path.write_text(SUITE.replace("[model_options.fasterrcnn-mobilenet-v3-fpn]",
                                  f"[model_options.ssdlite-mobilenet-v3]\ncheckpoint = '{ckpt}'\n"
                                  "[model_options.fasterrcnn-mobilenet-v3-fpn]"))
    suite = suites.load(str(path))

    def key(s) -> str:  # type: ignore[no-untyped-def]
        runner = Runner(RunOptions(suite=s, profile="smoke", targets=["null"], store=tmp_path /
                                   "r.db", cache_dir=tmp_path / "c", data_dir=data_dir))
        return runner.baseline_key(SSD)

    first = key(suite)
    assert key(dataclasses.replace(suite, model_options={})) != first
    state = ssd.net.state_dict()
    state["head.regression_head.module_list.0.1.bias"] += 1.0
    torch.save(state, ckpt)
    os.utime(ckpt, ns=(1, 1))  # a new mtime, in case the file system's clock is coarse
    assert key(suite) != first  # same path, other weights: another baseline
