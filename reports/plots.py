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


def speedup_vs_compression(df: pd.DataFrame, path: Path) -> Path | None:
    """Speedup (batch 1 latency) against compression ratio, log x, with the ideal FLOP line."""
    d = df[(df.batch_size == 1) & df.speedup.notna() & df.compression_ratio.notna()]
    if d.empty:
        return None
    plt, sns = _setup()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sns.scatterplot(data=d, x="compression_ratio", y="speedup", hue="method", style="target",
                    s=90, ax=ax)
    ideal = d[["compression_ratio", "flops_ratio"]].dropna().sort_values("compression_ratio")
    if not ideal.empty:
        ax.plot(ideal.compression_ratio, ideal.flops_ratio, ":", color="grey",
                label="ideal: speedup = FLOP ratio")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("compression ratio (baseline params / non-zero params, log)")
    ax.set_ylabel("speedup at batch 1 (p50 latency, same run)")
    ax.set_title("Speedup vs compression")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def accuracy_vs_speedup(df: pd.DataFrame, path: Path) -> Path | None:
    """Top-1 loss (points, on the runtime) against speedup, with the Pareto front drawn."""
    d = df[(df.batch_size == 1) & df.speedup.notna() & df.acc_loss.notna()]
    if d.empty:
        return None
    plt, sns = _setup()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sns.scatterplot(data=d, x="speedup", y="acc_loss", hue="method", style="target", s=90,
                    ax=ax)
    front = pareto(d, "speedup", "acc_loss")
    ax.plot(front.speedup, front.acc_loss, "--", color="black", lw=1, label="Pareto front")
    for _, r in front.iterrows():
        ax.annotate(r["label"], (r["speedup"], r["acc_loss"]), fontsize=7,
                    xytext=(4, 4), textcoords="offset points")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel("speedup at batch 1 (same run)")
    ax.set_ylabel("top-1 loss vs baseline (points, on the runtime)")
    ax.set_title("Accuracy loss vs speedup")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
