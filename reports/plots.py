"""PNG plots (seaborn, Agg backend): colour = method, marker = target or model.

The two headline plots (speedup vs compression, accuracy loss vs speedup) number their points
(one number per configuration, the key under the panels) instead of printing labels that
overlap, place each number where it hides neither another number nor a point, and report where
every point landed in the saved PNG (`Hotspot`): the HTML report lays an SVG over the image
from those coordinates, so every point can be hovered and clicked. PNGs stay the artefact
for papers and slides; the HTML is where points are explored.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

DPI = 110  # headline PNGs: ~1400 px wide, shown at the page's full width
PANEL_W, PANEL_H = 5.8, 4.4  # inches per panel; at most two panels side by side
MARKER_PX = 7  # half the side of the box a plotted marker covers, in pixels at DPI


@dataclass(frozen=True)
class Hotspot:
    """Where one plotted point landed in the saved PNG (pixels from its top-left corner), the
    table row it stands for, its key number and its hover text."""

    x: float
    y: float
    row: str
    number: int
    tip: str


def _setup():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def pareto(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Points not dominated on (`x` up, `y` loss down), by `harness.recommend.pareto_front`'s
    rule, sorted by `x`."""
    from harness.recommend import pareto_front

    keep = pareto_front(list(zip(points[x].astype(float), points[y].astype(float),
                                 strict=True)))
    return points.iloc[keep]


def _panels(d: pd.DataFrame, col: str, plt: Any, grid: bool = False) -> tuple[Any, list[Any]]:
    """One panel per value of `col`: in one row, or (`grid`) at most two per row so that a
    headline plot stays legible at the page's width whatever the number of targets."""
    keys = sorted(d[col].unique())
    if not grid:
        fig, axes = plt.subplots(1, len(keys), figsize=(6.2 * len(keys), 4.8), squeeze=False,
                                 sharey=True)
        return fig, list(zip(keys, axes[0], strict=True))
    cols = min(2, len(keys))
    rows = -(-len(keys) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(PANEL_W * cols, 9.0), PANEL_H * rows),
                             squeeze=False, sharey=True, dpi=DPI)
    flat = list(axes.flat)
    for ax in flat[len(keys):]:
        ax.set_visible(False)
    return fig, list(zip(keys, flat, strict=False))


def numbering(labels: Any) -> dict[str, int]:
    """Configuration label -> its key number: the baseline first, then the others sorted."""
    names = sorted(set(labels), key=lambda x: (x != "baseline", x))
    return {name: i + 1 for i, name in enumerate(names)}


def _overlap(a: Any, b: Any) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


# (dx, dy) in points from the point, and the text's alignment there: tried in this order
_SLOTS = ((5, 4, "left", "bottom"), (5, -4, "left", "top"), (-5, 4, "right", "bottom"),
          (-5, -4, "right", "top"), (0, 7, "center", "bottom"), (0, -7, "center", "top"),
          (8, 0, "left", "center"), (-8, 0, "right", "center"), (12, 10, "left", "bottom"),
          (-12, -10, "right", "top"), (12, -10, "left", "top"), (-12, 10, "right", "bottom"))


