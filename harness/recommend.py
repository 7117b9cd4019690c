"""Which configuration should I ship? One answer under budgets, from the store's rows alone.

`harness recommend` and the report's verdict panel both call `recommend` (or `verdicts`, which
calls it per target and batch size), so the terminal and the page can never disagree about
what a store says.

Why the rules are strict: a speedup is an estimate with a 95% CI measured on a shared machine
(README "What is measured, and how"). A configuration qualifies only on evidence that survives
that uncertainty:

- its measurement is `clean` (a noisy one claims nothing, whatever its point estimate);
- it has a CI at all (rows from before store version 3 have none: reported, never picked);
- the *conservative end* of its CI, `speedup_ci_low`, meets the minimum speedup;
- its accuracy loss (points lost against the baseline on the same target, from the runtime's
  own outputs, as the report's `acc_loss`), size and p50 latency are within their budgets.

The accuracy budget is judged on the loss itself, as MLPerf judges its accuracy targets, but
never silently: the loss carries its paired 95% interval (`harness.accuracy_ci`), and an answer
whose interval reaches past the budget says that the budget is not shown to hold (on 500
evaluation items the interval is a few points wide: a "1-point" choice there is a guess that
only more items can settle). A miss whose interval reaches within the budget says so too.

An unscored measurement (a smoke or quick profile, below the MLMark/MLPerf sample floors) may
qualify, but every answer built on one says "not a scored run". The `fastest` objective picks
only among configurations measurably faster than the baseline (their CI clears the A/A noise
floor, `harness.claims`): "fastest" is no answer when nothing is measurably faster. When no
configuration meets the budgets and the objective, the answer lists the closest misses and what
each one lacks.
"""

from __future__ import annotations

import json
import math
import shlex
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from harness.claims import NO_CHANGE, NO_FLOOR, aa_bands, band_for, claim, short_chunks

OBJECTIVES = ("fastest", "smallest", "most-accurate")
DEFAULT_MAX_ACCURACY_LOSS = 1.0  # points: issue 14's "within 1 point of accuracy"
MISSES = 3  # closest misses listed per model when nothing qualifies
_EPS = 1e-9  # a loss of exactly the budget is within it, whatever float rounding did


@dataclass(frozen=True)
class Budgets:
    """What a configuration must meet to be shipped. `None` = no limit on that axis.

    Accuracy loss is in points of the suite's metric (top-1 %, or mAP@0.5 %) against the
    baseline on the same target; the speedup is compared by the conservative end of its 95%
    CI; size is the exported model file (`size_bytes`, MB = 10^6 bytes); latency is the p50 time
    per call at the batch size asked for.

    `strict_accuracy` judges the accuracy budget by the conservative end of the loss's 95%
    CI too (its high end), as the speedup is judged: a loss is then within the budget only
    when the evaluation items show it is. Off by default, as MLPerf judges its accuracy
    targets on the measured value; a row without an interval (mAP, or stored before store
    version 6) then cannot qualify.
    """

    max_accuracy_loss: float | None = DEFAULT_MAX_ACCURACY_LOSS
    min_speedup: float | None = None
    max_size_mb: float | None = None
    max_latency_ms: float | None = None
    strict_accuracy: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.strict_accuracy, bool):
            raise ValueError(f"strict_accuracy must be true or false, not "
                             f"{self.strict_accuracy!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or f.name == "strict_accuracy":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{f.name} must be a number, not {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name} must be a finite number >= 0, not {value!r}")
        if self.min_speedup is not None and self.min_speedup <= 0:
            raise ValueError(f"min_speedup must be > 0, not {self.min_speedup!r}")

    def describe(self) -> str:
        """The budgets in words, e.g. `accuracy loss <= 1 point, speedup CI low >= 2x`."""
        from harness.reports.table import fmt3

        parts = []
        if self.max_accuracy_loss is not None:
            pts = "point" if self.max_accuracy_loss == 1 else "points"
            what = "accuracy loss CI high" if self.strict_accuracy else "accuracy loss"
            parts.append(f"{what} <= {fmt3(self.max_accuracy_loss)} {pts}")
        if self.min_speedup is not None:
            parts.append(f"speedup CI low >= {fmt3(self.min_speedup)}x")
        if self.max_size_mb is not None:
            parts.append(f"size <= {fmt3(self.max_size_mb)} MB")
        if self.max_latency_ms is not None:
            parts.append(f"p50 latency <= {fmt3(self.max_latency_ms)} ms")
        return ", ".join(parts) or "no budgets"


