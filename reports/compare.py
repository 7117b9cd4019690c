"""`harness compare RUN_A RUN_B`: per matching cell, B's latency and throughput as ratios of
A's, and the top-1 difference; a warning for every machine or runtime fact that differs. The
runs may come from two stores (`--store-b`: results made on another machine).

The top-1 difference carries its paired 95% interval where both runs kept which items their
runtime got right (store schema 6, `harness.accuracy_ci`): the same cell scored on the same
items twice, so only the items on which the runs disagree count; `top1_change` is higher /
lower / same by whether that interval excludes 0.

asv style, each pair gets a word with its evidence: `change` is faster / slower / same from the
95% CI of A's time per call over B's (bootstrapped over rounds of the raw samples; "same"
unless the whole CI is beyond +-5%), and `speedup_change` compares the two runs' speedups over
their own baselines (each measured interleaved within its run, so drift between the runs
cancels): "same" when their CIs overlap, "noisy" when either measurement is. Each speedup is
worded with its claim against its run's noise floor (`harness.claims`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from harness import accuracy_ci, stats
from harness.claims import aa_bands, claim, fmt_speedup, short_chunks
from harness.errors import unknown
from harness.reports.table import fmt_ci, method_label
from harness.store import Store
from harness.timing import REOPEN_BELOW_MS, SAFE_CHUNK, SHORT_CALL_MS

MACHINE_KEYS = ("cpu", "arch", "isa", "cores_physical", "cores_logical", "memory_gib", "os")


def _key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r["suite"], r["model"], r["method"], json.dumps(r["method_config"], sort_keys=True),
            r["target"], r["batch_size"])


def compare(store: Store, run_a: str, run_b: str, store_b: Store | None = None
            ) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows, warnings). Rows pair the ok measurements of both runs with the same cell.
    `store_b`: the store holding `run_b` when it is not `store` (another machine's results:
    the machine warnings below are then the point)."""
    store_b = store if store_b is None else store_b
    runs_a = {r["run_id"]: r for r in store.runs()}
    runs_b = runs_a if store_b is store else {r["run_id"]: r for r in store_b.runs()}
    for run, runs, kind in ((run_a, runs_a, "run"),
                            (run_b, runs_b, "run" if store_b is store else "--store-b run")):
        if run not in runs:
            raise unknown(kind, run, runs)
    warnings = []
    ma, mb = runs_a[run_a]["machine"] or {}, runs_b[run_b]["machine"] or {}
    for k in MACHINE_KEYS:
        if ma.get(k) != mb.get(k):
            warnings.append(f"machine {k} differs: {ma.get(k)} vs {mb.get(k)}")
    va, vb = runs_a[run_a]["versions"] or {}, runs_b[run_b]["versions"] or {}
    for k in sorted(set(va) | set(vb)):
        if va.get(k) != vb.get(k):
            warnings.append(f"{k} version differs: {va.get(k)} vs {vb.get(k)}")
    # with each cell's per-item results, which the top-1 difference pairs item by item
    a = {_key(r): r for r in store.rows(run_id=run_a, keep_items=True) if r["status"] == "ok"}
    b = {_key(r): r for r in store_b.rows(run_id=run_b, keep_items=True) if r["status"] == "ok"}
    samples = {(s["cell_key"], s["run_id"], s["batch_size"]): s
               for st, run in ((store, run_a), (store_b, run_b)) for s in st.samples(run_id=run)
               if s["side"] == "candidate"}
    bands = aa_bands([*a.values(), *b.values()])  # each run's own A/A rows first
    rows = []
    short = 0  # speedups timed in chunks that may read low (each row of either run)
    reopened = 0  # pairs timed one on a single session pair, the other on fresh pairs
    for k in sorted(set(a) & set(b), key=str):
        ra, rb = a[k], b[k]
        sa = samples.get((ra["cell_key"], run_a, ra["batch_size"]))
        sb = samples.get((rb["cell_key"], run_b, rb["batch_size"]))
        change, ci = _change(sa, sb)
        low_a, low_b = bool(short_chunks(ra)), bool(short_chunks(rb))
        short += low_a + low_b
        reopened += (_sessions(ra) > 1) != (_sessions(rb) > 1)
        said_a, said_b = claim(ra, bands), claim(rb, bands)
        rows.append({
            "model": ra["model"], "method": method_label(ra), "target": ra["target"],
            "batch_size": ra["batch_size"],
            "latency_p50_a": ra["latency_p50_ms"], "latency_p50_b": rb["latency_p50_ms"],
            "latency_ratio": _ratio(rb["latency_p50_ms"], ra["latency_p50_ms"]),
            "throughput_a": ra["throughput_ips"], "throughput_b": rb["throughput_ips"],
            "throughput_ratio": _ratio(rb["throughput_ips"], ra["throughput_ips"]),
            "top1_diff_points": (None if ra["top1_target"] is None or rb["top1_target"] is None
                                 else round(100 * (rb["top1_target"] - ra["top1_target"]), 3)),
            **_top1_change(ra.get("items_correct"), rb.get("items_correct")),
            "change": change, "time_ratio_ci": ci,
            "speedup_a": _worded(ra, said_a) + (" *" if low_a else ""),
            "speedup_b": _worded(rb, said_b) + (" *" if low_b else ""),
            "speedup_change": _speedup_change(ra, rb, said_a, said_b),
        })
    split = sum(1 for k in set(a) & set(b) if _node(a[k]) != _node(b[k]))
    if split:
        warnings.append(f"{split} pair(s) were timed on different machines (cells' node): "
                        "their latency and throughput ratios divide numbers from two "
                        "machines, and so do their change and time_ratio_ci (A's time per "
                        "call over B's); their speedups, each measured against its baseline on "
                        "its own node, stay comparable")
    if short:
        warnings.append(f"{short} speedup(s) marked * were timed in chunks of fewer than "
                        f"{SAFE_CHUNK} calls shorter than {SHORT_CALL_MS:g} ms each: they may "
                        "read low, so a speedup_change between runs timed in other chunk "
                        "lengths may come from that (README \"Switching bias\")")
    if reopened:
        warnings.append(f"{reopened} pair(s) were timed on one session pair in one run and on a "
                        "fresh pair every round in the other (window.sessions; measure version "
                        f"4 reopens calls under {REOPEN_BELOW_MS:g} ms): one session pair can "
                        "misread such a speedup 2x, so a speedup_change between them may come "
                        "from that "
                        "(README \"Sessions as a random effect\")")
    only = len(set(a) ^ set(b))
    if only:
        warnings.append(f"{only} measurement(s) exist in only one of the runs and are not compared")
    return rows, warnings


