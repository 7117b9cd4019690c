"""The fronts of a `harness tune` search, read from the store's cells alone.

A trial's numbers are its ordinary cells (accuracy on the runtime, the speedup timed
interleaved with the baseline and its CI), so the terminal, the report and a later reader all
draw the same fronts from the same rows. The accuracy a front is drawn on is the search half of
the evaluation items (`search_accuracy`); each point also carries its top-1 on the held-out
half, which no choice of the search saw. A target's front is the set of trials no other trial
beats on both accuracy and speedup; measurements that are not `clean` are drawn but kept off
the front (as on the report's other plots and in `recommend`). Two targets *disagree* where a
configuration is on one target's front and not on the other's: the same network is not the
best trade-off on both runtimes, which is what a search per target is for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harness.accuracy_ci import halves, wilson


@dataclass(frozen=True)
class Point:
    """One trial measured on one target at the study's batch size."""

    study: str
    trial: int
    target: str
    label: str  # the configuration, e.g. "pipeline[l1-filter:ratio=0.45 -> int8-ptq]"
    accuracy: float  # what the search optimised: top-1 on the runtime's search half, in %
    speedup: float
    ci_low: float | None
    ci_high: float | None
    quality: str | None
    size_mb: float | None
    # the accuracy's Wilson 95% interval in % (harness.accuracy_ci), where the cell kept its
    # per-item results: a front drawn from point accuracies on a few hundred items is partly
    # the draw of those items, and the interval shows how much
    acc_ci_low: float | None = None
    acc_ci_high: float | None = None
    # top-1 on the held-out half (items the search never scored) with its Wilson interval,
    # in %: what a chosen trial delivers, not raised by the choosing; None without halves
    held_out: float | None = None
    held_out_ci_low: float | None = None
    held_out_ci_high: float | None = None

    @property
    def clean(self) -> bool:
        return self.quality == "clean"

    def accuracy_text(self) -> str:
        """`search 91.20% [87.1, 94.1], held out 90.40% [86.1, 93.5]`, or `91.20%` for a
        point without halves (mAP, a row from before schema 6)."""
        if self.held_out is None:
            return f"{self.accuracy:.2f}%{_ci(self.acc_ci_low, self.acc_ci_high)}"
        return (f"search {self.accuracy:.2f}%{_ci(self.acc_ci_low, self.acc_ci_high)}, "
                f"held out {self.held_out:.2f}%{_ci(self.held_out_ci_low, self.held_out_ci_high)}")


def _ci(lo: float | None, hi: float | None) -> str:
    return "" if lo is None or hi is None else f" [{lo:.1f}, {hi:.1f}]"


def trial_label(method: str, config: dict[str, Any]) -> str:
    """A configuration in words, the same for a trial and a grid cell of the same config."""
    if method == "pipeline":
        return "pipeline[" + " -> ".join(config.get("steps", [])) + "]"
    if not config:
        return method
    return f"{method}[" + ",".join(f"{k}={v}" for k, v in sorted(config.items())) + "]"


def search_accuracy(row: dict[str, Any]) -> float | None:
    """The accuracy (a fraction) a trial is searched on: its runtime's top-1 on the
    even-numbered evaluation items (`accuracy_ci.halves`), so the odd-numbered ones stay
    held out from every choice the search makes. A row without per-item results (mAP, or
    stored before schema 6) has no halves: its whole runtime accuracy (else torch's)."""
    split = _halves(row)
    if split is not None:
        return float(split[0].mean())
    acc = row.get("top1_target")
    if acc is None:
        acc = row.get("top1_retrained")
    return None if acc is None else float(acc)


def _halves(row: dict[str, Any]) -> Any:
    """The row's (search, held-out) per-item halves, where it has a runtime top-1 and them."""
    return halves(row.get("items_correct")) if row.get("top1_target") is not None else None


