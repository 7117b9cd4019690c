"""The HTML report: `reports/<suite>/index.html` with PNGs beside it, rendered from the store.

Self-contained (no CDN, no external script); everything that comes from a suite file or a
model name goes through Jinja2's autoescape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from harness.reports import plots
from harness.reports.table import method_label
from harness.store import Store

SHOWN = ("target", "model", "label", "precision", "batch_size", "top1_target", "acc_loss",
         "top1_pruned", "top1_retrained", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms",
         "throughput_ips", "speedup", "speedup_ci", "claim", "compression_ratio", "flops_ratio",
         "params_nonzero", "macs", "flops", "size_bytes", "size_compressed_bytes", "toolchain")
MAX_LAYER_PLOTS = 16


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with `label`, `acc_loss` (top-1 points lost against the baseline on
    the same target), `prune_ratio` (fraction of the baseline's parameters gone) and
    `toolchain`."""
    from harness.claims import aa_bands, fmt_speedup, note

    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for col in ("speedup_ci_low", "speedup_ci_high", "quality", "macs"):
        if col not in df:
            df[col] = None
    bands = aa_bands(rows)
    df["speedup_ci"] = [fmt_speedup(r).partition(" ")[2] for r in rows]
    df["claim"] = [note(r, bands) for r in rows]
    df["label"] = [method_label(r) for r in rows]
    df["toolchain"] = [(r.get("info") or {}).get("toolchain", "") for r in rows]
    base = df[(df.method == "baseline") & (df.status == "ok")]
    ref = {(r.model, r.target): r.top1_target for r in base.itertuples()}
    params = {r.model: r.params_total for r in base.itertuples()}
    df["acc_loss"] = [
        100 * (ref[(r.model, r.target)] - r.top1_target)
        if ref.get((r.model, r.target)) is not None and pd.notna(r.top1_target) else None
        for r in df.itertuples()
    ]
    df["prune_ratio"] = [
        1 - r.params_nonzero / params[r.model]
        if params.get(r.model) and pd.notna(r.params_nonzero) else None
        for r in df.itertuples()
    ]
    for col in ("acc_loss", "prune_ratio", "speedup_ci_low", "speedup_ci_high"):
        df[col] = df[col].astype(float)
    return df


def render(store: Store, suite: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = store.rows(suite=suite)
    runs = store.runs(suite=suite)
    df = frame(rows)
    images = []
    layer_tables: list[dict[str, Any]] = []
    if not df.empty:
        ok = df[df.status == "ok"]
        for title, fn, name in (
            ("Speedup vs compression", plots.speedup_vs_compression, "speedup_vs_compression.png"),
            ("Accuracy loss vs speedup", plots.accuracy_vs_speedup, "accuracy_vs_speedup.png"),
            ("Latency and throughput per method", plots.latency_throughput_bars,
             "latency_throughput.png"),
            ("Accuracy pruned / retrained vs prune ratio", plots.accuracy_vs_prune_ratio,
             "accuracy_vs_prune_ratio.png"),
        ):
            if fn(ok, out_dir / name):
                images.append({"title": title, "file": name})
        layer_tables = _layer_tables(rows, out_dir)
    results = []
    if not df.empty:
        shown = df[df.status == "ok"][list(SHOWN)]
        results = [{k: _fmt(v) for k, v in r.items()} for r in shown.to_dict("records")]
    failed = [{"target": r["target"], "model": r["model"], "label": method_label(r),
               "error": r["error"]} for r in rows if r["status"] != "ok"]
    precisions = sorted({f"{r['target']}: {r['precision']}" for r in rows
                         if r["status"] == "ok" and r.get("precision")})
    run = runs[-1] if runs else None
    from harness.reports.table import unscored

    not_scored = unscored(rows)
    noisy = [{"target": r["target"], "model": r["model"], "label": method_label(r),
              "batch": r["batch_size"], "reason": r.get("quality_reason") or ""}
             for r in rows if r["status"] == "ok" and r.get("quality") == "noisy"]
    env = Environment(loader=PackageLoader("harness.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        suite=suite, run=run, runs=runs, images=images, columns=SHOWN, results=results,
        failed=failed, layers=layer_tables, precisions=precisions, not_scored=not_scored,
        noisy=noisy, estimator=(run or {}).get("settings", {}).get("estimator"),
        timing=(run or {}).get("settings", {}).get("profile", {}).get("timing", {}),
        threads=(run or {}).get("settings", {}).get("threads"),
        settings=json.dumps(run["settings"], indent=1) if run else "",
    )
    path = out_dir / "index.html"
    path.write_text(html)
    return path


def _layer_tables(rows: list[dict[str, Any]], out_dir: Path) -> list[dict[str, Any]]:
    """Per compressed model: its per-layer table and, where layers lost weights or filters
    against the baseline, a kept-fraction chart."""
    base = {r["model"]: {layer["layer"]: layer for layer in r["layers"] or []}
            for r in rows if r["method"] == "baseline" and r["status"] == "ok"}
    seen, out, images = set(), [], 0
    for r in rows:
        key = (r["model"], method_label(r))
        if r["status"] != "ok" or not r.get("layers") or key in seen:
            continue
        seen.add(key)
        table = {"model": r["model"], "label": method_label(r), "rows": r["layers"], "image": None}
        ref = base.get(r["model"], {})
        kept = []
        for layer in r["layers"]:
            b = ref.get(layer["layer"])
            if b and b["weights"]:
                kind = "filters removed" if layer["weights"] < b["weights"] else "weights zeroed"
                kept.append({"layer": layer["layer"], "kept": layer["nonzero"] / b["weights"],
                             "kind": kind})
        if kept and min(k["kept"] for k in kept) < 0.999 and images < MAX_LAYER_PLOTS:
            name = f"layers_{images:02d}.png"
            if plots.kept_per_layer(pd.DataFrame(kept), out_dir / name,
                                    f"{r['model']}: {method_label(r)}"):
                table["image"] = name
                images += 1
        out.append(table)
    return out


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        if pd.isna(v):
            return ""
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.4g}"
    return "" if v is None else v
