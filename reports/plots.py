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


def _finish(fig, path: Path, legend_ax) -> Path:  # type: ignore[no-untyped-def]
    """One legend for the figure, outside the panels, so it never hides a point."""
    handles, labels = legend_ax.get_legend_handles_labels()
    if legend_ax.get_legend() is not None:
        legend_ax.get_legend().remove()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
                   frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _uncertainty(ax, part: pd.DataFrame, hue_order: list[str], x: str, y: str,  # type: ignore[no-untyped-def]
                 horizontal: bool) -> None:
    """95% CI error bars on the speedup axis, and noisy points redrawn hollow (white face,
    method-coloured edge) so they never read like clean ones."""
    import seaborn as sns

    has_ci = part.speedup_ci_low.notna() if "speedup_ci_low" in part else None
    if has_ci is not None and has_ci.any():
        ci = part[has_ci]
        err = [ci.speedup - ci.speedup_ci_low, ci.speedup_ci_high - ci.speedup]
        ax.errorbar(ci[x], ci[y], xerr=err if horizontal else None,
                    yerr=None if horizontal else err, fmt="none", ecolor="grey", elinewidth=1,
                    capsize=2, zorder=1)
    if "quality" in part:
        noisy = part[part.quality == "noisy"]
        colours = dict(zip(hue_order, sns.color_palette(n_colors=len(hue_order)), strict=True))
        if not noisy.empty:
            ax.scatter(noisy[x], noisy[y], s=80, facecolors="white", zorder=3,
                       edgecolors=[colours.get(m, "black") for m in noisy.method],
                       linewidths=1.5, label="noisy (hollow): see footnote")


def _aa_band(ax, part: pd.DataFrame, horizontal: bool) -> None:  # type: ignore[no-untyped-def]
    """The A/A noise floor: the span of the baselines' own CIs (speedup against themselves)."""
    base = part[(part.method == "baseline") & part.speedup_ci_low.notna()] \
        if "speedup_ci_low" in part else part.iloc[:0]
    if base.empty:
        return
    lo, hi = float(base.speedup_ci_low.min()), float(base.speedup_ci_high.max())
    span = ax.axvspan if horizontal else ax.axhspan
    span(lo, hi, color="grey", alpha=0.18, zorder=0, label="A/A noise floor (baseline CI)")


