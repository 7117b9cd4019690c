"""How sure an accuracy and an accuracy loss are: a top-1 read on N evaluation items is a
binomial draw, and a loss is the difference of two such draws on the *same* items.

On 500 items (the quick profile) a top-1 of 90% has a 95% interval about +-2.6 points wide;
a "1-point budget" decided by point estimates there is decided by which 500 images were
drawn. Each cell therefore keeps which evaluation items its runtime got right (`pack`), and
the store derives for every row:

- `top1_target_ci_low/high`: the Wilson score interval of its runtime top-1 (fractions, as
  `top1_target`).
- `accuracy_loss_ci_low/high`: a 95% interval of the points lost against the baseline the model
  came from, on the same target and items. The two models are scored on the same images, so
  the interval is the paired one (Newcombe 1998, "Improved confidence intervals for the
  difference between binomial proportions based on paired data", method 10: the two Wilson
  intervals combined with the correlation of the 2x2 table of right/wrong): only the items on
  which the two models disagree carry uncertainty, which makes it far narrower than treating
  the two accuracies as independent draws.

Only a per-item metric has this: top-1. A detector's mAP is not a mean over items, so its rows
carry no vector and no interval (the report says nothing rather than something wrong).
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975): two-sided 95%


def pack(correct: Any) -> str:
    """Which items were right, as text a store row and a Ray message carry as they are:
    `N:` then the bits (item 0 first) packed into bytes and base64-encoded (1,668 characters
    for 10,000 items)."""
    bits = np.asarray(correct, dtype=bool).ravel()
    return f"{bits.size}:" + base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def unpack(text: Any) -> np.ndarray | None:
    """The boolean vector `pack` wrote; None for anything else (a store file can come from
    anyone: a malformed value is no vector, never an exception in a report)."""
    if not isinstance(text, str) or ":" not in text:
        return None
    head, _, body = text.partition(":")
    try:
        n = int(head)
        raw = base64.b64decode(body.encode("ascii"), validate=True)
    except (ValueError, binascii.Error, UnicodeEncodeError):
        return None
    if n < 1 or len(raw) != (n + 7) // 8:
        return None
    return np.unpackbits(np.frombuffer(raw, dtype=np.uint8))[:n].astype(bool)


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion k/n: it stays inside [0, 1] and keeps its
    coverage near 100% or 0% accuracy, where the textbook p +- z*se does neither."""
    if n <= 0:
        raise ValueError("wilson: n must be > 0")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo), (1.0 if k == n else hi)  # exact ends, not 0.9999999999999999


def paired_difference(both: int, first_only: int, second_only: int, neither: int,
                      z: float = Z95) -> tuple[float, float, float]:
    """(p1 - p2, low, high) for two proportions measured on the same n items, from the 2x2
    table: items both got right, only the first, only the second, neither. Newcombe's
    method 10: each side's Wilson interval, combined with the table's phi correlation."""
    n = both + first_only + second_only + neither
    if n <= 0 or min(both, first_only, second_only, neither) < 0:
        raise ValueError("paired_difference: counts must be >= 0 and not all 0")
    k1, k2 = both + first_only, both + second_only
    p1, p2 = k1 / n, k2 / n
    l1, u1 = wilson(k1, n, z)
    l2, u2 = wilson(k2, n, z)
    margins = k1 * (n - k1) * k2 * (n - k2)
    phi = (both * neither - first_only * second_only) / math.sqrt(margins) if margins else 0.0
    theta = p1 - p2
    down = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    up = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    return (theta, max(-1.0, theta - math.sqrt(max(down, 0.0))),
            min(1.0, theta + math.sqrt(max(up, 0.0))))


def loss_ci(baseline: np.ndarray, model: np.ndarray, z: float = Z95
            ) -> tuple[float, float] | None:
    """The 95% interval of the points (percent) `model` loses against `baseline`, both scored
    item by item on the same items; None when the vectors are not of one length (not the
    same items)."""
    if baseline.shape != model.shape or baseline.size == 0:
        return None
    both = int(np.count_nonzero(baseline & model))
    first = int(np.count_nonzero(baseline & ~model))
    second = int(np.count_nonzero(~baseline & model))
    _, lo, hi = paired_difference(both, first, second, baseline.size - both - first - second, z)
    return 100 * lo, 100 * hi


def halves(text: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(selection, held-out): the even- and odd-numbered evaluation items of a packed vector;
    None without one. `harness tune` searches on the first half and reports the second, which
    its choices never saw, so the held-out accuracy of a chosen trial is not raised by the
    selection (the usual validation / test split, made from the evaluation items because a
    full profile trains on every training image)."""
    v = unpack(text)
    if v is None or v.size < 2:
        return None
    return v[0::2], v[1::2]


def row_intervals(own: Any, baseline: Any, is_baseline: bool) -> dict[str, float | None]:
    """The columns a store row gains from its packed vector and its baseline's: `eval_items`
    (how many items the runtime was scored on), `top1_target_ci_low/high` (fractions) and, for
    a compressed model, `accuracy_loss_ci_low/high` (points); None where a vector is missing
    or malformed."""
    out: dict[str, float | None] = {"eval_items": None, "top1_target_ci_low": None,
                                    "top1_target_ci_high": None, "accuracy_loss_ci_low": None,
                                    "accuracy_loss_ci_high": None}
    mine = unpack(own)
    if mine is None:
        return out
    out["eval_items"] = mine.size
    lo, hi = wilson(int(np.count_nonzero(mine)), mine.size)
    out["top1_target_ci_low"], out["top1_target_ci_high"] = round(lo, 5), round(hi, 5)
    ref = None if is_baseline else unpack(baseline)
    ci = None if ref is None else loss_ci(ref, mine)
    if ci is not None:
        out["accuracy_loss_ci_low"], out["accuracy_loss_ci_high"] = round(ci[0], 3), round(ci[1], 3)
    return out
