"""The HTML report: `index.html` with PNGs beside it in one folder, rendered from the store.

Self-contained (no CDN, no external script); everything that comes from a suite file or a
model name goes through Jinja2's autoescape. The files written have fixed names (`index.html`,
`speedup_vs_compression.png`, `layers_00.png`, ...) inside `out_dir` only: no suite, model or
method name ever becomes part of a path here (the CLI names the folder through
`harness.slug.slug`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from harness.recommend import Budgets
from harness.reports import plots
from harness.reports.table import method_label
from harness.store import Store
from harness.timing import REOPEN_BELOW_MS

@dataclass(frozen=True)
class Column:
    """A column of the results table. `kind`: "id" (identifying: frozen at the left), "num"
    (right-aligned, three significant figures, sorted by value) or "text"; `advanced` columns
    are hidden until the reader asks for them."""

    key: str
    header: str
    kind: str = "num"
    advanced: bool = False
    unit: str = ""  # "pct": a fraction shown in %; "bytes": decimal kB/MB; "count": k/M/G


COLUMNS = (
    Column("number", "#", "id"), Column("target", "target", "id"),
    Column("model", "model", "id"), Column("label", "configuration", "id"),
    Column("batch_size", "batch"), Column("top1_target", "accuracy %", unit="pct"),
    Column("acc_loss", "loss (points)"), Column("acc_loss_ci", "loss 95% CI", "text"),
    Column("speedup", "speedup"),
    Column("speedup_ci", "95% CI", "text"), Column("claim", "claim", "text"),
    Column("latency_p50_ms", "p50 ms"), Column("throughput_ips", "images/s"),
    Column("compression_ratio", "compression"), Column("flops_ratio", "FLOP ratio"),
    Column("precision", "precision", "text", True),
    Column("top1_pruned", "pruned % (torch)", advanced=True, unit="pct"),
    Column("top1_retrained", "retrained % (torch)", advanced=True, unit="pct"),
    Column("latency_p90_ms", "p90 ms", advanced=True),
    Column("latency_p95_ms", "p95 ms", advanced=True),
    Column("latency_p99_ms", "p99 ms", advanced=True),
    Column("first_call_ms", "first call ms", advanced=True),
    Column("params_nonzero", "non-zero params", advanced=True, unit="count"),
    Column("macs", "MACs", advanced=True, unit="count"),
    Column("flops", "FLOPs", advanced=True, unit="count"),
    Column("size_bytes", "size", advanced=True, unit="bytes"),
    Column("size_compressed_bytes", "zlib size", advanced=True, unit="bytes"),
    Column("toolchain", "toolchain", "text", True), Column("info", "info", "text", True),
    Column("timed_on", "timed on", "text", True),
)
SHOWN = tuple(c.key for c in COLUMNS)
MAX_LAYER_PLOTS = 16
CSV_NAME = "results.csv"


def frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows as a DataFrame with `label`, `acc_loss` (top-1 points lost against the baseline on
    the same target), `prune_ratio` (fraction of the baseline's parameters gone),
    `toolchain`, `number` (the configuration's key number in the plots), `row_id` (its row in
    the table) and `tip` (what hovering its point shows)."""
    from harness.claims import aa_bands, fmt_speedup, note
    from harness.recommend import accuracy_losses, row_id

    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for col in ("speedup_ci_low", "speedup_ci_high", "quality", "macs", "accuracy_loss_ci_low",
                "accuracy_loss_ci_high"):
        if col not in df:
            df[col] = None
    bands = aa_bands(rows)
    df["speedup_ci"] = [fmt_speedup(r).partition(" ")[2] for r in rows]
    df["claim"] = [note(r, bands) for r in rows]
    df["label"] = [method_label(r) for r in rows]
    df["toolchain"] = [(r.get("info") or {}).get("toolchain", "") for r in rows]
    df["timed_on"] = [timed_on(r) for r in rows]
    base = df[(df.method == "baseline") & (df.status == "ok")]
    params = {r.model: r.params_total for r in base.itertuples()}
    losses = accuracy_losses(rows)  # the rule `harness recommend` applies
    df["acc_loss"] = [losses[id(r)] for r in rows]
    df["acc_loss_ci"] = [_loss_ci(r) if losses[id(r)] is not None else "" for r in rows]
    numbers = plots.numbering(df.label)
    short = short_labels(rows)
    df["short"] = [short[x] for x in df.label]
    df["number"] = [numbers[x] for x in df.label]
    df["row_id"] = [row_id(r) for r in rows]
    df["info"] = [json.dumps(r.get("info") or {}, sort_keys=True, default=str) for r in rows]
    df["tip"] = [_tip(r, numbers[method_label(r)], losses[id(r)]) for r in rows]
    df["prune_ratio"] = [
        1 - r.params_nonzero / params[r.model]
        if params.get(r.model) and pd.notna(r.params_nonzero) else None
        for r in df.itertuples()
    ]
    for col in ("acc_loss", "prune_ratio", "speedup_ci_low", "speedup_ci_high",
                "accuracy_loss_ci_low", "accuracy_loss_ci_high"):
        df[col] = df[col].astype(float)
    return df