@dataclass(frozen=True)
class Choice:
    """One measured configuration (a cell at one batch size) as the answer shows it.

    `flags` are caveats of a configuration that qualifies (e.g. "not a scored run: ...");
    `lacks` are the reasons it does not qualify (empty when it does). `row_id` names its row in
    the report's table.
    """

    suite: str
    model: str
    target: str
    batch_size: int
    method: str
    label: str
    config: tuple[tuple[str, Any], ...]
    speedup: float | None
    speedup_ci_low: float | None
    speedup_ci_high: float | None
    acc_loss: float | None
    size_bytes: int | None
    size_compressed_bytes: int | None
    compression_ratio: float | None
    latency_p50_ms: float | None
    claim: str
    quality: str | None
    quality_reason: str
    scored: bool | None
    flags: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    row_id: str = ""
    run_id: str = ""
    # the paired 95% interval of acc_loss (harness.accuracy_ci) and the items it rests on;
    # None for a row without per-item results (stored before schema 6, a detector's mAP)
    acc_loss_ci_low: float | None = None
    acc_loss_ci_high: float | None = None
    eval_items: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["config"] = dict(self.config)
        out["flags"], out["lacks"] = list(self.flags), list(self.lacks)
        return out

    def summary(self) -> str:
        """`l1-filter ratio=0.5: 2.9x [2.8, 3.0], loss 0.4 points, 61.2 kB`."""
        from harness.claims import fmt_speedup
        from harness.reports.table import fmt3

        parts = [fmt_speedup(self._row()) or "no speedup measured"]
        if self.acc_loss is not None:
            parts.append(f"loss {fmt3(self.acc_loss)}{self.loss_ci()} points")
        if self.size_bytes is not None:
            parts.append(fmt_size(self.size_bytes))
        if self.size_compressed_bytes is not None:
            parts.append(f"{fmt_size(self.size_compressed_bytes)} zlib")
        return f"{self.label}: " + ", ".join(parts)

    def loss_ci(self) -> str:
        """` [-0.6, 2.2]` (the loss's 95% interval, points), or "" where there is none."""
        from harness.reports.table import fmt_ci

        ci = fmt_ci(self.acc_loss_ci_low, self.acc_loss_ci_high)
        return f" {ci}" if ci else ""

    def _row(self) -> dict[str, Any]:
        return {"speedup": self.speedup, "speedup_ci_low": self.speedup_ci_low,
                "speedup_ci_high": self.speedup_ci_high}


@dataclass(frozen=True)
class Answer:
    """The answer for one model on one target at one batch size.

    `best` is the pick by `objective` (None when nothing qualifies for it; `why_none` says
    why and `misses` lists the closest misses); `most_compressed` the qualifying model with
    the smallest stored (zlib-compressed) size; `pareto` the accuracy-loss vs speedup front
    of the clean rows (point estimates, baseline included: the front the report draws);
    `no_change` the configurations whose CI overlaps the A/A noise floor; `not_considered`
    the noisy rows and rows without a CI, which never qualify.
    """

    suite: str
    model: str
    target: str
    batch_size: int
    metric: str
    objective: str
    budgets: Budgets
    best: Choice | None
    most_compressed: Choice | None
    pareto: tuple[Choice, ...]
    no_change: tuple[Choice, ...]
    not_considered: tuple[Choice, ...]
    misses: tuple[Choice, ...]
    qualifying: int
    why_none: str = ""
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.best is not None

    def as_dict(self) -> dict[str, Any]:
        def many(cs: Iterable[Choice]) -> list[dict[str, Any]]:
            return [c.as_dict() for c in cs]

        return {"suite": self.suite, "model": self.model, "target": self.target,
                "batch_size": self.batch_size, "metric": self.metric,
                "objective": self.objective, "budgets": asdict(self.budgets),
                "qualifying": self.qualifying,
                "best": self.best.as_dict() if self.best else None,
                "most_compressed": self.most_compressed.as_dict() if self.most_compressed
                else None,
                "pareto": many(self.pareto), "no_measurable_speedup": many(self.no_change),
                "not_considered": many(self.not_considered),
                "closest_misses": many(self.misses), "why_none": self.why_none,
                "notes": list(self.notes)}


