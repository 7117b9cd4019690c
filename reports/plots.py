"""PNG plots (seaborn, Agg backend): colour = method, marker = target."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _setup():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def pareto(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points not dominated: no other point has higher `x` and lower-or-equal `y` (loss)."""
    pts = points.sort_values([x, y], ascending=[False, True])
    best = float("inf")
    keep = []
    for idx, row in pts.iterrows():
        if row[y] < best:
            keep.append(idx)
            best = row[y]
    return points.loc[keep].sort_values(x)


def _panels(d: pd.DataFrame, col: str, plt):  # type: ignore[no-untyped-def]
    keys = sorted(d[col].unique())
    fig, axes = plt.subplots(1, len(keys), figsize=(6.2 * len(keys), 4.8), squeeze=False,
                             sharey=True)
    return fig, list(zip(keys, axes[0], strict=True))


def speedup_vs_compression(df: pd.DataFrame, path: Path) -> Path | None:
    """Speedup (batch-1 p50) against compression ratio (log x), one panel per target; grey
    rings mark the ideal speedup = FLOP ratio of each point."""
    d = df[(df.batch_size == 1) & df.speedup.notna() & df.compression_ratio.notna()]
    if d.empty:
        return None
    plt, sns = _setup()
    fig, panels = _panels(d, "target", plt)
    hue_order = sorted(d.method.unique())
    for i, (target, ax) in enumerate(panels):
        part = d[d.target == target]
        ax.scatter(part.compression_ratio, part.flops_ratio, s=120, facecolors="none",
                   edgecolors="grey", label="ideal: FLOP ratio")
        sns.scatterplot(data=part, x="compression_ratio", y="speedup", hue="method",
                        hue_order=hue_order, style="model", s=80, ax=ax, legend=i == 0)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(target)
        ax.set_xlabel("compression ratio (baseline params / non-zero params)")
        ax.set_ylabel("speedup at batch 1 (p50, timed in the same run)")
    panels[0][1].legend(fontsize=8, loc="upper left")
    fig.suptitle("Speedup vs compression")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_vs_speedup(df: pd.DataFrame, path: Path) -> Path | None:
    """Top-1 loss on the runtime against speedup, one panel per model, with each target's
    Pareto front drawn and its points labelled."""
    d = df[(df.batch_size == 1) & df.speedup.notna() & df.acc_loss.notna()]
    if d.empty:
        return None
    plt, sns = _setup()
    fig, panels = _panels(d, "model", plt)
    hue_order = sorted(d.method.unique())
    for i, (model, ax) in enumerate(panels):
        part = d[d.model == model]
        sns.scatterplot(data=part, x="speedup", y="acc_loss", hue="method", hue_order=hue_order,
                        style="target", s=80, ax=ax, legend=i == 0)
        for j, (target, sub) in enumerate(part.groupby("target")):
            front = pareto(sub, "speedup", "acc_loss")
            ax.plot(front.speedup, front.acc_loss, ("--", ":", "-.")[j % 3], color="black",
                    lw=1, label=f"Pareto front, {target}" if i == 0 else None)
            for _, r in front.iterrows():
                ax.annotate(r["label"], (r["speedup"], r["acc_loss"]), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_title(model)
        ax.set_xlabel("speedup at batch 1 (timed in the same run)")
        ax.set_ylabel("top-1 loss vs baseline (points, on the runtime)")
    panels[0][1].legend(fontsize=7, loc="upper left")
    fig.suptitle("Accuracy loss vs speedup")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