def _place_numbers(fig: Any, items: list[tuple[Any, float, float, str]]) -> None:
    """Write each item's text beside its point (ax, x, y, text) at the first slot where it
    overlaps no number already placed, no plotted point and stays inside its panel; else at
    the first slot clear of other numbers; else leave it out (the page's hover still names
    the point). Items come in priority order."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    marks = []
    for ax, x, y, _ in items:
        px, py = ax.transData.transform((x, y))
        marks.append(Bbox.from_extents(px - MARKER_PX, py - MARKER_PX, px + MARKER_PX,
                                       py + MARKER_PX))
    placed: list[Any] = []
    for i, (ax, x, y, text) in enumerate(items):
        inside = ax.get_window_extent(renderer)
        fallback = None
        chosen = None
        for dx, dy, ha, va in _SLOTS:
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                              ha=ha, va=va, fontsize=9, color="0.15", zorder=5)
            box = ann.get_window_extent(renderer)
            clear_numbers = not any(_overlap(box, p) for p in placed)
            fits = (box.x0 >= inside.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0
                    and box.y1 <= inside.y1)
            clear_points = not any(_overlap(box, m) for j, m in enumerate(marks) if j != i)
            if clear_numbers and fits and clear_points:
                chosen = (ann, box)
                break
            if clear_numbers and fits and fallback is None:
                fallback = (dx, dy, ha, va)
            ann.remove()
        if chosen is None and fallback is not None:
            dx, dy, ha, va = fallback
            ann = ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points",
                              ha=ha, va=va, fontsize=9, color="0.15", zorder=5)
            chosen = (ann, ann.get_window_extent(renderer))
        if chosen is not None:
            placed.append(chosen[1])


def _key(fig: Any, axes: list[Any], numbers: dict[str, int]) -> None:
    """The numbers' key as a legend under the panels (numbers drawn as the markers)."""
    from matplotlib.lines import Line2D

    renderer = fig.canvas.get_renderer()
    bottom = min(ax.get_tightbbox(renderer).y0 for ax in axes if ax.get_visible())
    handles = [Line2D([], [], ls="none", marker=f"${n}$", color="0.15", markersize=7 + 2 *
                      len(str(n))) for n in numbers.values()]
    labels = [_plain(label) for label in numbers]
    width = max((len(x) for x in labels), default=10)
    ncol = max(1, min(len(labels), int(fig.get_figwidth() * 72 / (6.5 * width + 40))))
    fig.legend(handles, labels, loc="upper center", ncol=ncol, fontsize=9, frameon=False,
               title="key: configuration of each numbered point", title_fontsize=9,
               bbox_to_anchor=(0.5, bottom / fig.bbox.height - 0.01), columnspacing=1.2,
               handletextpad=0.4)


def _plain(text: str) -> str:
    """A name as literal text in matplotlib (a `$` would start mathtext)."""
    return text.replace("$", r"\$")


def _save_with_hotspots(fig: Any, path: Path, points: list[tuple[Any, ...]],
                        hotspots: list[Hotspot] | None) -> Path:
    """Save at DPI cropped to the drawn content (as bbox_inches="tight" would), and append
    where each point (ax, x, y, row, number, tip) landed in the PNG's pixels."""
    import matplotlib.pyplot as plt

    renderer = fig.canvas.get_renderer()
    bbox = fig.get_tightbbox(renderer).padded(0.1)
    fig.savefig(path, dpi=DPI, bbox_inches=bbox)
    if hotspots is not None:
        for ax, x, y, row, number, tip in points:
            px, py = ax.transData.transform((x, y))
            hotspots.append(Hotspot(round((px / fig.dpi - bbox.x0) * DPI, 1),
                                    round((bbox.y1 - py / fig.dpi) * DPI, 1), row, number, tip))
    plt.close(fig)
    return path


def _headline(fig: Any, panels: list[tuple[Any, Any]], path: Path,
              points: list[tuple[Any, ...]], numbers: dict[str, int],
              hotspots: list[Hotspot] | None, priority: set[int],
              shorts: dict[str, str]) -> Path:
    """Finish a headline plot: legend right of the panels, numbers beside the points (the
    Pareto points first), the key below (`shorts`: label -> the label the key shows), then
    save and map the points."""
    axes = [ax for _, ax in panels]
    handles, labels = [], []
    for ax in axes:  # the first panel's entries, then any only another panel has
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(h)
                labels.append(label)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if handles:
        fig.legend(handles, [_plain(x) for x in labels], loc="upper left",
                   bbox_to_anchor=(1.0, 0.98), fontsize=9, frameon=False)
    fig.tight_layout()
    order = sorted(range(len(points)), key=lambda i: (i not in priority, i))
    _place_numbers(fig, [(points[i][0], points[i][1], points[i][2], str(points[i][4]))
                         for i in order])
    used = {p[4] for p in points}
    _key(fig, axes, {shorts.get(k, k): v for k, v in numbers.items() if v in used})
    return _save_with_hotspots(fig, path, points, hotspots)


def _shorts(df: pd.DataFrame) -> dict[str, str]:
    """label -> short label (reports.html.frame's `short`: without the options every
    configuration of the method shares), or {} when the frame has none."""
    return dict(zip(df.label, df.short, strict=True)) if "short" in df else {}


