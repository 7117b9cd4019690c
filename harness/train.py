"""Training, fine-tuning and top-1 in torch: the one loop every method and baseline shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from harness.recipe import Recipe  # also imported from here by the loop's callers


LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(model(x), y)


def tensors(data: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(X, Y) of a TensorDataset or a Subset of one, without per-item Python work."""
    from torch.utils.data import Subset, TensorDataset

    if isinstance(data, TensorDataset):
        return data.tensors[0], data.tensors[1]
    if isinstance(data, Subset):
        x, y = tensors(data.dataset)
        idx = torch.as_tensor(list(data.indices))
        return x[idx], y[idx]
    xs, ys = zip(*(data[i] for i in range(len(data))), strict=True)
    return torch.stack(list(xs)), torch.as_tensor(ys)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, h, w = x.shape
    padded = nn.functional.pad(x, (4, 4, 4, 4))
    dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()
    out = padded[:, :, dy : dy + h, dx : dx + w]
    flip = torch.rand(n, generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor] | None) -> None:
    """Zero the pruned weights again (masks are held during fine-tuning)."""
    if not masks:
        return
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, mask in masks.items():
            params[name].mul_(mask)


def optimizer(params: list[Any], recipe: Recipe) -> torch.optim.Optimizer:
    """The recipe's optimiser over `params`: what `fit` trains with, and what `harness plan`
    times a model's training step with (Adam's update touches every weight three times more
    than plain SGD's; on YOLOv2-tiny's 1.0M weights the difference is lost in the noise)."""
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)


def fit(
    model: nn.Module,
    data: Any,
    recipe: Recipe,
    *,
    masks: dict[str, torch.Tensor] | None = None,
    constraint: Callable[[nn.Module], None] | None = None,
    loss_fn: LossFn = cross_entropy,
    device: str = "cpu",
    seed: int = 0,
    progress: Callable[[float], None] | None = None,
    extra_params: list[nn.Parameter] | None = None,
) -> nn.Module:
    """Train `model` in place with `recipe`; `progress(fraction)` is called after each step.

    `masks` zero pruned weights again after every step; `constraint(model)`, if given, runs
    after every step too (e.g. weight sharing pulls each weight back to its cluster's centroid).
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    x_all, y_all = tensors(data)
    if recipe.train_samples:
        x_all, y_all = x_all[: recipe.train_samples], y_all[: recipe.train_samples]
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params or [])
    opt = optimizer(params, recipe)
    n = len(x_all)
    # batch bounds of an epoch; a last batch of one item joins the one before it: BatchNorm
    # cannot train on a batch of one (33 images at batch 16 failed)
    starts = list(range(0, n, recipe.batch_size)) + [n]
    if len(starts) > 2 and n - starts[-2] == 1:
        del starts[-2]
    steps_per_epoch = max(1, len(starts) - 1)
    # any positive epochs train at least one step; `epochs = 0` trains none (it trained one)
    total = max(1, round(recipe.epochs * steps_per_epoch)) if recipe.epochs > 0 else 0
    bounds = sorted(round(m * total) for m in recipe.milestones)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, bounds, 0.1) if bounds else None
    model.to(device).train()
    masks = {k: v.to(device) for k, v in masks.items()} if masks else None
    apply_masks(model, masks)
    step = 0
    while step < total:
        order = torch.randperm(n, generator=gen)
        for i, end in zip(starts[:-1], starts[1:], strict=True):
            if step >= total:
                break
            idx = order[i:end]
            x, y = x_all[idx], y_all[idx]
            if recipe.augment:
                x = _augment(x, gen)
            x, y = x.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model, x, y)
            loss.backward()
            opt.step()
            apply_masks(model, masks)
            if constraint is not None:
                constraint(model)
            if sched:
                sched.step()
            step += 1
            if progress:
                progress(step / total)
    return model.eval()


@torch.inference_mode()
def predict_logits(model: nn.Module, data: Any, limit: int | None, batch_size: int = 256,
                   device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of the first `limit` test items."""
    x_all, y_all = tensors(data)
    if limit:
        x_all, y_all = x_all[:limit], y_all[:limit]
    model.eval().to(device)
    outs = [model(x_all[i : i + batch_size].to(device)).float().cpu()
            for i in range(0, len(x_all), batch_size)]
    return torch.cat(outs), y_all


def top1(logits: torch.Tensor | Any, labels: torch.Tensor | Any) -> float:
    """Fraction of rows whose argmax equals the label."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    return float((logits.argmax(1) == labels).float().mean())


def evaluate(model: nn.Module, data: Any, limit: int | None = None, device: str = "cpu") -> float:
    return top1(*predict_logits(model, data, limit, device=device))


def eval_arrays(data: Any, limit: int | None) -> tuple[Any, Any]:
    """The evaluation inputs and labels as numpy arrays, for runtime accuracy."""
    x, y = tensors(data)
    if limit:
        x, y = x[:limit], y[:limit]
    return x.numpy(), y.numpy()