def fmt_size(size_bytes: float) -> str:
    """Decimal units at three significant figures: `61.2 kB`, `1.23 MB`."""
    from harness.reports.table import fmt3
    from harness.timing import sig3

    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if (sig3(float(size_bytes)) or 0.0) >= scale:  # 999,600 B reads 1 MB, not 1,000 kB
            return f"{fmt3(size_bytes / scale)} {unit}"
    return f"{fmt3(size_bytes)} B"


def row_id(row: dict[str, Any]) -> str:
    """The id of a row (cell and batch size) in the report's table."""
    return f"{row.get('cell_key')}-{row.get('batch_size')}"


def accuracy_losses(rows: Sequence[dict[str, Any]]) -> dict[int, float | None]:
    """id(row) -> points lost against the baseline the row's model was compressed from, on
    the same target and evaluation items (the runtime's own accuracy on both sides); None
    where either is unknown.

    A store row (schema 5) names that baseline (`baseline_key`) and carries its accuracy
    (`baseline_top1_target`, looked up in the store's whole history): a newer run of another
    profile, device or dataset that re-measured the baseline never becomes the reference. A
    row without a `baseline_key` (stored before schema 5, or built by hand) is compared with
    a baseline row of the same suite, model, target and evaluation items that has none
    either."""
    legacy: dict[tuple[Any, ...], float] = {}
    for r in rows:
        if r.get("method") == "baseline" and r.get("status") == "ok" \
                and r.get("top1_target") is not None and not r.get("baseline_key"):
            legacy[_legacy_key(r)] = float(r["top1_target"])
    out: dict[int, float | None] = {}
    for r in rows:
        ref = r.get("baseline_top1_target") if r.get("baseline_key") else None
        if ref is None:
            ref = legacy.get(_legacy_key(r))
        top1 = r.get("top1_target")
        out[id(r)] = None if ref is None or top1 is None else 100 * (float(ref) - float(top1))
    return out


def _legacy_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("suite"), row.get("model"), row.get("target"), row.get("eval_samples"))


def _config(row: dict[str, Any]) -> dict[str, Any]:
    cfg = row.get("method_config") or {}
    return json.loads(cfg) if isinstance(cfg, str) else dict(cfg)


def _choice(row: dict[str, Any], loss: float | None, bands: dict[Any, Any],
            flags: tuple[str, ...] = (), lacks: tuple[str, ...] = ()) -> Choice:
    from harness.reports.table import method_label

    def num(key: str) -> float | None:
        v = row.get(key)
        return None if v is None else float(v)

    scored = row.get("scored")
    return Choice(
        suite=str(row.get("suite")), model=str(row.get("model")), target=str(row.get("target")),
        batch_size=int(row["batch_size"]), method=str(row.get("method")),
        label=method_label(row), config=tuple(sorted(_config(row).items())),
        speedup=num("speedup"), speedup_ci_low=num("speedup_ci_low"),
        speedup_ci_high=num("speedup_ci_high"), acc_loss=loss,
        size_bytes=None if row.get("size_bytes") is None else int(row["size_bytes"]),
        size_compressed_bytes=None if row.get("size_compressed_bytes") is None
        else int(row["size_compressed_bytes"]),
        compression_ratio=num("compression_ratio"), latency_p50_ms=num("latency_p50_ms"),
        claim=claim(row, bands), quality=row.get("quality"),
        quality_reason=str(row.get("quality_reason") or ""),
        scored=None if scored is None else bool(scored), flags=flags, lacks=lacks,
        row_id=row_id(row), run_id=str(row.get("run_id") or ""),
        acc_loss_ci_low=num("accuracy_loss_ci_low") if loss is not None else None,
        acc_loss_ci_high=num("accuracy_loss_ci_high") if loss is not None else None,
        eval_items=None if row.get("eval_items") is None else int(row["eval_items"]))