def _points(ax: Any, part: pd.DataFrame, x: str, y: str, numbers: dict[str, int]
            ) -> list[tuple[Any, ...]]:
    """(ax, x, y, row id, number, hover text) of every point drawn from `part`."""
    out = []
    for r in part.to_dict("records"):
        out.append((ax, float(r[x]), float(r[y]), str(r.get("row_id") or ""),
                    numbers.get(r["label"], 0), str(r.get("tip") or r["label"])))
    return out


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


def _has_loss_ci(part: pd.DataFrame) -> bool:
    return "accuracy_loss_ci_low" in part and bool(part.accuracy_loss_ci_low.notna().any())


def _loss_bars(ax, part: pd.DataFrame) -> None:  # type: ignore[no-untyped-def]
    """The accuracy loss's paired 95% interval (harness.accuracy_ci) as vertical bars, where
    the rows have one: a loss a few hundred items cannot tell from zero looks like it."""
    if not _has_loss_ci(part):
        return
    ci = part[part.accuracy_loss_ci_low.notna()]
    err = [(ci.acc_loss - ci.accuracy_loss_ci_low).clip(lower=0),
           (ci.accuracy_loss_ci_high - ci.acc_loss).clip(lower=0)]
    ax.errorbar(ci.speedup, ci.acc_loss, yerr=err, fmt="none", ecolor="grey", elinewidth=1,
                capsize=2, zorder=1)


def _aa_band(ax, part: pd.DataFrame, horizontal: bool) -> None:  # type: ignore[no-untyped-def]
    """The A/A noise floor: the span of the baselines' own CIs (speedup against themselves),
    symmetric about 1.0 as the claims take it (`claims.floor`), and of the A/A each row was
    matched with in the store (`aa_ci_low/high`: the floor its claim uses when its own run's
    A/A row is not among the rows, e.g. after a newer baseline row failed)."""
    from harness.claims import floor

    base = part[(part.method == "baseline") & part.speedup_ci_low.notna()] \
        if "speedup_ci_low" in part else part.iloc[:0]
    bands = {floor(float(r.speedup_ci_low), float(r.speedup_ci_high))
             for r in base.itertuples()}
    if "aa_ci_low" in part:
        matched = part[(part.method != "baseline") & part.aa_ci_low.notna()
                       & part.aa_ci_high.notna()]
        bands |= {floor(float(r.aa_ci_low), float(r.aa_ci_high)) for r in matched.itertuples()
                  if float(r.aa_ci_low) > 0}
    if not bands:
        return
    lo, hi = min(b[0] for b in bands), max(b[1] for b in bands)
    span = ax.axvspan if horizontal else ax.axhspan
    # a panel of several models or targets holds several floors: their union is shaded, and
    # each point is still judged against its own (a point inside the shade may be "faster")
    span(lo, hi, color="grey", alpha=0.18, zorder=0,
         label="A/A noise floor (baseline CI, symmetric about 1)" if len(bands) == 1 else
         f"A/A noise floors: union of {len(bands)} (each point is judged by its own)")


