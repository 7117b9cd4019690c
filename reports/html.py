"""The HTML report: `reports/<suite>/index.html` with PNGs beside it, rendered from the store."""

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
         "latency_p50_ms", "latency_p95_ms", "throughput_ips", "speedup", "compression_ratio",
         "flops_ratio", "params_nonzero", "flops", "size_bytes", "size_compressed_bytes")


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with `label` and `acc_loss` (top-1 points lost on the same target)."""
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    df["label"] = [method_label(r) for r in rows]
    base = df[(df.method == "baseline") & (df.status == "ok")]
    ref = {(r.model, r.target): r.top1_target for r in base.itertuples()}
    df["acc_loss"] = [
        100 * (ref[(r.model, r.target)] - r.top1_target)
        if ref.get((r.model, r.target)) is not None and pd.notna(r.top1_target) else None
        for r in df.itertuples()
    ]
    df["acc_loss"] = df["acc_loss"].astype(float)
    return df


def render(store: Store, suite: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = store.rows(suite=suite)
    runs = store.runs(suite=suite)
    df = frame(rows)
    images = []
    if not df.empty:
        ok = df[df.status == "ok"]
        for title, fn, name in (
            ("Speedup vs compression", plots.speedup_vs_compression, "speedup_vs_compression.png"),
            ("Accuracy loss vs speedup", plots.accuracy_vs_speedup, "accuracy_vs_speedup.png"),
        ):
            if fn(ok, out_dir / name):
                images.append({"title": title, "file": name})
    results = []
    if not df.empty:
        shown = df[df.status == "ok"][list(SHOWN)]
        results = [{k: _fmt(v) for k, v in r.items()} for r in shown.to_dict("records")]
    failed = [{"target": r["target"], "model": r["model"], "label": method_label(r),
               "error": r["error"]} for r in rows if r["status"] != "ok"]
    layers = _layer_tables(rows)
    env = Environment(loader=PackageLoader("harness.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        suite=suite, run=runs[-1] if runs else None, runs=runs, images=images,
        columns=SHOWN, results=results, failed=failed, layers=layers,
        settings=json.dumps(runs[-1]["settings"], indent=1) if runs else "",
    )
    path = out_dir / "index.html"
    path.write_text(html)
    return path


def _layer_tables(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One per-layer table per compressed model (not per target: the model is the same)."""
    seen, out = set(), []
    for r in rows:
        key = (r["model"], method_label(r))
        if r["status"] != "ok" or not r.get("layers") or key in seen:
            continue
        seen.add(key)
        out.append({"model": r["model"], "label": method_label(r), "rows": r["layers"]})
    return out


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        if pd.isna(v):
            return ""
        return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.4g}"
    return "" if v is None else v