def _loss_ci(row: dict[str, Any]) -> str:
    """`[-0.6, 2.2]`: the paired 95% interval of a row's accuracy loss (harness.accuracy_ci),
    "" where the row has none (stored before schema 6, mAP, the baseline itself)."""
    from harness.reports.table import fmt_ci

    return fmt_ci(row.get("accuracy_loss_ci_low"), row.get("accuracy_loss_ci_high"))


def mixed_baselines(rows: list[dict[str, Any]], runs: list[dict[str, Any]]) -> list[str]:
    """Models whose shown rows come from more than one baseline, one line each. A report
    shows the newest row of every cell, whichever run made it: after the suite's file was
    edited, another profile was run, or two suites of one name shared the store, one model's
    rows can rest on different baselines. Each row is still against its own baseline (its
    accuracy loss, its interleaved speedup), but rows of two baselines are not comparable."""
    profile = {r["run_id"]: r.get("profile") for r in runs}
    seen: dict[str, dict[str, set[str]]] = {}
    for r in rows:
        if r["status"] == "ok" and r.get("baseline_key"):
            seen.setdefault(r["model"], {}).setdefault(r["baseline_key"], set()).add(r["run_id"])
    out = []
    for model, keys in sorted(seen.items()):
        if len(keys) > 1:
            run_ids = sorted(set().union(*keys.values()))
            profiles = sorted({str(profile.get(x) or "?") for x in run_ids})
            out.append(f"{model}: {len(keys)} baselines (runs {', '.join(run_ids)}; "
                       f"profile {', '.join(profiles)})")
    return out


def timed_on(row: dict[str, Any]) -> str:
    """The machine a row was timed on: its host, and its Ray node where a cluster timed it."""
    node = row.get("node") or {}
    if isinstance(node, str):
        node = json.loads(node)
    host = str(node.get("host") or "")
    return f"{host} (ray {str(node['ray_node'])[:8]})" if node.get("ray_node") else host


def _tip(row: dict[str, Any], number: int, loss: float | None) -> str:
    """The hover text of a plotted point: model, method and configuration, target, speedup
    [CI] with its claim, accuracy loss and size."""
    from harness.claims import fmt_speedup
    from harness.recommend import fmt_size
    from harness.reports.table import fmt3

    cfg = row.get("method_config") or {}
    lines = [f"#{number} {row.get('model')}", f"method: {row.get('method')}",
             "config: " + (", ".join(f"{k}={v}" for k, v in sorted(cfg.items()))
                           if isinstance(cfg, dict) and cfg else "-"),
             f"target: {row.get('target')}, batch {row.get('batch_size')}",
             f"speedup: {fmt_speedup(row) or '-'}"
             + (" (noisy)" if row.get("quality") == "noisy" else ""),
             "accuracy loss: " + ("-" if loss is None else
                                  f"{fmt3(loss)} {_loss_ci(row)} points".replace("  ", " ")),
             "size: " + ("-" if row.get("size_bytes") is None else fmt_size(row["size_bytes"]))]
    return "\n".join(lines)


