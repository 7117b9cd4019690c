"""Tidy rows for `harness export`: one per (cell, target, batch size), fixed column order.

`metric` names what the top1_* columns hold: "top1" (classifiers) or "map50" (detectors: VOC
mAP@0.5, area under the PR curve; 11-point and COCO mAP are in the cell's info).
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
    "ref_throughput_ips", "speedup", "postprocess_ms", "compression_ratio", "flops_ratio", "status", "error",
    "duration_s", "run_id", "cell_key", "created",
)


def tidy_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        row = {c: r.get(c) for c in COLUMNS}
        row["method_config"] = json.dumps(r.get("method_config") or {}, sort_keys=True)
        out.append(row)
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=1) + "\n"