def _sessions(r: dict[str, Any]) -> int:
    """The session pairs a row's rounds ran on (rows without the field: one)."""
    return int((r.get("window") or {}).get("sessions") or 1)


def _node(r: dict[str, Any]) -> tuple[Any, ...]:
    """The machine a cell was timed on (rows from before the node column: unknown, None)."""
    n = r.get("node") or {}
    return (n.get("host"), n.get("cpu")) if n else (None, None)


SAME_WITHIN = 0.05  # asv's default factor is 10%; this VM's paired CIs support 5%


def _rounds(s: dict[str, Any]) -> list[list[int]]:
    out, i = [], 0
    for n in s["rounds"]:
        out.append(s["samples_ns"][i: i + n])
        i += n
    return out


def _change(sa: dict[str, Any] | None, sb: dict[str, Any] | None) -> tuple[str, str]:
    """faster / slower / same for B against A from the CI of A's time over B's; rounds are
    matched by position (both runs interleave the same way), their counts trimmed to match."""
    if sa is None or sb is None:
        return "no samples", ""
    ra, rb = _rounds(sa), _rounds(sb)
    n = min(len(ra), len(rb))
    if n < 2:
        return "no samples", ""
    sp = stats.speedup(rb[:n], ra[:n])  # > 1: B takes less time per call than A
    ci = f"[{sp.ci_low:.3g}, {sp.ci_high:.3g}]"
    if sp.ci_low > 1 + SAME_WITHIN:
        return "faster", ci
    if sp.ci_high < 1 / (1 + SAME_WITHIN):
        return "slower", ci
    return "same", ci


def _worded(r: dict[str, Any], said: str) -> str:
    """A speedup with its CI and `said`, what it may claim against its run's noise floor
    (`harness.claims.claim`, as the table and the report word it)."""
    return fmt_speedup(r) + (f" {said}" if said and said != "no CI" else "")


def _speedup_change(ra: dict[str, Any], rb: dict[str, Any], said_a: str, said_b: str) -> str:
    """higher / lower / same: B's speedup against A's, by their CIs; "noisy" where either
    side's claim is (a noisy CI claims nothing, so no change is read from it)."""
    if "noisy" in (said_a, said_b):
        return "noisy"
    if ra.get("speedup_ci_low") is None or rb.get("speedup_ci_low") is None:
        return "no CI"
    if stats.overlaps((ra["speedup_ci_low"], ra["speedup_ci_high"]),
                      (rb["speedup_ci_low"], rb["speedup_ci_high"])):
        return "same"
    return "higher" if rb["speedup_ci_low"] > ra["speedup_ci_high"] else "lower"


def _top1_change(a: str | None, b: str | None) -> dict[str, str]:
    """`top1_diff_ci` (B minus A, points, paired 95%) and `top1_change` (higher / lower / same)
    from the two runs' per-item results; empty words where either run has none or they were
    scored on different items."""
    va, vb = accuracy_ci.unpack(a), accuracy_ci.unpack(b)
    ci = None if va is None or vb is None else accuracy_ci.loss_ci(va, vb)  # A minus B
    if ci is None:
        return {"top1_diff_ci": "", "top1_change": ""}
    lo, hi = -ci[1], -ci[0]
    word = "higher" if lo > 0 else "lower" if hi < 0 else "same"
    return {"top1_diff_ci": fmt_ci(lo, hi), "top1_change": word}


def _ratio(x: float | None, y: float | None) -> float | None:
    return None if not x or not y else float(f"{x / y:.3g}")


def render_html(rows: list[dict[str, Any]], warnings: list[str], run_a: str, run_b: str,
                path: Path) -> Path:
    env = Environment(loader=PackageLoader("harness.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(env.get_template("compare.html.j2").render(
        rows=rows, warnings=warnings, run_a=run_a, run_b=run_b,
        columns=list(rows[0]) if rows else []))
    return path