def speedup_vs_compression(df: pd.DataFrame, path: Path,
                           hotspots: list[Hotspot] | None = None) -> Path | None:
    """Speedup (batch-1 p50) against compression ratio (log x), one panel per target; grey
    rings mark the ideal speedup = FLOP ratio of each point. Points are numbered by
    configuration (key below); `hotspots` receives where each landed in the PNG."""
    d = df[(df.batch_size == 1) & df.speedup.notna() & df.compression_ratio.notna()]
    if d.empty:
        return None
    from matplotlib.ticker import FuncFormatter

    plt, sns = _setup()
    fig, panels = _panels(d, "target", plt, grid=True)
    hue_order = sorted(d.method.unique())
    numbers = numbering(df.label)
    points: list[tuple[Any, ...]] = []
    # the y axis spans the measured speedups: an ideal far above them (20x the FLOPs of a
    # 95%-sparse model) is a caret on the top edge, not a reason to squash every point
    measured = pd.concat([d.speedup, d.speedup_ci_high.dropna()]) \
        if "speedup_ci_high" in d else d.speedup
    top = max(float(measured.max()) * 1.15, 1.3)
    for i, (target, ax) in enumerate(panels):
        part = d[d.target == target]
        points += _points(ax, part, "compression_ratio", "speedup", numbers)
        shown = part[part.flops_ratio.isna() | (part.flops_ratio <= top)]
        above = part[part.flops_ratio > top]
        ax.scatter(shown.compression_ratio, shown.flops_ratio, s=120, facecolors="none",
                   edgecolors="grey", label="ideal: FLOP ratio")
        if not above.empty:
            ax.scatter(above.compression_ratio, [top * 0.985] * len(above), marker="^", s=70,
                       facecolors="none", edgecolors="grey", clip_on=False,
                       label="ideal above the axis")
        ax.set_ylim(top=top)
        _aa_band(ax, part, horizontal=False)
        sns.scatterplot(data=part, x="compression_ratio", y="speedup", hue="method",
                        hue_order=hue_order, style="model", s=80, ax=ax, legend=i == 0)
        _uncertainty(ax, part, hue_order, "compression_ratio", "speedup", horizontal=False)
        ax.axhline(1.0, color="black", lw=0.8)
        ax.set_xscale("log")
        plain = FuncFormatter(lambda v, _: f"{v:g}")  # 2, 3, 4 rather than 2x10^0
        ax.xaxis.set_major_formatter(plain)
        lo, hi = ax.get_xlim()
        if hi / max(lo, 1e-12) < 20:  # within about a decade the minor ticks need numbers
            ax.xaxis.set_minor_formatter(FuncFormatter(
                lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "235" else ""))
        ax.set_title(_plain(target))
        ax.set_xlabel("compression ratio (baseline params / non-zero params)")
        ax.set_ylabel("speedup at batch 1, 95% CI (paired, same run)")
    fig.suptitle("Speedup vs compression")
    return _headline(fig, panels, path, points, numbers, hotspots, set(), _shorts(df))


def accuracy_vs_speedup(df: pd.DataFrame, path: Path,
                        hotspots: list[Hotspot] | None = None) -> Path | None:
    """Top-1 loss on the runtime against speedup, one panel per model, with each target's
    Pareto front drawn; points numbered by configuration (the front's first), key below;
    `hotspots` receives where each landed in the PNG."""
    d = df[(df.batch_size == 1) & df.speedup.notna() & df.acc_loss.notna()]
    if d.empty:
        return None
    plt, sns = _setup()
    fig, panels = _panels(d, "model", plt, grid=True)
    hue_order = sorted(d.method.unique())
    numbers = numbering(df.label)
    points: list[tuple[Any, ...]] = []
    on_front: set[int] = set()
    for i, (model, ax) in enumerate(panels):
        part = d[d.model == model]
        first = len(points)
        points += _points(ax, part, "speedup", "acc_loss", numbers)
        _aa_band(ax, part, horizontal=True)
        sns.scatterplot(data=part, x="speedup", y="acc_loss", hue="method", hue_order=hue_order,
                        style="target", s=80, ax=ax, legend=i == 0)
        _uncertainty(ax, part, hue_order, "speedup", "acc_loss", horizontal=True)
        _loss_bars(ax, part)
        for j, (target, sub) in enumerate(part.groupby("target")):
            # only clean measurements make the front (harness.recommend's rule): a noisy
            # speedup, or one from before store version 3 without a CI, claims nothing
            clean = sub[sub.quality == "clean"] if "quality" in sub else sub.iloc[:0]
            if clean.empty:
                continue
            front = pareto(clean, "speedup", "acc_loss")
            ax.plot(front.speedup, front.acc_loss, ("--", ":", "-.")[j % 3], color="black",
                    lw=1, label=f"Pareto front, {target}" if i == 0 else None)
            where = list(part.index)
            on_front.update(first + where.index(k) for k in front.index)
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_title(_plain(model))
        ax.set_xlabel("speedup at batch 1, 95% CI (paired, same run)")
        metric = "mAP@0.5" if "map50" in set(part.get("metric", [])) else "top-1"
        ax.set_ylabel(f"{metric} loss vs baseline (points, on the runtime"
                      + (", 95% CI)" if _has_loss_ci(part) else ")"))
    fig.suptitle("Accuracy loss vs speedup")
    return _headline(fig, panels, path, points, numbers, hotspots, on_front, _shorts(df))


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
