"""SSD and Faster R-CNN from torchvision, split into the network part and the harness part.

torchvision's detectors take image lists and return boxes after NMS. Here the *network part*
(what is exported, run and timed on each runtime) maps a fixed-size image batch to one tensor of
raw per-box outputs, and `decode` (box decoding, score threshold, per-class NMS: torchvision's
own `postprocess_detections`) runs in the harness, the same for every runtime.

- `ssdlite-mobilenet-v3` (torchvision `ssdlite320_mobilenet_v3_large`): the network part is
  backbone + heads; output (N, anchors, 4 + 1 + classes): box regression, then class logits
  (background first). Anchors depend only on the image size, so they are made once, at build.
- `fasterrcnn-mobilenet-v3-fpn` (torchvision `fasterrcnn_mobilenet_v3_large_320_fpn`): a two-stage
  detector's second stage runs on the first stage's proposals, so proposal selection (per-level
  top-k, NMS) stays inside the network part; it is written with fixed shapes (a fixed number of
  proposals per image, suppressed ones flagged, not dropped) so the graph exports with a dynamic
  batch. Output (N, proposals, 4 + 1 + (1 + classes) * 5): proposal box, its objectness (-1 where
  torchvision would have dropped it), class logits, per-class box regression. The final box
  decoding and per-class NMS run in the harness.

Both are built with `weights=None` (nothing is downloaded); `checkpoint` loads a state dict the
user has (e.g. torchvision's COCO weights saved locally): tensors whose name and shape match are
loaded (an RGB stem's kernels summed for 1-channel data), the rest (a head for another class
count) keep their fresh initialisation. Images come
normalised by the dataset; torchvision's resize/normalise transform is not used. A 1-channel
dataset gets a 1-channel stem conv. Anchor sizes scale with the image size (torchvision's are
for 320 px).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
import numpy as np
import torch
from torch import nn

from harness.api import ModelSpec
from harness.detection_metrics import Detections
from harness.registry import MODELS


def _adapt_stem(module: nn.Module, in_channels: int) -> None:
    """Give the first conv `in_channels` inputs (a fresh conv of the same shape otherwise)."""
    for parent in module.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Conv2d):
                if child.in_channels != in_channels:
                    setattr(parent, name, nn.Conv2d(
                        in_channels, child.out_channels, child.kernel_size, child.stride,
                        child.padding, bias=child.bias is not None))
                return


def _load_checkpoint(net: nn.Module, checkpoint: str | Path | None) -> None:
    if not checkpoint:
        return
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    own = net.state_dict()
    fit = {}
    for k, v in state.items():
        if k not in own:
            continue
        if own[k].shape == v.shape:
            fit[k] = v
        elif v.dim() == 4 and own[k].shape[1] == 1 and own[k].shape[0] == v.shape[0]:
            fit[k] = v.sum(1, keepdim=True)  # an RGB stem on grey images: sum its kernels
    if not fit:
        raise ValueError(f"checkpoint {checkpoint}: no tensor matches this model's names/shapes")
    net.load_state_dict(fit, strict=False)


@torch.no_grad()
def _features(backbone: nn.Module, in_channels: int,
              image_size: tuple[int, ...]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """A zero image and the backbone's feature maps for it, in eval mode (BN statistics
    untouched): anchors and pooling scales depend only on these maps' sizes."""
    was = backbone.training
    backbone.eval()
    x = torch.zeros(1, in_channels, *image_size)
    out = backbone(x)
    backbone.train(was)
    return x, out


