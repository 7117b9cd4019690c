"""What "accuracy" means for a task, computed by the harness from raw model outputs, the same
way for torch and for every runtime: top-1 for classifiers, VOC mAP@0.5 for detectors (box
decoding and NMS included, and timed on their own)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from harness.train import LossFn, cross_entropy, top1


class ClassifyScorer:
    metric = "top1"
    loss: LossFn = staticmethod(cross_entropy)

    def score(self, outputs: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, Any]]:
        return round(top1(outputs, labels), 5), {}

    @staticmethod
    def correct(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Item by item, was the argmax the label: what top-1 averages, kept so that an
        accuracy loss can carry its paired interval (harness.accuracy_ci)."""
        return np.asarray(outputs).argmax(1) == np.asarray(labels).reshape(-1)

    def postprocess_ms(self, outputs: np.ndarray) -> float | None:
        return None


class DetectScorer:
    """`decoder` is a model with `decode(outputs) -> list[Detections]` (the baseline: decoding
    depends on its anchors and classes, never on its weights). Detectors train through their
    own `detection_loss(images, padded_targets)`. `pixel_inclusive`: the dataset's boxes are
    the VOC devkit's pixel indices (IoU with +1 widths); both datasets here hold continuous
    boxes (`voc2007` converts the devkit's at load, which keeps its +1 IoU exactly), so False;
    COCO mAP is continuous always."""

    metric = "map50"
    correct = None  # mAP is no mean over items: no per-item vector, no interval

    def __init__(self, decoder: Any, num_classes: int, pixel_inclusive: bool = False) -> None:
        self.decoder = decoder
        self.num_classes = num_classes
        self.pixel_inclusive = pixel_inclusive

    @staticmethod
    def loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return model.detection_loss(x, y)

    def score(self, outputs: np.ndarray, labels: np.ndarray) -> tuple[float, dict[str, Any]]:
        from harness.benchmarks.datasets.detection import targets_to_lists
        from harness.detection_metrics import GroundTruth, coco_map, voc_map

        dets = self.decoder.decode(np.asarray(outputs))
        gts = [GroundTruth(g["boxes"], g["labels"], g["difficult"])
               for g in targets_to_lists(torch.as_tensor(labels))]
        voc = voc_map(dets, gts, self.num_classes, pixel_inclusive=self.pixel_inclusive)
        coco = coco_map(dets, gts, self.num_classes)
        extras = {"map50_11pt": round(voc["map50_11pt"], 5), "coco_map": round(coco["map"], 5),
                  "coco_map50": round(coco["map50"], 5)}
        return round(voc["map50_area"], 5), extras

    def postprocess_ms(self, outputs: np.ndarray, repeats: int = 20) -> float:
        """Median time of decoding + NMS for one image's outputs."""
        one = np.ascontiguousarray(outputs[:1])
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            self.decoder.decode(one)
            times.append(time.perf_counter_ns() - t0)
        return float(f"{np.median(times) / 1e6:.3g}")
