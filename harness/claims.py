"""What a speedup may claim: faster, slower, or no measurable change against the noise floor.

The noise floor of a (suite, model, target, batch) is the baseline timed against a second
session of itself in the same run (the A/A row): its CI, made symmetric about 1.0 (`floor`), is
the band a real change must clear.
A speedup whose CI overlaps that band claims nothing ("no measurable speedup"), and a noisy
measurement claims nothing either, whatever its point estimate. The terminal table, the HTML
report and `harness compare` all word their rows through this one function, so they never
disagree about what a number means.
"""

from __future__ import annotations

import math
from typing import Any

from harness.stats import overlaps
from harness.timing import SAFE_CHUNK, SHORT_CALL_MS

NO_CHANGE = "no measurable speedup"
# no A/A row of the row's (model, target, batch) anywhere in reach: its baseline's timing
# failed, or was never stored. Nothing to tell a real change from the noise by, so no claim.
NO_FLOOR = "no A/A floor"


def band_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("suite"), row.get("model"), row.get("target"), row.get("batch_size"),
            row.get("run_id"))


def floor(lo: float, hi: float) -> tuple[float, float]:
    """The noise floor an A/A CI [lo, hi] sets: the CI made symmetric about 1.0 in log terms,
    [1/m, m] with m = max(hi, 1/lo). A pair of sessions is a random draw that can read a few
    percent either way for the whole pair, beyond its CI (README "Sessions as a random
    effect"): an A/A at [0.979, 0.992] says a cell on its own pair may read 2% high as well as
    low, so the band is [0.979, 1.021], not a band that a cell at 1.00 would clear."""
    m = max(hi, 1.0 / lo)
    return 1.0 / m, m


def aa_bands(rows: list[dict[str, Any]]) -> dict[tuple[Any, ...], tuple[float, float]]:
    """(suite, model, target, batch, run) -> the noise floor of the A/A row measured there."""
    out = {}
    for r in rows:
        if r.get("method") == "baseline" and r.get("speedup_ci_low") is not None:
            out[band_key(r)] = floor(float(r["speedup_ci_low"]), float(r["speedup_ci_high"]))
    return out


def band_for(row: dict[str, Any], bands: dict[tuple[Any, ...], tuple[float, float]]
             ) -> tuple[float, float] | None:
    """The A/A band of the row's own run; else the A/A of the baseline row the store matched
    the row with (`aa_ci_low/high` from `Store.rows()`: the same baseline its accuracy loss is
    taken against, found in the store's whole history, so a newer failed baseline row among
    the latest rows does not leave the row without a floor); else of any run of that
    model/target/batch; else None: never the bare point 1.0, which would let any CI that
    excludes 1.0 claim a change that a session pair alone can make (README "Noise floor")."""
    if band_key(row) in bands:
        return bands[band_key(row)]
    lo, hi = row.get("aa_ci_low"), row.get("aa_ci_high")
    if lo is not None and hi is not None and float(lo) > 0:
        return floor(float(lo), float(hi))
    for k, v in bands.items():
        if k[:4] == band_key(row)[:4]:
            return v
    return None


def claim(row: dict[str, Any], bands: dict[tuple[Any, ...], tuple[float, float]]) -> str:
    """One of: "A/A" (the baseline itself), "noisy", "no CI" (a row from before schema 3),
    NO_FLOOR (no A/A row to judge it by), "faster", "slower", or NO_CHANGE."""
    if row.get("speedup") is None:
        return ""
    if row.get("method") == "baseline":
        return "A/A"
    if row.get("quality") == "noisy":
        return "noisy"
    if row.get("speedup_ci_low") is None:
        return "no CI"
    ci = (float(row["speedup_ci_low"]), float(row["speedup_ci_high"]))
    if not all(math.isfinite(v) and v > 0 for v in ci):
        return "no CI"  # a NaN or non-positive bound (a row built off the store) claims nothing
    band = band_for(row, bands)
    if band is None:
        return NO_FLOOR
    if overlaps(ci, band):
        return NO_CHANGE
    return "faster" if ci[0] > band[1] else "slower"


def fmt_speedup(row: dict[str, Any], unit: bool = True) -> str:
    """`1.93x [1.88, 1.99]` (three significant figures), or `1.93x` for an old row."""
    from harness.reports.table import fmt3, fmt_ci

    if row.get("speedup") is None:
        return ""
    text = f"{fmt3(row['speedup'])}" + ("x" if unit else "")
    if row.get("speedup_ci_low") is not None:
        text += f" {fmt_ci(row['speedup_ci_low'], row['speedup_ci_high'])}"
    return text


def note(row: dict[str, Any], bands: dict[tuple[Any, ...], tuple[float, float]]) -> str:
    """The words shown beside a speedup: the claim, why when noisy, and a caveat when it was
    timed in chunks too short to trust."""
    c = claim(row, bands)
    parts = []
    if c == "noisy":
        parts.append(f"noisy: {row.get('quality_reason') or 'unknown reason'}")
    elif c == "A/A" and row.get("quality") == "noisy":
        parts.append(f"A/A, noisy: {row.get('quality_reason')}")
    elif c:
        parts.append(c)
    caveat = short_chunks(row)
    if caveat:
        parts.append(caveat)
    return "; ".join(parts)


def short_chunks(row: dict[str, Any]) -> str:
    """A caveat for a speedup timed in interleaved chunks of fewer than SAFE_CHUNK calls, each
    shorter than SHORT_CALL_MS, without untimed calls opening the chunks: the first calls after
    a switch are slow, and such chunks read a speedup low (README "Switching bias"). "" when
    none applies, for the baseline's A/A row (the same network on both sides: both read alike)
    and where the row does not say (rows from before the window was stored). A stored row
    carries what it needs: its calls, its rounds and both sides' median calls."""
    if row.get("method") == "baseline":
        return ""
    w = row.get("window") or {}
    rounds, calls = w.get("rounds"), row.get("iterations")
    medians = [m for m in (row.get("latency_p50_ms"), row.get("ref_latency_p50_ms"))
               if m is not None]
    if not rounds or not calls or not medians or w.get("rewarm"):
        return ""
    per, fast = int(calls) // int(rounds), min(medians)
    if per >= SAFE_CHUNK or fast >= SHORT_CALL_MS:
        return ""
    return f"chunks of {per} call{'s' if per > 1 else ''} of {fast:.2g} ms: may read low"