def _lacks(row: dict[str, Any], loss: float | None, b: Budgets) -> tuple[list[str], float]:
    """What keeps a row from qualifying under `b`, and how far it is from qualifying (the sum
    of each missed budget's relative shortfall; 1 for a miss that has no size, e.g. noisy)."""
    from harness.reports.table import fmt3, fmt_ci

    lacks: list[str] = []
    gap = 0.0
    lo = row.get("speedup_ci_low")
    if row.get("quality") == "noisy":
        lacks.append(f"noisy: {row.get('quality_reason') or 'unknown reason'}")
        gap += 1
    elif lo is None:
        lacks.append("no CI (a row from before store version 3)")
        gap += 1
    elif row.get("quality") != "clean":
        lacks.append("measurement quality unknown")
        gap += 1
    if b.max_accuracy_loss is not None:
        if loss is None:
            lacks.append("accuracy loss unknown (no accuracy on this target or no baseline)")
            gap += 1
        elif b.strict_accuracy:
            ci = _loss_ci(row)
            if ci is None:
                lacks.append("no accuracy loss CI (mAP has none, nor rows stored before store "
                             "version 6): the strict accuracy budget cannot be shown to hold")
                gap += 1
            elif ci[1] > b.max_accuracy_loss + _EPS:
                lacks.append(f"accuracy loss CI high {fmt3(ci[1])} > "
                             f"{fmt3(b.max_accuracy_loss)} points (loss {fmt3(loss)} "
                             f"{fmt_ci(*ci)})")
                gap += (ci[1] - b.max_accuracy_loss) / max(b.max_accuracy_loss, 1.0)
        elif loss > b.max_accuracy_loss + _EPS:
            ci = _loss_ci(row)
            within = (f" (its 95% CI {fmt_ci(*ci)} reaches within it)"
                      if ci is not None and ci[0] <= b.max_accuracy_loss + _EPS else "")
            lacks.append(f"accuracy loss {fmt3(loss)} > {fmt3(b.max_accuracy_loss)} points"
                         + within)
            gap += (loss - b.max_accuracy_loss) / max(b.max_accuracy_loss, 1.0)
    if b.min_speedup is not None and lo is not None and float(lo) < b.min_speedup:
        lacks.append(f"speedup CI low {fmt3(lo)} < {fmt3(b.min_speedup)}")
        gap += (b.min_speedup - float(lo)) / b.min_speedup
    for budget, key, scale, unit, name in (
        (b.max_size_mb, "size_bytes", 1e6, "MB", "size"),
        (b.max_latency_ms, "latency_p50_ms", 1.0, "ms", "p50 latency"),
    ):
        if budget is None:
            continue
        value = row.get(key)
        if value is None:
            lacks.append(f"{name} unknown")
            gap += 1
        elif float(value) / scale > budget * (1 + _EPS):
            lacks.append(f"{name} {fmt3(float(value) / scale)} {unit} > {fmt3(budget)} {unit}")
            gap += (float(value) / scale - budget) / budget if budget else 1
    return lacks, gap


def _not_faster(row: dict[str, Any], bands: dict[Any, Any]) -> str:
    """Why a clean row is no answer to "fastest": its CI overlaps the A/A band, it is
    slower, or there is no A/A band to judge it by."""
    from harness.reports.table import fmt_ci

    c = claim(row, bands)
    ci = fmt_ci(row["speedup_ci_low"], row["speedup_ci_high"])
    floor_ = band_for(row, bands)
    if floor_ is None:
        return (f"{NO_FLOOR}: CI {ci}, but the baseline has no A/A row to judge it by (its "
                "timing failed or was never stored)")
    band = f"A/A band {fmt_ci(*floor_)}"
    if c == NO_CHANGE:
        return f"no measurable speedup: CI {ci} overlaps the {band}"
    return f"slower than the baseline: CI {ci} below the {band}"


