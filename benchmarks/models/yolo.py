"""`yolov2-tiny`: a compact YOLOv2-style single-stage detector (Redmon & Farhadi 2017, "tiny").

Conv-BN-LeakyReLU blocks with max-pooling down to stride 16, then a 1x1 head predicting, per
grid cell and anchor, (tx, ty, tw, th, objectness, class logits). The network is what gets
exported and timed; `decode` (sigmoid/exp box decoding, score threshold, per-class NMS) runs in
the harness, the same way for every runtime. `loss` is YOLOv2's: squared error on the box terms
of the responsible anchor, BCE objectness (no-object weighted 0.5), cross-entropy classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness.api import ModelSpec
from harness.detection_metrics import Detections
from harness.registry import MODELS

# anchor (w, h) in grid cells (stride 16): square, wide, tall, small, large
ANCHORS = ((1.0, 1.0), (2.0, 2.0), (2.8, 1.6), (1.6, 2.8), (4.0, 4.0))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.LeakyReLU(0.1))


class TinyYolo(nn.Module):
    stride = 16

    def __init__(self, num_classes: int = 20, in_channels: int = 3,
                 widths: tuple[int, ...] = (16, 32, 64, 128, 256),
                 anchors: tuple[tuple[float, float], ...] = ANCHORS) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32))
        layers: list[nn.Module] = []
        cin = in_channels
        for i, w in enumerate(widths):
            layers.append(_block(cin, w))
            if i < 4:
                layers.append(nn.MaxPool2d(2))
            cin = w
        self.features = nn.Sequential(*layers)
        self.neck = _block(cin, cin)
        self.head = nn.Conv2d(cin, len(anchors) * (5 + num_classes), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.neck(self.features(x)))

    # ---- training ---------------------------------------------------------------------------

    def _split(self, out: torch.Tensor) -> torch.Tensor:
        n, _, s1, s2 = out.shape
        return out.view(n, len(self.anchors), 5 + self.num_classes, s1, s2).permute(0, 3, 4, 1, 2)

    def detection_loss(self, x: torch.Tensor, targets: torch.Tensor,
                       forward: Any = None) -> torch.Tensor:
        """The training loss; `forward` stands in for `self` (e.g. a QAT fake-quant graph)."""
        return self.loss((self if forward is None else forward)(x), targets)

    def loss(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """YOLOv2 loss over padded targets (N, M, 6): rows (label, x1, y1, x2, y2, difficult)."""
        p = self._split(out)  # (N, S, S, A, 5+C)
        n, s1, s2, a, _ = p.shape
        valid = targets[..., 0] >= 0
        b_idx = torch.nonzero(valid)[:, 0]
        t = targets[valid]
        cx = (t[:, 1] + t[:, 3]) / 2 / self.stride
        cy = (t[:, 2] + t[:, 4]) / 2 / self.stride
        w = (t[:, 3] - t[:, 1]).clamp(min=1) / self.stride
        h = (t[:, 4] - t[:, 2]).clamp(min=1) / self.stride
        gi = cx.long().clamp(0, s2 - 1)
        gj = cy.long().clamp(0, s1 - 1)
        inter = torch.min(w[:, None], self.anchors[None, :, 0]) * torch.min(
            h[:, None], self.anchors[None, :, 1])
        shape_iou = inter / (w[:, None] * h[:, None] + self.anchors.prod(1)[None] - inter)
        best = shape_iou.argmax(1)
        obj_target = torch.zeros(p.shape[:4], device=out.device)
        obj_target[b_idx, gj, gi, best] = 1.0
        pos = p[b_idx, gj, gi, best]  # (G, 5+C)
        box_loss = (F.mse_loss(torch.sigmoid(pos[:, 0]), cx - gi, reduction="sum")
                    + F.mse_loss(torch.sigmoid(pos[:, 1]), cy - gj, reduction="sum")
                    + F.mse_loss(pos[:, 2], torch.log(w / self.anchors[best, 0]), reduction="sum")
                    + F.mse_loss(pos[:, 3], torch.log(h / self.anchors[best, 1]), reduction="sum"))
        weight = torch.where(obj_target > 0, 1.0, 0.5)
        obj_loss = F.binary_cross_entropy_with_logits(p[..., 4], obj_target, weight=weight,
                                                      reduction="sum")
        cls_loss = F.cross_entropy(pos[:, 5:], t[:, 0].long(), reduction="sum")
        return (5.0 * box_loss + obj_loss + cls_loss) / n

    # ---- decoding (the harness runs this for every runtime) ---------------------------------

    def decode(self, out: np.ndarray, score_threshold: float = 0.005, iou_threshold: float = 0.45,
               max_detections: int = 100) -> list[Detections]:
        from torchvision.ops import batched_nms

        p = self._split(torch.from_numpy(np.ascontiguousarray(out)).float())
        n, s1, s2, a, _ = p.shape
        gy, gx = torch.meshgrid(torch.arange(s1), torch.arange(s2), indexing="ij")
        cx = (gx[None, :, :, None] + torch.sigmoid(p[..., 0])) * self.stride
        cy = (gy[None, :, :, None] + torch.sigmoid(p[..., 1])) * self.stride
        w = torch.exp(p[..., 2].clamp(max=8)) * self.anchors[:, 0] * self.stride
        h = torch.exp(p[..., 3].clamp(max=8)) * self.anchors[:, 1] * self.stride
        boxes = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        boxes = boxes.reshape(n, -1, 4)
        scores = (torch.sigmoid(p[..., 4:5]) * torch.softmax(p[..., 5:], -1)).reshape(
            n, -1, self.num_classes)
        dets = []
        for i in range(n):
            sc, lab = scores[i].max(1)  # the best class per box, as YOLOv2's evaluation
            keep = sc > score_threshold
            bx, sc, lab = boxes[i][keep], sc[keep], lab[keep]
            idx = batched_nms(bx, sc, lab, iou_threshold)[:max_detections]
            dets.append(Detections(bx[idx].numpy(), sc[idx].numpy(), lab[idx].numpy()))
        return dets


def _build(num_classes: int = 20, in_channels: int = 3) -> TinyYolo:
    return TinyYolo(num_classes, in_channels)


MODELS.register()(ModelSpec("yolov2-tiny", _build, (3, 320, 320), task="detect",
                            description="YOLOv2-tiny-style detector: conv-BN-leaky, stride 16, "
                                        "5 anchors; decode + NMS in the harness"))
