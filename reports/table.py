"""The MLMark-style terminal table: Target, Model, Method, Precision, Batch, Metric, Score, Units."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from harness.timing import sig3


def method_label(row: dict[str, Any]) -> str:
    cfg = row.get("method_config") or {}
    if isinstance(cfg, str):
        cfg = json.loads(cfg)
    if not cfg:
        return row["method"]
    return row["method"] + " " + ",".join(f"{k}={v}" for k, v in sorted(cfg.items()))


def fmt3(x: float | None) -> str:
    """Three significant figures, without a float's trailing '.0' or an exponent."""
    if x is None:
        return ""
    v = sig3(float(x))
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:g}"


def fmt_ci(lo: float | None, hi: float | None) -> str:
    """`[0.41, 1.17]`: an interval at three significant figures, "" when either end is
    missing (a row stored before its interval was)."""
    return "" if lo is None or hi is None else f"[{fmt3(lo)}, {fmt3(hi)}]"


def score_lines(rows: list[dict[str, Any]],
                stored: set[str] | None = None) -> list[tuple[str, ...]]:
    """(target, model, method, precision, batch, metric, score, units, note) for ok rows; a
    speedup's score carries its 95% CI and its note says what it may claim (harness.claims).
    Lines of rows whose cell key is in `stored` (results of earlier runs, skipped by this one)
    have a note starting "(stored)"."""
    from harness.claims import aa_bands, fmt_speedup, note
    from harness.recommend import accuracy_losses

    bands = aa_bands(rows)
    losses = accuracy_losses(rows)
    lines: list[tuple[str, ...]] = []
    seen_acc = set()
    for r in rows:
        if r["status"] != "ok" or r.get("batch_size") is None:
            continue
        first = len(lines)
        head = (r["target"], r["model"], method_label(r), r.get("precision") or "")
        if r.get("top1_target") is not None and r["cell_key"] not in seen_acc:
            seen_acc.add(r["cell_key"])
            name = "mAP@0.5" if r.get("metric") == "map50" else "Top-1"
            lines.append((*head, "-", name, fmt3(100 * r["top1_target"]), "%",
                          accuracy_note(r, losses[id(r)])))
            if r.get("postprocess_ms") is not None:
                lines.append((*head, "1", "Decode+NMS", fmt3(r["postprocess_ms"]), "ms", ""))
        b = str(r["batch_size"])
        if r["batch_size"] == 1:
            lines.append((*head, b, "Latency p95", fmt3(r["latency_p95_ms"]), "ms", ""))
        else:
            lines.append((*head, b, "Throughput", fmt3(r["throughput_ips"]), "fps", ""))
        if r.get("speedup") is not None:
            lines.append((*head, b, "Speedup", fmt_speedup(r, unit=False),
                          "x", note(r, bands)))
        if stored and r["cell_key"] in stored:
            for i in range(first, len(lines)):
                *rest, why = lines[i]
                lines[i] = (*rest, "(stored)" + (f"; {why}" if why else ""))
    return lines


def accuracy_note(row: dict[str, Any], loss: float | None) -> str:
    """`95% CI [90.1, 94.2] (n=500); loss 0.4 [-0.9, 1.7] pts`: the runtime top-1's
    Wilson interval and the loss's paired one (harness.accuracy_ci); "" for a row without
    per-item results (stored before schema 6, or mAP)."""
    parts = []
    lo, hi = row.get("top1_target_ci_low"), row.get("top1_target_ci_high")
    if lo is not None and hi is not None:
        parts.append(f"95% CI {fmt_ci(100 * lo, 100 * hi)} (n={row['eval_items']})")
    ci = fmt_ci(row.get("accuracy_loss_ci_low"), row.get("accuracy_loss_ci_high"))
    if loss is not None and ci and row.get("method") != "baseline":
        parts.append(f"loss {fmt3(loss)} {ci} pts")
    return "; ".join(parts)


def unscored(rows: list[dict[str, Any]]) -> list[str]:
    """Which scoring floors the rows' measurements missed (each floor once, without the
    per-row measured figure in parentheses; empty = scored)."""
    import re

    out: list[str] = []
    for r in rows:
        if r.get("batch_size") is not None and r.get("scored") in (0, False):
            for part in (r.get("unscored_reason") or "below the scoring floors").split("; "):
                part = re.sub(r" \(.*\)$", "", part)
                if part not in out:
                    out.append(part)
    return out


def print_table(console: Console, rows: list[dict[str, Any]],
                stored: set[str] | None = None) -> None:
    """The results table, the unscored note and one FAILED line per failed row; rows whose
    cell key is in `stored` came from earlier runs and are marked "(stored)"."""
    if not console.is_terminal:  # pipes and CI logs: do not squeeze the table into 80 columns
        console = Console(file=console.file, width=max(console.width, 150))
    why = unscored(rows)
    title = "CompressMark results" + (" (not a scored run)" if why else "")
    table = Table(title=title, show_lines=False)
    for col in ("Target", "Model", "Method", "Precision", "Batch", "Metric", "Score", "Units",
                "Note"):
        table.add_column(col, justify="right" if col in ("Batch", "Score") else "left")
    for line in score_lines(rows, stored):
        table.add_row(*(Text(x) for x in line))
    console.print(table)
    if why:
        console.print("not a scored run (" + ", ".join(why) + "); speedups are shown with "
                      "their 95% CI", markup=False, highlight=False)
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed:
        console.print(f"FAILED {r['target']} {r['model']} {method_label(r)}: {r['error']}",
                      markup=False, highlight=False)
