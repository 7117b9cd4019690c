"""Tidy rows for `harness export`: one per (cell, target, batch size), fixed column order.

`metric` names what the top1_* columns hold: "top1" (classifiers) or "map50" (detectors: VOC
mAP@0.5, area under the PR curve; 11-point and COCO mAP are in the cell's info).
`speedup_ci_low/high` are the paired 95% bootstrap CI (harness.stats), `quality` is clean or
noisy (`quality_reason` says why), `scored` whether the measurement met the scoring floors, and
`claim` what the speedup may claim against the A/A noise floor (harness.claims). `eval_items`
is how many items the runtime's accuracy was scored on, `top1_target_ci_low/high` its Wilson
95% interval, `accuracy_loss` the points lost against the model's own baseline on the same
target and `accuracy_loss_ci_low/high` its paired 95% interval (harness.accuracy_ci; empty
for rows stored before schema 6 and for mAP). `macs` are
multiply-accumulates (Li et al., Torch-Pruning); `flops` = 2 x MACs. `samples_rows` flattens
the raw per-call samples for `harness export --samples`.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

COLUMNS = (
    "suite", "model", "method", "method_config", "target", "precision", "batch_size",
    "metric", "top1_baseline", "top1_pruned", "top1_retrained", "top1_target", "eval_samples",
    "params_total", "params_nonzero", "flops", "flops_effective", "size_bytes",
    "size_compressed_bytes", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms",
    "latency_p99_ms", "throughput_ips", "iterations", "ref_latency_p50_ms",
    "ref_throughput_ips", "speedup", "speedup_ci_low", "speedup_ci_high", "claim", "quality",
    "quality_reason", "scored", "unscored_reason", "first_call_ms", "attempts", "macs",
    "runtime_settings", "postprocess_ms", "compression_ratio", "flops_ratio", "status", "error",
    "duration_s", "run_id", "cell_key", "created", "eval_items", "top1_target_ci_low",
    "top1_target_ci_high", "accuracy_loss", "accuracy_loss_ci_low", "accuracy_loss_ci_high",
)
SAMPLE_COLUMNS = ("suite", "model", "method", "method_config", "target", "batch_size", "side",
                  "round", "call", "ns", "run_id", "cell_key")


def tidy_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from harness.claims import aa_bands, claim
    from harness.recommend import accuracy_losses

    bands = aa_bands(rows)
    losses = accuracy_losses(rows)  # the rule the report and `harness recommend` apply
    out = []
    for r in rows:
        row = {c: r.get(c) for c in COLUMNS}
        loss = losses[id(r)]
        row["accuracy_loss"] = None if loss is None or r.get("method") == "baseline" \
            else round(loss, 3)
        row["method_config"] = json.dumps(r.get("method_config") or {}, sort_keys=True)
        row["runtime_settings"] = (json.dumps(r["runtime_settings"], sort_keys=True)
                                   if r.get("runtime_settings") else None)
        row["claim"] = claim(r, bands) or None
        if row["scored"] is not None:
            row["scored"] = bool(row["scored"])
        out.append(row)
    return out


def samples_rows(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per timed call: which cell, batch and side, its round, and its nanoseconds."""
    out = []
    for s in samples:
        head = {c: s.get(c) for c in ("suite", "model", "method", "target", "batch_size",
                                      "side", "run_id", "cell_key")}
        head["method_config"] = json.dumps(s.get("method_config") or {}, sort_keys=True)
        i = 0
        for rnd, n in enumerate(s["rounds"]):
            for ns in s["samples_ns"][i: i + n]:
                out.append({**head, "round": rnd, "call": i, "ns": ns})
                i += 1
    return out


def to_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=1) + "\n"