UNSCORED = "not a scored run"  # how an answer's flag for an unscored measurement begins


def _loss_ci(row: dict[str, Any]) -> tuple[float, float] | None:
    lo, hi = row.get("accuracy_loss_ci_low"), row.get("accuracy_loss_ci_high")
    return None if lo is None or hi is None else (float(lo), float(hi))


def _flags(row: dict[str, Any], b: Budgets | None = None, loss: float | None = None
           ) -> tuple[str, ...]:
    """Caveats an answer carries: an unscored measurement, a speedup timed in chunks short
    enough to read low (`harness.claims.short_chunks`), which can reorder close candidates,
    and an accuracy loss within its budget whose 95% interval reaches past it: on a few
    hundred evaluation items a 1-point budget is decided by which items were drawn."""
    from harness.reports.table import fmt3, fmt_ci

    out = []
    ci = _loss_ci(row)
    if (b is not None and b.max_accuracy_loss is not None and not b.strict_accuracy
            and loss is not None and ci is not None and loss <= b.max_accuracy_loss + _EPS
            and ci[1] > b.max_accuracy_loss + _EPS):
        items = f"these {row['eval_items']} items" if row.get("eval_items") else "these items"
        out.append(f"accuracy loss 95% CI {fmt_ci(*ci)} reaches past the "
                   f"{fmt3(b.max_accuracy_loss)}-point budget: not shown to hold on {items}")
    if row.get("scored") in (0, False):
        why = row.get("unscored_reason") or "below the scoring floors"
        out.append(f"{UNSCORED}: {why}")
    caveat = short_chunks(row)
    if caveat:
        out.append(f"speedup timed in {caveat} (README \"Switching bias\")")
    return tuple(out)


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (speedup, accuracy loss) points not dominated: no other point has the
    speedup at least as high and the loss at least as low, one of them strictly. Exact ties
    (equal on both: speedups are stored to three figures) are all kept. Ascending speedup.
    The one rule of the front for `recommend` and the report's plot (`reports.plots.pareto`).
    """
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], points[i][1]))
    keep, best, at = [], math.inf, None
    for i in order:
        speed, loss = points[i]
        if loss < best or (loss == best and speed == at):
            keep.append(i)
            best, at = loss, speed
    return sorted(keep, key=lambda i: points[i][0])


def _pareto(cands: list[tuple[dict[str, Any], float | None]]
            ) -> list[tuple[dict[str, Any], float | None]]:
    """The front (`pareto_front`) of the clean rows with a speedup and a known loss."""
    pts = [(r, float(loss)) for r, loss in cands if r.get("quality") == "clean"
           and r.get("speedup") is not None and loss is not None]
    return [pts[i] for i in pareto_front([(float(r["speedup"]), loss) for r, loss in pts])]


def stored_size(c: Choice) -> int | None:
    """What "most compressed" ranks by: the exported model's zlib-compressed size, where
    both fewer bits (INT8) and zeroed weights (sparsity, which leaves the file's dense size
    unchanged) pay off, as in Deep Compression; the file size when that is unknown."""
    return c.size_compressed_bytes if c.size_compressed_bytes is not None else c.size_bytes


def _smallest_key(c: Choice) -> tuple[float, ...]:
    """The smallest stored size first; then the smaller file, the higher compression ratio,
    the faster conservative speedup."""
    size = stored_size(c)
    return (float(size if size is not None else math.inf),
            float(c.size_bytes if c.size_bytes is not None else math.inf),
            -(c.compression_ratio or 0.0), -(c.speedup_ci_low or 0.0))


def _pick(objective: str, qualifying: list[Choice]) -> Choice | None:
    if objective == "fastest":
        faster = [c for c in qualifying if c.claim == "faster"]
        return max(faster, key=lambda c: (c.speedup_ci_low or 0.0, c.speedup or 0.0,
                                          -(c.acc_loss or 0.0)), default=None)
    if objective == "smallest":
        sized = [c for c in qualifying if stored_size(c) is not None]
        return min(sized, key=_smallest_key, default=None)
    if objective == "most-accurate":
        known = [c for c in qualifying if c.acc_loss is not None]
        return min(known, key=lambda c: (c.acc_loss, -(c.speedup_ci_low or 0.0)),
                   default=None)
    raise ValueError(f"unknown objective {objective!r} (choose from: {', '.join(OBJECTIVES)})")


def recommend(rows: Sequence[dict[str, Any]], target: str, batch_size: int = 1,
              budgets: Budgets | None = None, objective: str = "fastest",
              models: Sequence[str] | None = None) -> list[Answer]:
    """One `Answer` per (suite, model) that has rows on `target` at `batch_size`.

    `rows` are store rows (`Store.rows`): pass every row of the suite, not only the target's,
    so the baselines (accuracy reference and A/A noise floor) are among them. Pure: reads
    nothing but its arguments.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r} (choose from: {', '.join(OBJECTIVES)})")
    b = budgets or Budgets()
    bands = aa_bands(list(rows))
    losses = accuracy_losses(rows)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if (r.get("status") == "ok" and r.get("target") == target
                and r.get("batch_size") == batch_size and r.get("speedup") is not None
                and (models is None or r.get("model") in models)):
            groups.setdefault((str(r.get("suite")), str(r.get("model"))), []).append(r)
    answers = []
    for (suite, model), group in groups.items():
        answers.append(_answer(suite, model, target, batch_size, group, losses, bands, b,
                               objective))
    return answers


