"""VOC and COCO mAP on a hand-made case whose answer is worked out by hand below."""

from __future__ import annotations

import numpy as np
import pytest

from harness.detection_metrics import Detections, GroundTruth, coco_map, voc_ap, voc_map


def case(with_difficult: bool = False) -> tuple[list[Detections], list[GroundTruth]]:
    """Class 0: three boxes to find over two images. Sorted detections: TP, TP, FP, TP, so
    recall = 1/3, 2/3, 2/3, 1 and precision = 1, 1, 2/3, 3/4."""
    g1 = GroundTruth(np.array([[0, 0, 10, 10]], float), np.array([0]))
    g2 = GroundTruth(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0, 0]))
    d1 = Detections(np.array([[0, 0, 10, 10]], float), np.array([0.9]), np.array([0]))
    d2 = Detections(np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], float),
                    np.array([0.8, 0.7, 0.6]), np.array([0, 0, 0]))
    if with_difficult:  # a difficult box, found with the top score: it must count neither way
        g1 = GroundTruth(np.array([[0, 0, 10, 10], [40, 40, 50, 50]], float), np.array([0, 0]),
                         np.array([False, True]))
        d1 = Detections(np.array([[0, 0, 10, 10], [40, 40, 50, 50]], float),
                        np.array([0.9, 0.95]), np.array([0, 0]))
    return [d1, d2], [g1, g2]


# by hand: area = 2/3 * 1 + 1/3 * 0.75; 11-point = (7 * 1 + 4 * 0.75) / 11;
# COCO's 101-point interpolation = (67 * 1 + 34 * 0.75) / 101 (every box is exact, so the same
# at every IoU threshold)
AREA, ELEVEN, COCO101 = 2 / 3 + 0.25, 10 / 11, (67 + 34 * 0.75) / 101


@pytest.mark.parametrize("difficult", [False, True])
def test_voc_map_known_answer(difficult: bool) -> None:
    dets, gts = case(difficult)
    res = voc_map(dets, gts, num_classes=1)
    assert res["map50_area"] == pytest.approx(AREA)
    assert res["map50_11pt"] == pytest.approx(ELEVEN)


@pytest.mark.parametrize("difficult", [False, True])
def test_coco_map_via_pycocotools_known_answer(difficult: bool) -> None:
    dets, gts = case(difficult)
    res = coco_map(dets, gts, num_classes=1)
    assert res["map50"] == pytest.approx(COCO101, abs=1e-6)
    assert res["map"] == pytest.approx(COCO101, abs=1e-6)
    # our area AP and pycocotools' AP@0.5 differ only by COCO's 101-point sampling
    assert abs(voc_map(dets, gts, 1)["map50_area"] - res["map50"]) < 0.01


def test_localisation_matters() -> None:
    g = [GroundTruth(np.array([[0, 0, 10, 10]], float), np.array([0]))]
    off = [Detections(np.array([[5, 5, 15, 15]], float), np.array([0.9]), np.array([0]))]
    assert voc_map(off, g, 1)["map50_area"] == 0.0  # IoU 25/175 < 0.5
    assert voc_map(off, g, 1, iou_threshold=0.1)["map50_area"] == pytest.approx(1.0)
    wrong_class = [Detections(np.array([[0, 0, 10, 10]], float), np.array([0.9]), np.array([1]))]
    assert voc_map(wrong_class, g, 2)["map50_area"] == 0.0


def test_voc_ap_curves() -> None:
    rec, prec = np.array([0.5, 1.0]), np.array([1.0, 0.5])
    assert voc_ap(rec, prec, eleven_point=False) == pytest.approx(0.75)
    assert voc_ap(rec, prec, eleven_point=True) == pytest.approx((6 * 1.0 + 5 * 0.5) / 11)
