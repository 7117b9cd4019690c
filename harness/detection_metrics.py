"""Detection accuracy: PASCAL VOC mAP@0.5 (11-point and area) and COCO mAP@[.5:.95].

VOC follows the devkit's rules: per class, detections sorted by score, greedily matched to the
highest-IoU unmatched ground truth; a match to a `difficult` box counts neither way, and
difficult boxes are not in the recall denominator. COCO mAP is pycocotools' COCOeval on the
same boxes (built in memory; no files), difficult boxes ignored the same way.

Boxes are (x1, y1, x2, y2); classes are 0-based. Two box conventions exist, and IoU differs
between them on small boxes (enough to cross 0.5):
- continuous (the default; COCO, torchvision, and both datasets here): x2 - x1 is the width.
- pixel-inclusive (`pixel_inclusive=True`; the VOC devkit's VOCevaldet): x1..x2 are indices of
  the first and last pixel, so the width is x2 - x1 + 1, and so is the intersection's.
The two agree exactly when a devkit box (x1, y1, x2, y2) is held as the continuous box
(x1 - 1, y1 - 1, x2, y2), at any per-axis scale: that is how `voc2007` reads its XML, so its
boxes are scored continuous and still get the devkit's +1 IoU.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Detections:
    """One image's predictions."""

    boxes: np.ndarray  # (n, 4)
    scores: np.ndarray  # (n,)
    labels: np.ndarray  # (n,)


@dataclass
class GroundTruth:
    """One image's annotations."""

    boxes: np.ndarray  # (m, 4)
    labels: np.ndarray  # (m,)
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # (m,)

    def __post_init__(self) -> None:
        if len(self.difficult) != len(self.labels):
            self.difficult = np.zeros(len(self.labels), bool)


def iou(box: np.ndarray, boxes: np.ndarray, pixel_inclusive: bool = False) -> np.ndarray:
    """IoU of one box with many. Continuous coordinates by default; `pixel_inclusive`: the VOC
    devkit's rule for pixel-index boxes, widths and heights x2 - x1 + 1 (see the module doc)."""
    one = 1.0 if pixel_inclusive else 0.0
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1 + one, 0, None) * np.clip(y2 - y1 + one, 0, None)
    area = (box[2] - box[0] + one) * (box[3] - box[1] + one)
    areas = (boxes[:, 2] - boxes[:, 0] + one) * (boxes[:, 3] - boxes[:, 1] + one)
    return inter / np.maximum(area + areas - inter, 1e-12)


def voc_ap(recall: np.ndarray, precision: np.ndarray, eleven_point: bool) -> float:
    """Average precision from a PR curve: VOC2007's 11-point, or the area under the
    monotone precision envelope (VOC2010+)."""
    if eleven_point:
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def voc_map(dets: list[Detections], gts: list[GroundTruth], num_classes: int,
            iou_threshold: float = 0.5, pixel_inclusive: bool = False
            ) -> dict[str, float | list[float]]:
    """{"map50_11pt", "map50_area", "ap_per_class"} over classes that have ground truth.
    `pixel_inclusive`: boxes are the devkit's pixel indices (IoU with +1 widths)."""
    aps_11, aps_area = [], []
    per_class: list[float] = []
    for c in range(num_classes):
        records = []  # (score, image, box)
        npos = 0
        for i, (d, g) in enumerate(zip(dets, gts, strict=True)):
            npos += int(((g.labels == c) & ~g.difficult).sum())
            for box, score in zip(d.boxes[d.labels == c], d.scores[d.labels == c], strict=True):
                records.append((float(score), i, box))
        if npos == 0:
            per_class.append(float("nan"))
            continue
        records.sort(key=lambda r: -r[0])
        used = {i: np.zeros(int((g.labels == c).sum()), bool) for i, g in enumerate(gts)}
        tp = np.zeros(len(records))
        fp = np.zeros(len(records))
        for k, (_, i, box) in enumerate(records):
            g = gts[i]
            mask = g.labels == c
            cand, diff = g.boxes[mask], g.difficult[mask]
            if len(cand) == 0:
                fp[k] = 1
                continue
            ious = iou(box, cand, pixel_inclusive)
            j = int(ious.argmax())
            if ious[j] >= iou_threshold:
                if diff[j]:
                    continue  # neither true nor false positive
                if not used[i][j]:
                    tp[k], used[i][j] = 1, True
                else:
                    fp[k] = 1
            else:
                fp[k] = 1
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        recall = ctp / npos
        precision = ctp / np.maximum(ctp + cfp, np.finfo(float).eps)
        aps_11.append(voc_ap(recall, precision, True))
        aps_area.append(voc_ap(recall, precision, False))
        per_class.append(aps_area[-1])
    return {"map50_11pt": float(np.mean(aps_11)) if aps_11 else 0.0,
            "map50_area": float(np.mean(aps_area)) if aps_area else 0.0,
            "ap_per_class": per_class}


def coco_map(dets: list[Detections], gts: list[GroundTruth], num_classes: int
             ) -> dict[str, float]:
    """pycocotools COCOeval bbox: {"map", "map50", "map75"}, continuous coordinates.

    A detection matching a `difficult` box (standard IoU) is ignored, neither true nor false
    positive, and difficult boxes are not in the recall denominator, as in `voc_map`. They enter
    as pycocotools' ignore regions, which COCOeval derives from `iscrowd` in `_prepare` (any
    `ignore` field given is overwritten there); crowd matching also lets an ignored box absorb
    any number of detections, which is the devkit's rule too. What crowd would change, the IoU
    (intersection over the detection's area only, so a small detection inside a big difficult
    box would be ignored rather than a false positive), `_VOCDifficult` puts back to the
    standard one.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    class _VOCDifficult(COCOeval):  # type: ignore[misc]
        def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802,N803
            gts = self._gts[imgId, catId]
            crowd = [g["iscrowd"] for g in gts]
            for g in gts:
                g["iscrowd"] = 0  # standard IoU for every box, difficult or not
            try:
                return super().computeIoU(imgId, catId)
            finally:
                for g, c in zip(gts, crowd, strict=True):
                    g["iscrowd"] = c

    images, annotations, results = [], [], []
    ann_id = 1
    for i, (d, g) in enumerate(zip(dets, gts, strict=True)):
        images.append({"id": i + 1})
        for box, label, diff in zip(g.boxes, g.labels, g.difficult, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({"id": ann_id, "image_id": i + 1, "category_id": int(label) + 1,
                                "bbox": [float(box[0]), float(box[1]), w, h], "area": w * h,
                                "iscrowd": int(diff)})  # ignored: see the docstring
            ann_id += 1
        for box, score, label in zip(d.boxes, d.scores, d.labels, strict=True):
            results.append({"image_id": i + 1, "category_id": int(label) + 1,
                            "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]),
                                     float(box[3] - box[1])], "score": float(score)})
    if not results or not annotations:
        return {"map": 0.0, "map50": 0.0, "map75": 0.0}
    gt = COCO()
    gt.dataset = {"images": images, "annotations": annotations,
                  "categories": [{"id": c + 1} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = _VOCDifficult(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {"map": float(ev.stats[0]), "map50": float(ev.stats[1]), "map75": float(ev.stats[2])}