def _short(label: str, width: int = 30) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


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
        _aa_band(ax, part, horizontal=False)
        sns.scatterplot(data=part, x="compression_ratio", y="speedup", hue="method",
                        hue_order=hue_order, style="model", s=80, ax=ax, legend=i == 0)
        _uncertainty(ax, part, hue_order, "compression_ratio", "speedup", horizontal=False)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(target)
        ax.set_xlabel("compression ratio (baseline params / non-zero params)")
        ax.set_ylabel("speedup at batch 1, 95% CI (paired, same run)")
    fig.suptitle("Speedup vs compression")
    return _finish(fig, path, panels[0][1])


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
        _aa_band(ax, part, horizontal=True)
        sns.scatterplot(data=part, x="speedup", y="acc_loss", hue="method", hue_order=hue_order,
                        style="target", s=80, ax=ax, legend=i == 0)
        _uncertainty(ax, part, hue_order, "speedup", "acc_loss", horizontal=True)
        for j, (target, sub) in enumerate(part.groupby("target")):
            # a noisy speedup never makes the front: it claims nothing
            clean = sub[sub.quality != "noisy"] if "quality" in sub else sub
            if clean.empty:
                continue
            front = pareto(clean, "speedup", "acc_loss")
            ax.plot(front.speedup, front.acc_loss, ("--", ":", "-.")[j % 3], color="black",
                    lw=1, label=f"Pareto front, {target}" if i == 0 else None)
            for _, r in front.iterrows():
                ax.annotate(_short(r["label"]), (r["speedup"], r["acc_loss"]), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_title(model)
        ax.set_xlabel("speedup at batch 1, 95% CI (paired, same run)")
        metric = "mAP@0.5" if "map50" in set(part.get("metric", [])) else "top-1"
        ax.set_ylabel(f"{metric} loss vs baseline (points, on the runtime)")
    fig.suptitle("Accuracy loss vs speedup")
    return _finish(fig, path, panels[0][1])


def latency_throughput_bars(df: pd.DataFrame, path: Path) -> Path | None:
    """Per target: p50 and p95 latency at batch 1, and throughput at the largest batch, per
    method (one row of panels per target)."""
    d = df[df.latency_p50_ms.notna()]
    if d.empty:
        return None
    plt, sns = _setup()
    targets = sorted(d.target.unique())
    fig, axes = plt.subplots(len(targets), 2, figsize=(13, 0.9 + 0.32 * d.label.nunique() *
                                                           max(1, d.model.nunique())
                                                           * len(targets)), squeeze=False)
    for row, target in zip(axes, targets, strict=True):
        part = d[d.target == target].copy()
        part["name"] = part.model + " | " + part.label
        b1 = part[part.batch_size == 1].melt(id_vars="name", value_vars=["latency_p50_ms",
                                                                          "latency_p95_ms"],
                                             var_name="stat", value_name="ms")
        big = part[part.batch_size == part.batch_size.max()]
        if not b1.empty:
            sns.barplot(data=b1, y="name", x="ms", hue="stat", ax=row[0])
            row[0].set_title(f"{target}: latency at batch 1")
            row[0].set_ylabel("")
            row[0].legend(fontsize=7)
        if not big.empty and big.batch_size.iloc[0] != 1:
            sns.barplot(data=big, y="name", x="throughput_ips", ax=row[1], color="tab:green")
            row[1].set_title(f"{target}: throughput at batch {int(big.batch_size.iloc[0])}")
            row[1].set_xlabel("images / s")
            row[1].set_ylabel("")
            row[1].set_yticklabels([])
        for ax in row:
            ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def accuracy_vs_prune_ratio(df: pd.DataFrame, path: Path) -> Path | None:
    """Top-1 right after compression (dashed) and after fine-tuning (solid) against the
    fraction of parameters removed, one line per method and model (the detection study's plot,
    here for classifiers)."""
    d = df.drop_duplicates(["model", "label"])
    d = d[d.top1_pruned.notna() & d.prune_ratio.notna() & (d.method != "baseline")]
    if d.empty:
        return None
    plt, sns = _setup()
    fig, panels = _panels(d, "model", plt)
    methods = sorted(d.method.unique())
    colors = dict(zip(methods, sns.color_palette(n_colors=len(methods)), strict=True))
    for model, ax in panels:
        part = d[d.model == model]
        for method, sub in part.groupby("method"):
            sub = sub.sort_values("prune_ratio")
            ax.plot(sub.prune_ratio, 100 * sub.top1_pruned, "--o", color=colors[method],
                    alpha=0.7, label=f"{method} (pruned)")
            ax.plot(sub.prune_ratio, 100 * sub.top1_retrained, "-o", color=colors[method],
                    label=f"{method} (retrained)")
        base = df[(df.model == model) & (df.method == "baseline")].top1_retrained.dropna()
        if not base.empty:
            ax.axhline(100 * base.iloc[0], color="black", lw=0.8, label="baseline")
        ax.set_title(model)
        ax.set_xlabel("fraction of parameters removed (1 - non-zero / baseline)")
        ax.set_ylabel("mAP@0.5 % (torch)" if "map50" in set(part.get("metric", [])) else
                      "top-1 % (torch)")
    fig.suptitle("Accuracy right after compression and after fine-tuning")
    return _finish(fig, path, panels[0][1])


def kept_per_layer(layers: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Kept fraction of each layer's weights (non-zero / baseline weights), one bar per layer."""
    if layers.empty:
        return None
    plt, sns = _setup()
    fig, ax = plt.subplots(figsize=(max(6, 0.22 * len(layers)), 3.6))
    sns.barplot(data=layers, x="layer", y="kept", hue="kind", ax=ax, dodge=False)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("kept fraction")
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=90, labelsize=6)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