def _answer(suite: str, model: str, target: str, batch: int, group: list[dict[str, Any]],
            losses: dict[int, float | None], bands: dict[Any, Any], b: Budgets,
            objective: str) -> Answer:
    qualifying: list[Choice] = []
    failing: list[tuple[int, float, Choice]] = []
    not_considered: list[Choice] = []
    no_change: list[Choice] = []
    compressed = [r for r in group if r.get("method") != "baseline"]
    for r in compressed:
        loss = losses[id(r)]
        lacks, gap = _lacks(r, loss, b)
        if r.get("quality") == "noisy" or r.get("speedup_ci_low") is None:
            not_considered.append(_choice(r, loss, bands, lacks=tuple(lacks)))
        if claim(r, bands) == NO_CHANGE:
            no_change.append(_choice(r, loss, bands, _flags(r, b, loss)))
        if not lacks and objective == "fastest" and claim(r, bands) != "faster":
            # qualifies on its budgets, yet is no answer to "fastest": a miss of that kind
            failing.append((1, 0.0, _choice(r, loss, bands, _flags(r, b, loss),
                                            (_not_faster(r, bands),))))
        if lacks:
            failing.append((len(lacks), gap, _choice(r, loss, bands, lacks=tuple(lacks))))
        else:
            qualifying.append(_choice(r, loss, bands, _flags(r, b, loss)))
    best = _pick(objective, qualifying)
    smallest = _pick("smallest", qualifying)
    why = ""
    misses: tuple[Choice, ...] = ()
    if best is None:
        if not compressed:
            why = "no compressed configuration measured here"
        elif qualifying and objective == "fastest":
            why = (f"{len(qualifying)} within the budgets, none measurably faster than the "
                   "baseline")
        elif qualifying:
            why = f"{len(qualifying)} within the budgets, none with a known value to rank by"
        else:
            why = f"0 of {len(compressed)} configurations meet the budgets"
        failing.sort(key=lambda f: (f[0], f[1], -(f[2].speedup_ci_low or 0.0)))
        misses = tuple(f[2] for f in failing[:MISSES])
    notes = []
    if not_considered:
        noisy = sum(c.quality == "noisy" for c in not_considered)
        old = len(not_considered) - noisy
        if noisy:
            notes.append(f"{noisy} noisy measurement{'s' * (noisy != 1)} not considered")
        if old:
            notes.append(f"{old} row{'s' * (old != 1)} without a CI (store < v3) not "
                         "considered")
    metric = next((str(r["metric"]) for r in group if r.get("metric")), "top1")
    pareto = tuple(_choice(r, loss, bands, _flags(r, b, loss)) for r, loss in
                   _pareto([(r, losses[id(r)]) for r in group]))
    no_change.sort(key=lambda c: -(c.speedup or 0.0))
    return Answer(suite, model, target, batch, metric, objective, b, best, smallest, pareto,
                  tuple(no_change), tuple(not_considered), misses, len(qualifying), why,
                  tuple(notes))