def _targets(targets: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Padded (N, M, 6) rows (label, x1, y1, x2, y2, difficult) -> torchvision's target dicts
    (labels shifted by one: torchvision's class 0 is the background)."""
    out = []
    for t in targets:
        t = t[t[:, 0] >= 0]
        out.append({"boxes": t[:, 1:5].float(), "labels": t[:, 0].long() + 1})
    return out


def _inverted_residual_expansions(backbone: nn.Module, prefix: str) -> list[str]:
    """The 1x1 expansion conv of every MobileNetV3 inverted-residual block: pruning its outputs
    shrinks the block's inside (depthwise conv, squeeze-excite, projection inputs) and leaves the
    block's outputs, which residuals, the FPN and the heads depend on, untouched."""
    from torchvision.models.mobilenetv3 import InvertedResidual

    names = []
    for name, mod in backbone.named_modules():
        # blocks with expansion: 1x1 expand, depthwise, (squeeze-excite), 1x1 project
        if isinstance(mod, InvertedResidual) and len(mod.block) >= 3:
            names.append(f"{prefix}.{name}.block.0.0")
    return names


class SSDLite(nn.Module):
    """torchvision SSDlite (MobileNetV3-Large) with the network part as `forward`."""

    def __init__(self, num_classes: int = 20, in_channels: int = 3,
                 image_size: tuple[int, int] = (320, 320),
                 checkpoint: str | None = None) -> None:
        super().__init__()
        from torchvision.models.detection import ssdlite320_mobilenet_v3_large

        self.num_classes = num_classes
        self.image_size = tuple(image_size)
        self.net = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                 num_classes=num_classes + 1,
                                                 detections_per_img=100, score_thresh=0.001)
        _adapt_stem(self.net.backbone, in_channels)
        _load_checkpoint(self.net, checkpoint)
        self.register_buffer("anchors", self._make_anchors(in_channels), persistent=False)

    def _make_anchors(self, in_channels: int) -> torch.Tensor:
        from torchvision.models.detection.image_list import ImageList

        x, out = _features(self.net.backbone, in_channels, self.image_size)
        return self.net.anchor_generator(ImageList(x, [self.image_size]), list(out.values()))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net.head(list(self.net.backbone(x).values()))
        return torch.cat([out["bbox_regression"], out["cls_logits"]], -1)

    def prunable_layers(self) -> list[str]:
        """Inside each inverted-residual block, and the 1x1 reduction of each extra block."""
        extras = [f"net.backbone.extra.{i}.0.0" for i in range(len(self.net.backbone.extra))]
        return _inverted_residual_expansions(self.net.backbone, "net.backbone") + extras

    def detection_loss(self, x: torch.Tensor, targets: torch.Tensor,
                       forward: Any = None) -> torch.Tensor:
        """torchvision's SSD loss (smooth-L1 + hard-negative-mined cross-entropy); `forward`
        stands in for `self` (e.g. a QAT fake-quant graph)."""
        from torchvision.ops import box_iou

        out = (self if forward is None else forward)(x)
        head = {"bbox_regression": out[..., :4], "cls_logits": out[..., 4:]}
        tgts = _targets(targets)
        matched = []
        for t in tgts:
            if t["boxes"].numel() == 0:
                matched.append(torch.full((len(self.anchors),), -1, dtype=torch.int64,
                                          device=x.device))
            else:
                matched.append(self.net.proposal_matcher(box_iou(t["boxes"], self.anchors)))
        losses = self.net.compute_loss(tgts, head, [self.anchors] * len(tgts), matched)
        return losses["bbox_regression"] + losses["classification"]

    @torch.no_grad()
    def decode(self, out: np.ndarray) -> list[Detections]:
        o = torch.from_numpy(np.ascontiguousarray(out)).float()
        head = {"bbox_regression": o[..., :4], "cls_logits": o[..., 4:]}
        dets = self.net.postprocess_detections(head, [self.anchors.cpu()] * len(o),
                                               [self.image_size] * len(o))
        return [Detections(d["boxes"].numpy(), d["scores"].numpy(), d["labels"].numpy() - 1)
                for d in dets]


class FasterRCNN(nn.Module):
    """torchvision Faster R-CNN (MobileNetV3-Large FPN, the 320 px variant); `forward` is the
    whole network with fixed-shape proposal selection (see the module docstring).
    `rois_per_image`: proposals sampled per image to train the second stage (torchvision: 512;
    its 12544x1024 box-head layer is the bulk of a CPU training step); `proposals`: proposals
    kept per image at test time (torchvision's 320 px model: 150)."""

    def __init__(self, num_classes: int = 20, in_channels: int = 3,
                 image_size: tuple[int, int] = (320, 320), checkpoint: str | None = None,
                 rois_per_image: int = 512, proposals: int = 150) -> None:
        super().__init__()
        from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn
        from torchvision.models.detection.anchor_utils import AnchorGenerator

        self.num_classes = num_classes
        self.image_size = tuple(image_size)
        net = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None,
                                                    num_classes=num_classes + 1,
                                                    box_score_thresh=0.001,
                                                    box_detections_per_img=100,
                                                    box_batch_size_per_image=rois_per_image,
                                                    rpn_post_nms_top_n_test=proposals)
        _adapt_stem(net.backbone.body, in_channels)
        _load_checkpoint(net, checkpoint)
        scale = min(self.image_size) / 320
        gen = net.rpn.anchor_generator
        net.rpn.anchor_generator = AnchorGenerator(
            tuple(tuple(s * scale for s in sizes) for sizes in gen.sizes), gen.aspect_ratios)
        self.net = net
        anchors, per_level = self._make_anchors(in_channels)
        self.register_buffer("anchors", anchors, persistent=False)
        self.per_level = per_level
        self.post_nms = min(net.rpn._post_nms_top_n["testing"],
                            sum(min(net.rpn._pre_nms_top_n["testing"], n) for n in per_level))

    def _make_anchors(self, in_channels: int) -> tuple[torch.Tensor, list[int]]:
        """RPN anchors, anchors per level and the RoI pooling scale: all fixed by the image
        size."""
        from torchvision.models.detection.image_list import ImageList
        from torchvision.ops.poolers import _setup_scales

        x, out = _features(self.net.backbone, in_channels, self.image_size)
        feats = list(out.values())
        anchors = self.net.rpn.anchor_generator(ImageList(x, [self.image_size]), feats)[0]
        a = self.net.rpn.head.cls_logits.out_channels
        pool = self.net.roi_heads.box_roi_pool
        maps = [out[k] for k in pool.featmap_names if k in out]
        scales, _ = _setup_scales(maps, [self.image_size], pool.canonical_scale,
                                  pool.canonical_level)
        if len(set(scales)) != 1:  # MobileNetV3's FPN: both pooled maps at stride 32
            raise ValueError(f"RoI pooling over maps at several scales {scales} is not "
                             "supported; this model pools from one")
        self.scale = scales[0]
        return anchors, [a * f.shape[-2] * f.shape[-1] for f in feats]

    def _proposals(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """torchvision's RPN at test time (per-level top-k, clip, drop small or low-scoring
        boxes, NMS per level, keep the best) with fixed shapes: (N, K, 4) boxes and (N, K)
        objectness, -1 where torchvision would have dropped the proposal."""
        from torchvision.models.detection.rpn import concat_box_prediction_layers
        from torchvision.ops import boxes as box_ops  # (also registers torch.ops.torchvision)

        rpn = self.net.rpn
        obj, deltas = rpn.head(feats)
        obj, deltas = concat_box_prediction_layers(obj, deltas)
        n = feats[0].shape[0]
        boxes = rpn.box_coder.decode_single(deltas.detach(), self.anchors.repeat(n, 1))
        boxes = boxes.view(n, -1, 4)
        obj = obj.detach().view(n, -1)
        pre = rpn._pre_nms_top_n["testing"]
        picked, start = [], 0
        for size in self.per_level:
            _, idx = obj[:, start:start + size].topk(min(pre, size), dim=1)
            picked.append(idx + start)
            start += size
        idx = torch.cat(picked, 1)  # (N, P)
        level = torch.cat([torch.full((p.shape[1],), i, dtype=torch.int64, device=obj.device)
                           for i, p in enumerate(picked)])
        scores = torch.sigmoid(torch.gather(obj, 1, idx))
        boxes = torch.gather(boxes, 1, idx[..., None].expand(-1, -1, 4))
        boxes = box_ops.clip_boxes_to_image(boxes, self.image_size)
        wh = boxes[..., 2:] - boxes[..., :2]
        ok = (wh.min(-1).values >= rpn.min_size) & (scores >= rpn.score_thresh)
        p = idx.shape[1]
        group = (torch.arange(n, device=obj.device)[:, None] * len(self.per_level)
                 + level[None]).reshape(-1)
        flat = boxes.reshape(-1, 4)
        shift = group[:, None].to(flat) * (flat.max() + 1)
        flat_scores = scores.reshape(-1)
        masked = torch.where(ok.reshape(-1), flat_scores, torch.full_like(flat_scores, -1.0))
        keep = torch.ops.torchvision.nms(flat + shift, masked, rpn.nms_thresh)
        kept = torch.zeros_like(masked).index_fill(0, keep, 1.0).view(n, p)
        final = torch.where((kept > 0) & ok, scores, torch.full_like(scores, -1.0))
        best, order = final.topk(self.post_nms, dim=1)
        return torch.gather(boxes, 1, order[..., None].expand(-1, -1, 4)), best

    def _pool(self, feats: dict[str, torch.Tensor], boxes: torch.Tensor) -> torch.Tensor:
        """torchvision's MultiScaleRoIAlign on (N, K, 4) boxes. Its maps share one resolution
        (checked at build), so every box pools from the first, at the scale fixed at build;
        the op is called directly (roi_align's Python shape checks do not FX-trace)."""
        pool = self.net.roi_heads.box_roi_pool
        first = next(feats[k] for k in pool.featmap_names if k in feats)
        n, k = boxes.shape[0], self.post_nms
        batch = torch.arange(n, device=boxes.device).repeat_interleave(k)[:, None].to(boxes)
        rois = torch.cat([batch, boxes.reshape(-1, 4)], 1)
        oh, ow = pool.output_size
        return torch.ops.torchvision.roi_align(first, rois, self.scale, oh, ow,
                                               pool.sampling_ratio, False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.net.backbone(x)
        boxes, objectness = self._proposals(list(feats.values()))
        heads = self.net.roi_heads
        h = heads.box_head(self._pool(feats, boxes))  # FastRCNNPredictor, minus a dim() check
        logits, deltas = heads.box_predictor.cls_score(h), heads.box_predictor.bbox_pred(h)
        n, k = x.shape[0], self.post_nms
        return torch.cat([boxes, objectness[..., None], logits.reshape(n, k, -1),
                          deltas.reshape(n, k, -1)], -1)

    def prunable_layers(self) -> list[str]:
        """Inside each inverted-residual block, and the box head's two hidden layers (fc6 holds
        two thirds of the parameters); FPN, RPN and predictor outputs stay as they are."""
        return (_inverted_residual_expansions(self.net.backbone.body, "net.backbone.body")
                + ["net.roi_heads.box_head.fc6", "net.roi_heads.box_head.fc7"])

    def detection_loss(self, x: torch.Tensor, targets: torch.Tensor,
                       forward: Any = None) -> torch.Tensor:
        """torchvision's training losses: RPN objectness + box, then the second stage's
        classification + box on sampled proposals (ground-truth boxes included). Training
        takes torchvision's path, not `forward`, so no stand-in forward can be used."""
        from torchvision.models.detection.image_list import ImageList

        if forward is not None:
            raise ValueError("Faster R-CNN trains through torchvision's own path; it cannot "
                             "train a stand-in forward (such as a QAT graph)")
        images = ImageList(x, [self.image_size] * len(x))
        tgts = _targets(targets)
        feats = self.net.backbone(x)
        proposals, rpn_losses = self.net.rpn(images, feats, tgts)
        _, det_losses = self.net.roi_heads(feats, proposals, images.image_sizes, tgts)
        return sum(rpn_losses.values()) + sum(det_losses.values())

    @torch.no_grad()
    def decode(self, out: np.ndarray) -> list[Detections]:
        o = torch.from_numpy(np.ascontiguousarray(out)).float()
        c = self.num_classes + 1
        dets = []
        for row in o:
            row = row[row[:, 4] >= 0]  # proposals torchvision would have dropped
            logits, deltas = row[:, 5:5 + c], row[:, 5 + c:]
            boxes, scores, labels = self.net.roi_heads.postprocess_detections(
                logits, deltas, [row[:, :4]], [self.image_size])
            dets.append(Detections(boxes[0].numpy(), scores[0].numpy(), labels[0].numpy() - 1))
        return dets


def _ssd(num_classes: int = 20, in_channels: int = 3, image_size: tuple[int, int] = (320, 320),
         checkpoint: str | None = None) -> SSDLite:
    return SSDLite(num_classes, in_channels, image_size, checkpoint)


def _frcnn(num_classes: int = 20, in_channels: int = 3,
           image_size: tuple[int, int] = (320, 320), checkpoint: str | None = None,
           rois_per_image: int = 512, proposals: int = 150) -> FasterRCNN:
    return FasterRCNN(num_classes, in_channels, image_size, checkpoint, rois_per_image,
                      proposals)


MODELS.register()(ModelSpec(
    "ssdlite-mobilenet-v3", _ssd, (3, 320, 320), task="detect",
    description="torchvision ssdlite320_mobilenet_v3_large (weights=None); network = backbone + "
                "heads, anchor decoding + NMS in the harness"))
MODELS.register()(ModelSpec(
    "fasterrcnn-mobilenet-v3-fpn", _frcnn, (3, 320, 320), task="detect",
    description="torchvision fasterrcnn_mobilenet_v3_large_320_fpn (weights=None); network = "
                "backbone + RPN (fixed-shape proposal NMS) + RoI heads, final decoding + NMS "
                "in the harness"))