def points(store: Any, suite: str | None = None) -> dict[str, list[Point]]:
    """study -> its completed trials' points (one per target and distinct configuration: a
    trial that repeats an earlier one's configuration read the same stored cell, so the
    earlier trial stands for both), from the trials table and each cell's current row."""
    out: dict[str, list[Point]] = {}
    seen: set[tuple[str, str]] = set()
    for t in store.trials(suite):
        if t["state"] != "COMPLETE":
            continue
        keys = json.dumps(t["cell_keys"] or {}, sort_keys=True)
        if (t["study"], keys) in seen:
            continue
        seen.add((t["study"], keys))
        cfg = t["method_config"] or {}
        cfg = json.loads(cfg) if isinstance(cfg, str) else cfg
        label = trial_label(t["method"], cfg)
        for target, key in (t["cell_keys"] or {}).items():
            row = next((r for r in store.cell(key) if r.get("batch_size") == t["batch_size"]),
                       None)
            if row is None or row.get("status") != "ok" or row.get("speedup") is None:
                continue
            split = _halves(row)
            held = None
            if split is not None:
                search, held = split
                acc: float | None = float(search.mean())
                lo, hi = wilson(int(search.sum()), search.size)
            else:
                acc = search_accuracy(row)
                lo, hi = row.get("top1_target_ci_low"), row.get("top1_target_ci_high")
            if acc is None:
                continue
            size = row.get("size_bytes")
            out.setdefault(t["study"], []).append(Point(
                t["study"], int(t["trial"]), target, label, 100.0 * acc,
                float(row["speedup"]), row.get("speedup_ci_low"), row.get("speedup_ci_high"),
                row.get("quality"), None if size is None else size / 1e6,
                *_pct(lo, hi), *_held_out(held)))
    return out


def _pct(lo: float | None, hi: float | None) -> tuple[float | None, float | None]:
    return (None if lo is None else 100.0 * float(lo), None if hi is None else 100.0 * float(hi))


def _held_out(held: Any) -> tuple[float | None, float | None, float | None]:
    if held is None:
        return None, None, None
    lo, hi = wilson(int(held.sum()), held.size)
    return 100.0 * float(held.mean()), 100.0 * lo, 100.0 * hi


def front(pts: list[Point]) -> list[Point]:
    """The clean points no other clean point beats on both accuracy and speedup (ties on
    both keep the earlier trial), by speedup."""
    cands = sorted((p for p in pts if p.clean), key=lambda p: (-p.speedup, -p.accuracy, p.trial))
    keep: list[Point] = []
    best = -float("inf")
    for p in cands:
        if p.accuracy > best:
            keep.append(p)
            best = p.accuracy
    return sorted(keep, key=lambda p: p.speedup)


def by_target(pts: list[Point]) -> dict[str, list[Point]]:
    out: dict[str, list[Point]] = {}
    for p in pts:
        out.setdefault(p.target, []).append(p)
    return out


@dataclass(frozen=True)
class Disagreement:
    """A configuration on `on`'s front that `off` does not put on its own."""

    label: str
    trial: int
    on: str
    off: str
    on_point: Point
    off_point: Point | None  # the same trial on the other target (None: not measured there)
    # on `off`, a front trial at least as accurate is faster beyond both 95% CIs (its CI low
    # above this trial's CI high): the disagreement is not the noise of one measurement
    measurable: bool = False

    def describe(self) -> str:
        here = f"{self.on_point.speedup:.2f}x at {self.on_point.accuracy:.1f}%"
        there = (f"{self.off_point.speedup:.2f}x at {self.off_point.accuracy:.1f}%"
                 if self.off_point else "not measured")
        sure = ("beaten there beyond the CIs" if self.measurable
                else "within the CIs there: may be noise")
        return (f"trial {self.trial} {self.label}: on the {self.on} front ({here}), "
                f"not on the {self.off} front ({there}; {sure})")


def disagreements(pts: list[Point]) -> list[Disagreement]:
    """Every (configuration, target pair) where one target's front has it and the other's
    does not; [] when the fronts agree (or there is one target). A configuration whose point
    on the other target is noisy is no disagreement: it is left off that front unjudged."""
    groups = by_target(pts)
    fronts = {t: {p.trial for p in front(ps)} for t, ps in groups.items()}
    out = []
    for on, ps in groups.items():
        for off in groups:
            if off == on:
                continue
            there = {p.trial: p for p in groups[off]}
            for p in front(ps):
                q = there.get(p.trial)
                if q is not None and not q.clean:  # left off that front as noisy, not judged
                    continue
                if p.trial not in fronts[off]:
                    out.append(Disagreement(p.label, p.trial, on, off, p, q,
                                            q is not None and _beaten(q, front(groups[off]))))
    return sorted(out, key=lambda d: (d.on, d.trial))


def _beaten(q: Point, fr: list[Point]) -> bool:
    """Is `q` beaten beyond the CIs by a front point at least as accurate?"""
    if q.ci_high is None:
        return False
    return any(f.accuracy >= q.accuracy and f.ci_low is not None and f.ci_low > q.ci_high
               for f in fr)
