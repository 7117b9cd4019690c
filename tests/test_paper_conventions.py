"""Each column as the source papers define it: MACs (Li et al. / Torch-Pruning), the VOC devkit's
+1 IoU, difficult boxes ignored in COCO mAP, one-shot top1_pruned, FitNets' hint loss. Every
expected number is worked out by hand in the comments."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from harness.api import Context
from harness.detection_metrics import Detections, GroundTruth, coco_map, iou, voc_map
from harness.metrics import model_metrics
from harness.methods.distill import hint_loss_romero
from harness.registry import METHODS, MODELS

# ---- 1. MACs -------------------------------------------------------------------------------


def test_macs_of_a_hand_sized_model() -> None:
    # conv 3->4, 3x3, no padding, on 3x8x8: output 4x6x6 = 144 values, each 3*3*3 = 27 MACs
    # -> 3888; linear 144 -> 5: 720 MACs; total 4608 (biases are not multiply-accumulates)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(144, 5))
    m = model_metrics(model, (3, 8, 8))
    assert m["macs"] == 3888 + 720
    assert m["flops"] == 2 * m["macs"]  # torch's flop counter counts 2 per multiply-add
    assert [(r["layer"], r["macs"]) for r in m["layers"]] == [("0", 3888), ("3", 720)]


def test_resnet56_macs_match_li_et_al() -> None:
    # Li et al. 2016, Table 1: ResNet-56 on CIFAR-10 "1.25E8 FLOPs", which are MACs; this model
    # gives 125,485,696 (0.4% above), i.e. 2.51e8 in torch's flop counter
    model = MODELS.get("resnet-56").build(num_classes=10)
    m = model_metrics(model, (3, 32, 32))
    assert m["macs"] == pytest.approx(1.25e8, rel=0.02)
    assert m["flops"] == pytest.approx(2.5e8, rel=0.02)


# ---- 2. VOC devkit's +1 IoU ----------------------------------------------------------------


def test_iou_pixel_inclusive_by_hand() -> None:
    gt = np.array([[0.0, 0.0, 3.0, 3.0]])
    det = np.array([1.0, 1.0, 3.0, 3.0])
    # continuous: gt 3x3 = 9, det 2x2 = 4 inside it -> 4 / 9 = 0.444
    assert iou(det, gt)[0] == pytest.approx(4 / 9)
    # devkit: gt 4x4 = 16 pixels, det 3x3 = 9 inside it -> 9 / 16 = 0.5625
    assert iou(det, gt, pixel_inclusive=True)[0] == pytest.approx(9 / 16)
    # (3,0,5,3) only touches gt's edge when continuous: 0. As pixel indices both hold column
    # 3: overlap 1x4 = 4 pixels, det 3x4 = 12, union 16 + 12 - 4 = 24 -> 4 / 24
    edge = np.array([3.0, 0.0, 5.0, 3.0])
    assert iou(edge, gt)[0] == 0.0
    assert iou(edge, gt, pixel_inclusive=True)[0] == pytest.approx(4 / 24)


def test_voc_map_pixel_inclusive_crosses_the_threshold() -> None:
    # one image, class 0: gt A (0,0,3,3), gt B (10,10,20,20); detections: exact on B (0.9),
    # (1,1,3,3) on A (0.8). Continuous IoU with A 4/9 < 0.5: TP, FP -> recall 1/2, 1/2,
    # precision 1, 1/2: area AP = 1/2 * 1 = 0.5; 11-point: recall >= 0, .1, ..., .5 has
    # precision 1 (6 points), >= .6 .. 1 none (0) -> 6/11. Devkit IoU 9/16 >= 0.5: TP, TP -> 1.
    g = GroundTruth(np.array([[0, 0, 3, 3], [10, 10, 20, 20]], float), np.array([0, 0]))
    d = Detections(np.array([[10, 10, 20, 20], [1, 1, 3, 3]], float), np.array([0.9, 0.8]),
                   np.array([0, 0]))
    cont = voc_map([d], [g], 1)
    assert cont["map50_area"] == pytest.approx(0.5)
    assert cont["map50_11pt"] == pytest.approx(6 / 11)
    devkit = voc_map([d], [g], 1, pixel_inclusive=True)
    assert devkit["map50_area"] == pytest.approx(1.0)
    assert devkit["map50_11pt"] == pytest.approx(1.0)


def _devkit_to_continuous(box: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """How `voc2007` holds an XML box: (xmin - 1, ymin - 1, xmax, ymax), scaled."""
    return np.array([(box[0] - 1) * sx, (box[1] - 1) * sy, box[2] * sx, box[3] * sy])


def test_voc2007_boxes_scored_continuous_get_the_devkits_iou(data_dir: Path) -> None:
    """The reader's conversion makes the plain IoU the devkit's +1 IoU, at any resize: so
    voc2007 is scored with pixel_inclusive off (adding +1 again would count it twice)."""
    from harness.benchmarks.datasets.detection import targets_to_lists
    from harness.registry import DATASETS

    ds = DATASETS.get("voc2007")(data_dir=data_dir, size=64)
    t = targets_to_lists(ds.train().tensors[1])[0]
    root = data_dir / "VOCdevkit" / "VOC2007" / "Annotations"
    obj = ET.parse(root / "000000.xml").find("object")
    b = obj.find("bndbox")  # type: ignore[union-attr]
    xml = np.array([float(b.find(k).text)  # type: ignore[union-attr,arg-type]
                    for k in ("xmin", "ymin", "xmax", "ymax")])
    sx, sy = 64 / 64, 64 / 48  # the conftest images are 64x48, read at size 64
    np.testing.assert_allclose(t["boxes"][0], _devkit_to_continuous(xml, sx, sy), rtol=1e-6)
    # a devkit detection one pixel in from the top-left corner and one short on the right
    det = xml + np.array([1.0, 1.0, -1.0, 0.0])
    want = iou(det, xml[None], pixel_inclusive=True)[0]
    held = _devkit_to_continuous(det, sx, sy)
    assert iou(held, t["boxes"][:1])[0] == pytest.approx(want)
    # +1 on top of the conversion counts the extra pixel twice: a different IoU
    assert iou(held, t["boxes"][:1], pixel_inclusive=True)[0] != pytest.approx(want)


def test_devkit_and_continuous_agree_by_hand_at_a_resize() -> None:
    # devkit gt (1,1,4,4) = 4x4 pixels, det (2,2,4,4) = 3x3 inside it: 9/16. Held continuous
    # (0,0,4,4) and (1,1,4,4): 3x3 = 9 inside 4x4 = 16: 9/16, and scaling x by 0.64, y by 0.8
    # scales every area by 0.512, so the ratio stays 9/16
    gt, det = np.array([1.0, 1.0, 4.0, 4.0]), np.array([2.0, 2.0, 4.0, 4.0])
    assert iou(det, gt[None], pixel_inclusive=True)[0] == pytest.approx(9 / 16)
    cg, cd = _devkit_to_continuous(gt, 0.64, 0.8), _devkit_to_continuous(det, 0.64, 0.8)
    assert iou(cd, cg[None])[0] == pytest.approx(9 / 16)


# ---- 3. difficult boxes ignored in COCO mAP ------------------------------------------------

NORMAL, DIFFICULT = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]


def _difficult_case(on_difficult: list[list[float]]) -> tuple[list[Detections],
                                                               list[GroundTruth]]:
    """One image: a normal box found exactly (score 0.9), a difficult box, and detections
    `on_difficult` ranked above it (scores 0.95, 0.94, ...)."""
    g = GroundTruth(np.array([NORMAL, DIFFICULT]), np.array([0, 0]), np.array([False, True]))
    boxes = [NORMAL, *on_difficult]
    scores = [0.9] + [0.95 - 0.01 * i for i in range(len(on_difficult))]
    d = Detections(np.array(boxes), np.array(scores), np.zeros(len(boxes), int))
    return [d], [g]


def test_a_detection_on_a_difficult_box_counts_neither_way() -> None:
    # exactly on the difficult box, top score: ignored, so one TP out of one box: AP 1 at every
    # IoU threshold. Counted as a FP it would rank first: precision 1/2 at recall 1 -> 0.5.
    dets, gts = _difficult_case([DIFFICULT])
    res = coco_map(dets, gts, 1)
    assert res["map"] == pytest.approx(1.0) and res["map50"] == pytest.approx(1.0)
    assert voc_map(dets, gts, 1)["map50_area"] == pytest.approx(1.0)


def test_duplicates_on_a_difficult_box_are_ignored_too() -> None:
    # the devkit ignores every detection whose best match is difficult, used or not
    dets, gts = _difficult_case([DIFFICULT, DIFFICULT])
    assert coco_map(dets, gts, 1)["map"] == pytest.approx(1.0)
    assert voc_map(dets, gts, 1)["map50_area"] == pytest.approx(1.0)


def test_partial_overlap_with_a_difficult_box_uses_the_standard_iou() -> None:
    # det (20,20,26.2,30) lies inside the difficult box: standard IoU 62/100 = 0.62, crowd IoU
    # (over the detection's area) 62/62 = 1. Ignored at IoU thresholds .50 .55 .60 (AP 1), a
    # top-ranked FP at .65 .. .95 (AP 0.5, as above): map = (3 * 1 + 7 * 0.5) / 10 = 0.65,
    # map50 = 1, map75 = 0.5. The old crowd rule ignored it everywhere: map 1.0.
    dets, gts = _difficult_case([[20.0, 20.0, 26.2, 30.0]])
    res = coco_map(dets, gts, 1)
    assert res["map"] == pytest.approx(0.65, abs=1e-6)
    assert res["map50"] == pytest.approx(1.0) and res["map75"] == pytest.approx(0.5, abs=1e-6)
    # det (20,20,24,30): standard IoU 0.4 < 0.5, a FP at every threshold (crowd: 1.0, ignored)
    dets, gts = _difficult_case([[20.0, 20.0, 24.0, 30.0]])
    assert coco_map(dets, gts, 1)["map"] == pytest.approx(0.5, abs=1e-6)
    assert voc_map(dets, gts, 1)["map50_area"] == pytest.approx(0.5)  # FP then TP


# ---- 4. top1_pruned is one-shot ------------------------------------------------------------


def test_iterative_weight_level_reports_the_one_shot_accuracy() -> None:
    # one linear layer, weights 1..10; evaluate = sum of weights / 100 (an "accuracy" read from
    # the weights); the fake fine-tune adds 10 to every kept weight (masks hold the zeros).
    # one-shot to 80%: keep 9, 10 -> 0.19.
    # steps=3, targets 1 - 0.2^(k/3) = 0.415, 0.658, 0.8 -> k = 4, 7, 8 weights zeroed:
    #   step 1 keeps 5..10, fine-tune -> 15..20; step 2 keeps 18, 19, 20 -> 28, 29, 30;
    #   step 3 keeps 29, 30 (no fine-tune: the runner's) -> 0.59
    model = nn.Linear(10, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.arange(1.0, 11.0)[None])
    evaluated: list[torch.Tensor] = []

    def evaluate(m: nn.Module) -> float:
        evaluated.append(m.weight.detach().clone())
        return float(m.weight.detach().sum()) / 100

    def finetune(m: nn.Module, masks: dict[str, torch.Tensor] | None = None, **kw: Any) -> None:
        with torch.no_grad():
            m.weight.add_(10.0 * masks["weight"])  # type: ignore[index]

    ctx = Context(train_data=None, test_data=None, num_classes=1, input_shape=(10,),
                  finetune=finetune, evaluate=evaluate)
    method = METHODS.get("weight-level")
    assert method.version == "2"
    comp = method().apply(model, method.Config(sparsity=0.8, steps=3), ctx)
    assert comp.top1_pruned == pytest.approx(0.19)
    assert comp.info["top1_iterative_pruned"] == pytest.approx(0.59)
    assert len(evaluated) == 2
    assert evaluated[0].tolist() == [[0.0] * 8 + [9.0, 10.0]]  # the pruned copy, untrained
    assert comp.model.weight.tolist() == [[0.0] * 8 + [29.0, 30.0]]  # iterative, returned
    # one step: nothing retrained inside apply, the runner measures the returned model
    one = method().apply(copy.deepcopy(model), method.Config(sparsity=0.8, steps=1), ctx)
    assert one.top1_pruned is None and len(evaluated) == 2


# ---- 5. FitNets' hint loss -----------------------------------------------------------------


def test_hint_loss_romero_by_hand() -> None:
    # two samples of a 3x1x1 hint: 1/2 * ((1^2 + 2^2 + 2^2) = 9) = 4.5 and
    # 1/2 * ((0-1)^2 + 0 + (3-1)^2 = 5) = 2.5; batch mean 3.5 (mse_loss would give 14/6)
    pred = torch.tensor([[1.0, 2.0, 2.0], [0.0, 1.0, 3.0]]).reshape(2, 3, 1, 1)
    target = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]).reshape(2, 3, 1, 1)
    assert float(hint_loss_romero(pred, target)) == pytest.approx(3.5)


def test_fitnets_stage_one_minimises_scaled_romero_loss() -> None:
    """Stage 1's loss is L_HT x 2 / D (D = the hint's elements per sample): the raw L_HT
    diverges at the suites' SGD lr (see FitNets' docstring)."""
    torch.manual_seed(0)
    teacher = MODELS.get("resnet-14").build().eval()
    seen: dict[str, float] = {}

    def train(m: nn.Module, epochs: float | None = None, loss: Any = None,
              extra_params: list[nn.Parameter] | None = None, **kw: Any) -> nn.Module:
        if seen:  # stage 2 (KD): nothing to check
            return m
        hints: dict[str, torch.Tensor] = {}
        hooks = [teacher.layer2.register_forward_hook(lambda mod, i, o: hints.update(t=o)),
                 m.layer2.register_forward_hook(lambda mod, i, o: hints.update(s=o))]
        seen["got"] = float(loss(m, torch.randn(2, 3, 32, 32), None).detach())
        for h in hooks:
            h.remove()
        w, b = extra_params  # type: ignore[misc]  # the 1x1 conv regressor
        pred = torch.nn.functional.conv2d(hints["s"], w, b)
        d = hints["t"][0].numel()  # 32 x 16 x 16 = 8192 for resnet-14's layer2
        seen["want"] = float(hint_loss_romero(pred, hints["t"]).detach()) * 2 / d
        seen["raw"] = float(hint_loss_romero(pred, hints["t"]).detach())
        return m

    ctx = Context(train_data=None, test_data=None, num_classes=10, input_shape=(3, 32, 32),
                  teacher=teacher, train=train, train_epochs=1.0)
    method = METHODS.get("fitnets")
    assert method.version == "2"
    method().apply(None, method.Config(student="resnet-8"), ctx)
    assert seen["got"] == pytest.approx(seen["want"], rel=1e-5)
    assert seen["raw"] > 100 * seen["got"]  # the unscaled L_HT: D / 2 times larger
