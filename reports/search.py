"""The report's "Search" section: each `harness tune` study's trials and fronts per target.

One panel per target, trials as points (accuracy on the runtime against the speedup at the
study's batch size, with its 95% CI; noisy measurements hollow and off the front), every trial
numbered, the front as a step line, and a red ring round a trial that is on this target's front
but not on another target's: where the fronts disagree. The numbers come
from `harness.fronts`, which `harness tune` prints from too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import fronts
from harness.slug import slug


def plot(pts: list[fronts.Point], path: Path, title: str) -> Path | None:
    from harness.reports.plots import _setup

    groups = fronts.by_target(pts)
    if not groups:
        return None
    plt, _ = _setup()
    n = len(groups)
    fig, axes = plt.subplots(1, n, figsize=(5.8 * n, 4.6), squeeze=False)
    off = {(d.on, d.trial) for d in fronts.disagreements(pts)}
    for ax, (target, ps) in zip(axes[0], sorted(groups.items()), strict=True):
        fr = fronts.front(ps)
        on = {p.trial for p in fr}
        for p in ps:
            lo = p.speedup - p.ci_low if p.ci_low is not None else 0.0
            hi = p.ci_high - p.speedup if p.ci_high is not None else 0.0
            ax.errorbar([p.speedup], [p.accuracy], xerr=[[max(lo, 0.0)], [max(hi, 0.0)]],
                        fmt="none", ecolor="0.6", lw=0.8, zorder=1)
            ax.scatter([p.speedup], [p.accuracy], s=46, zorder=2,
                       facecolors="tab:blue" if p.clean else "none",
                       edgecolors="tab:blue" if p.trial not in on else "black")
            if (target, p.trial) in off:
                ax.scatter([p.speedup], [p.accuracy], s=190, facecolors="none",
                           edgecolors="tab:red", linewidths=1.6, zorder=3)
        if fr:
            ax.step([p.speedup for p in fr], [p.accuracy for p in fr], where="post",
                    color="black", lw=1, ls="--", label="front (clean trials)")
        for p in ps:  # every trial numbered (the front's in black), as `harness tune` prints
            ax.annotate(str(p.trial), (p.speedup, p.accuracy), textcoords="offset points",
                        xytext=(5, 5), fontsize=8, color="black" if p.trial in on else "0.45")
        ax.axvline(1.0, color="0.3", lw=0.8)
        ax.set_title(target)
        ax.set_xlabel("speedup vs baseline, 95% CI (interleaved)")
        ax.set_ylabel("accuracy on the runtime (%)")
        if fr:
            ax.legend(loc="lower left", fontsize=8)
    fig.suptitle(title + ("   (red ring: on this front, not on another target's)"
                          if off else ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def section(store: Any, suite: str, out_dir: Path) -> list[dict[str, Any]]:
    """One entry per study of the suite: its plot file, fronts, disagreements, counts."""
    trials = store.trials(suite)
    studies = []
    for study, pts in sorted(fronts.points(store, suite).items()):
        mine = [t for t in trials if t["study"] == study]
        name = f"search-{slug(study)}.png"
        plot(pts, out_dir / name, study)
        studies.append({
            "study": study,
            "file": name,
            "trials": len(mine),
            "complete": sum(t["state"] == "COMPLETE" for t in mine),
            "failed": sum(t["state"] == "FAIL" for t in mine),
            "distinct": len({p.label for p in pts}),
            "fronts": {t: [_view(p) for p in fronts.front(ps)]
                       for t, ps in sorted(fronts.by_target(pts).items())},
            "disagree": [d.describe() for d in fronts.disagreements(pts)],
            "targets": sorted({p.target for p in pts}),
        })
    return studies


def _view(p: fronts.Point) -> dict[str, Any]:
    ci = (f" [{p.ci_low:.2f}, {p.ci_high:.2f}]" if p.ci_low is not None
          and p.ci_high is not None else "")
    return {"trial": p.trial, "label": p.label, "accuracy": p.accuracy_text(),
            "speedup": f"{p.speedup:.2f}{ci}x"}
