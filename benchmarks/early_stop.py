"""What would an earlier or looser early stop have saved? Replayed on a store's real pairs.

The timing early stop (`TimingConfig.precision`, `min_rounds`) ends an interleaved pair once
its speedup's CI half-width is within `precision`, checked after `min_rounds` rounds and every
second round after. This replays that rule on stored pairs that ran all their rounds (e.g. a
sweep with the early stop off: `python -m harness.benchmarks.steps --profile quick --precision 0
--keep DIR`), so the saving and its risk come from this machine's own samples: the timed
seconds each rule would have spent, where the pairs would have stopped, and how often the
stopped pair's CI still holds the estimate of all the rounds.

    python -m harness.benchmarks.early_stop DIR/r.db
    python -m harness.benchmarks.early_stop DIR/r.db --precision 0.03 --min-rounds 4 8 12
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("--precision", type=float, nargs="+", default=[0.02, 0.03])
    ap.add_argument("--min-rounds", type=int, nargs="+", default=[4, 6, 8, 10, 12, 16])
    args = ap.parse_args(argv)
    if not args.store.is_file():
        ap.error(f"{args.store}: no such store")

    from harness import stats
    from harness.store import Store
    from harness.timing import Timing

    sides: dict[tuple[str, int], dict[str, list[tuple[int, ...]]]] = defaultdict(dict)
    for s in Store(args.store, readonly=True).samples():
        stored = Timing(s["batch_size"], tuple(s["samples_ns"]), tuple(s["rounds"]))
        sides[(s["cell_key"], s["batch_size"])][s["side"]] = stored.by_round()
    pairs = [(b, d["candidate"], d["reference"]) for (_, b), d in sides.items()
             if len(d) == 2 and len(d["candidate"]) >= 16]
    if not pairs:
        print(f"{args.store}: no pair ran 16 rounds or more (was the early stop on?)")
        return 1
    total = {b: 0.0 for b, _, _ in pairs}
    for b, c, r in pairs:
        total[b] += _seconds(c) + _seconds(r)
    print(f"{len(pairs)} stored pairs of {len(pairs[0][1])}+ rounds; timed seconds: "
          + ", ".join(f"b={b} {s:.1f} s" for b, s in sorted(total.items())))
    for precision in args.precision:
        print(f"  precision +-{precision:.0%}")
        for first in args.min_rounds:
            spent: dict[int, float] = defaultdict(float)
            stops: Counter[int] = Counter()
            held = 0
            for b, c, r in pairs:
                n = len(c)
                full = stats.speedup(c, r)
                stop = next((k for k in range(first, n, 2)
                             if stats.speedup(c[:k], r[:k]).rel_width <= precision), n)
                early = stats.speedup(c[:stop], r[:stop])
                held += early.ci_low <= full.value <= early.ci_high
                stops[stop] += 1
                spent[b] += _seconds(c[:stop]) + _seconds(r[:stop])
            used = sum(spent.values())
            print(f"    min_rounds {first:>2}: {used:6.1f} s of {sum(total.values()):.1f} "
                  f"({used / sum(total.values()):.0%}; "
                  + ", ".join(f"b={b} {spent[b]:.1f}" for b in sorted(spent))
                  + f"); stopped at {dict(sorted(stops.items()))}; "
                  f"CI holds the all-rounds value {held}/{len(pairs)}")
    return 0


def _seconds(rounds: list[tuple[int, ...]]) -> float:
    return sum(sum(r) for r in rounds) / 1e9


if __name__ == "__main__":
    raise SystemExit(main())