def verdicts(rows: Sequence[dict[str, Any]], budgets: Budgets | None = None
             ) -> list[Answer]:
    """The report's verdict panel: `recommend(objective="fastest")` for every target and
    batch size the rows hold, sorted by target, batch size, model."""
    keys = sorted({(str(r["target"]), int(r["batch_size"])) for r in rows
                   if r.get("status") == "ok" and r.get("batch_size") is not None
                   and r.get("speedup") is not None})
    out: list[Answer] = []
    for target, batch in keys:
        out += sorted(recommend(rows, target, batch, budgets), key=lambda a: (a.suite, a.model))
    return out


def suite_budgets(suite: str, runs: Sequence[dict[str, Any]] = ()) -> tuple[Budgets, str]:
    """The budgets a suite file declares, and where they came from.

    The file is found by the suite's registered name, else by the `--suite` path in the
    command of the newest run that names it (a user's own file). When no file is found, or
    its name or budgets no longer read, the defaults apply and the second value says so. Only
    those two keys are read (`suite.declared_budgets`): a report needs no torch for them.
    """
    from harness import suite as suites
    from harness.errors import UsageError

    candidates: list[str] = [suite]
    for run in reversed(list(runs)):
        arg = _suite_arg(str(run.get("command") or ""))
        if arg and arg not in candidates:
            candidates.append(arg)
    for cand in candidates:
        try:
            if cand != suite and not Path(cand).is_file():
                continue
            name, declared = suites.declared_budgets(cand)
        except (UsageError, OSError):
            continue
        if name == suite:
            if declared is None:
                return Budgets(), "the default: the suite file declares none"
            return declared, "from the suite file"
    return Budgets(), "the default: no suite file found"


def _suite_arg(command: str) -> str | None:
    try:
        words = shlex.split(command)
    except ValueError:
        words = command.split()
    for i, w in enumerate(words):
        if w == "--suite" and i + 1 < len(words):
            return words[i + 1]
        if w.startswith("--suite="):
            return w.partition("=")[2]
    return None


def render_text(answers: Sequence[Answer]) -> str:
    """The terminal answer: per model, the pick, the most compressed, the Pareto set, the
    configurations with no measurable speedup, what was not considered, or the closest
    misses."""
    lines: list[str] = []
    multi_suite = len({a.suite for a in answers}) > 1
    for a in answers:
        metric = "mAP@0.5" if a.metric == "map50" else "top-1"
        where = f"{a.suite}: " if multi_suite else ""
        lines.append(f"{where}{a.model} on {a.target}, batch {a.batch_size} "
                     f"({metric}; {a.budgets.describe()}; objective: {a.objective})")
        if a.best:
            lines.append(f"  {a.objective}: {a.best.summary()}")
            lines += [f"    ! {f}" for f in a.best.flags]
        else:
            lines.append(f"  {a.objective}: nothing qualifies ({a.why_none})")
            if a.misses:
                lines.append("  closest misses:")
                for m in a.misses:
                    lines.append(f"    {m.summary()}")
                    lines.append(f"      lacks: {'; '.join(m.lacks)}")
        if a.most_compressed and a.most_compressed != a.best:
            lines.append(f"  most compressed: {a.most_compressed.summary()}")
            lines += [f"    ! {f}" for f in a.most_compressed.flags]
        if a.pareto:
            lines.append("  Pareto set (accuracy loss vs speedup, clean rows): "
                         + "; ".join(c.summary() for c in a.pareto))
        if a.no_change:
            lines.append("  no measurable speedup: "
                         + "; ".join(c.summary() for c in a.no_change))
        for c in a.not_considered:
            lines.append(f"  not considered: {c.label}: {c.lacks[0]}")
        lines.append("")
    return "\n".join(lines)