def render(store: Store, suite: str, out_dir: Path, budgets: Budgets | None = None) -> Path:
    """Write `index.html`, its PNGs and `results.csv` into `out_dir`. The verdict panel holds
    the rows to `budgets` (a harness.recommend.Budgets; default: the suite file's)."""
    from harness.recommend import suite_budgets, verdicts
    from harness.reports.tidy import tidy_rows, to_csv

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = store.rows(suite=suite)
    runs = store.runs(suite=suite)
    if budgets is None:
        budgets, budget_source = suite_budgets(suite, runs)
    else:
        budget_source = "given"
    df = frame(rows)
    headline: list[dict[str, Any]] = []
    images = []
    layer_tables: list[dict[str, Any]] = []
    if not df.empty:
        ok = df[df.status == "ok"]
        for title, fn, name in (
            ("Speedup vs compression", plots.speedup_vs_compression, "speedup_vs_compression.png"),
            ("Accuracy loss vs speedup", plots.accuracy_vs_speedup, "accuracy_vs_speedup.png"),
        ):
            spots: list[plots.Hotspot] = []
            if fn(ok, out_dir / name, spots):
                from PIL import Image

                with Image.open(out_dir / name) as im:
                    width, height = im.size
                headline.append({"title": title, "file": name, "width": width,
                                 "height": height, "hotspots": spots})
        for title, fn, name in (
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
        shown = df[df.status == "ok"]
        results = [_cells(r) for r in shown.to_dict("records")]
    (out_dir / CSV_NAME).write_text(to_csv(tidy_rows(rows)))
    answers = verdicts(rows, budgets)
    short = dict(zip(df.label, df.short, strict=True)) if not df.empty else {}
    filters = {key: sorted({str(r[key]) for r in rows if r["status"] == "ok"})
               for key in ("model", "method", "target")}
    # rows timed on several machines (a Ray cluster's timing nodes, or stores merged from
    # runs elsewhere): each speedup is within one machine, but latencies across rows are not
    machines = sorted({timed_on(r) for r in rows if r["status"] == "ok"} - {""})
    mixed = mixed_baselines(rows, runs)
    if len(machines) > 1:
        filters["timed_on"] = machines
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
    from harness.reports import search

    studies = search.section(store, suite, out_dir)
    env = Environment(loader=PackageLoader("harness.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    html = env.get_template("report.html.j2").render(
        suite=suite, run=run, runs=runs, images=images, columns=COLUMNS, results=results,
        headline=headline, studies=studies, machines=machines, mixed=mixed,
        verdicts=[_verdict(a, short) for a in answers],
        budgets=budgets.describe(),
        budget_source=budget_source, filters=filters, csv=CSV_NAME,
        targets=sorted({r["target"] for r in rows if r["status"] == "ok"}),
        failed=failed, layers=layer_tables, precisions=precisions, not_scored=not_scored,
        noisy=noisy, estimator=(run or {}).get("settings", {}).get("estimator"),
        timing=(run or {}).get("settings", {}).get("profile", {}).get("timing", {}),
        threads=(run or {}).get("settings", {}).get("threads"),
        settings=json.dumps(run["settings"], indent=1) if run else "",
        reopen_below_ms=REOPEN_BELOW_MS,
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


def _choice_view(c: Any) -> dict[str, Any] | None:
    """A harness.recommend.Choice as the verdict panel prints it."""
    from harness.claims import fmt_speedup
    from harness.recommend import UNSCORED, fmt_size
    from harness.reports.table import fmt3

    if c is None:
        return None
    sp = fmt_speedup({"speedup": c.speedup, "speedup_ci_low": c.speedup_ci_low,
                      "speedup_ci_high": c.speedup_ci_high})
    return {"label": c.label, "row_id": c.row_id, "speedup": sp, "claim": c.claim,
            "loss": "" if c.acc_loss is None else fmt3(c.acc_loss) + c.loss_ci(),
            "size": "" if c.size_bytes is None else fmt_size(c.size_bytes),
            "zlib": "" if c.size_compressed_bytes is None else fmt_size(c.size_compressed_bytes),
            "ratio": "" if c.compression_ratio is None else fmt3(c.compression_ratio),
            "flags": "; ".join(c.flags), "lacks": "; ".join(c.lacks),
            # the badge names what the caveats are: a measurement below the scoring floors,
            # or only a caveat (e.g. chunks short enough to read a speedup low)
            "badge": "unscored" if any(f.startswith(UNSCORED) for f in c.flags)
            else "caveat"}


def short_labels(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Configuration label -> the label without the options that every configuration of its
    method shares here (`weight-level scope=global,sparsity=0.8,steps=2` -> `weight-level
    sparsity=0.8` when scope and steps never change): what tells a suite's rows apart. A
    method run with one configuration keeps its full label."""
    def cfg(r: dict[str, Any]) -> dict[str, Any]:
        raw = r.get("method_config") or {}
        return json.loads(raw) if isinstance(raw, str) else dict(raw)

    configs: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if cfg(r) not in configs.setdefault(r["method"], []):
            configs[r["method"]].append(cfg(r))
    out = {}
    for r in rows:
        seen = configs[r["method"]]
        varied = {k: v for k, v in cfg(r).items()
                  if len(seen) < 2 or any(other.get(k, object()) != v for other in seen)}
        out[method_label(r)] = method_label({"method": r["method"], "method_config": varied})
    return out


def _verdict(a: Any, short: dict[str, str]) -> dict[str, Any]:
    """One line of the verdict panel from a harness.recommend.Answer (the answer `harness
    recommend --target T --batch B` prints for the same store), with short labels."""
    def view(c: Any) -> dict[str, Any] | None:
        v = _choice_view(c)
        if v is not None:
            v["short"] = short.get(v["label"], v["label"])
        return v

    noisy = sum(c.quality == "noisy" for c in a.not_considered)
    old = len(a.not_considered) - noisy
    caveat = ", ".join(x for x in (f"{noisy} noisy" if noisy else "",
                                   f"{old} without CI" if old else "") if x)
    return {"target": a.target, "batch": a.batch_size, "model": a.model, "metric": a.metric,
            "fastest": view(a.best), "smallest": view(a.most_compressed),
            "why_none": a.why_none, "miss": view(a.misses[0]) if a.misses else None,
            "no_change": [view(c) for c in a.no_change], "notes": "; ".join(a.notes),
            "caveat": f"{caveat}: not considered" if caveat else ""}


def _cells(r: dict[str, Any]) -> dict[str, Any]:
    """One table row: per column its text and, for numbers, the value it sorts by; plus the
    attributes its filters and the plots' points use."""
    cells = []
    for c in COLUMNS:
        v = r.get(c.key)
        missing = v is None or (isinstance(v, float) and pd.isna(v))
        if c.kind == "num" or c.key == "number":
            num = None if missing else float(v) * (100 if c.unit == "pct" else 1)
            cells.append({"text": _num(num, c.unit), "v": "" if num is None else repr(num)})
        else:
            cells.append({"text": "" if missing else str(v), "v": None})
    return {"cells": cells, "row_id": r["row_id"], "model": r["model"], "method": r["method"],
            "target": r["target"], "timed_on": r.get("timed_on", ""),
            "noisy": r.get("quality") == "noisy"}


def _num(v: float | None, unit: str = "") -> str:
    """Three significant figures; big counts as k/M/G, sizes in decimal kB/MB."""
    from harness.recommend import fmt_size
    from harness.reports.table import fmt3

    if v is None:
        return ""
    if unit == "bytes":
        return fmt_size(v)
    if unit == "count" and abs(v) >= 1e4:
        for suffix, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
            if abs(v) >= scale:
                return f"{fmt3(v / scale)}{suffix}"
    return fmt3(v)
