"""Which interval for an accuracy loss? Coverage and width on simulated paired evaluations.

A model and its baseline are scored on the same N items; each item falls in one cell of the
2x2 table (both right, only the baseline, only the model, neither) with known probabilities,
so the true loss is known. For each scenario this draws the table many times and reports, for
three 95% intervals of the loss, how often they hold the truth (coverage; 95% is the promise)
and their median width in points:

- `paired (Newcombe 10)`: what `harness.accuracy_ci` uses.
- `paired Wald`: the textbook interval from the discordant counts, (b - c)/N +- z se.
- `independent`: Newcombe's interval for two *independent* proportions (the two Wilson
  intervals combined without the correlation), i.e. ignoring that the items are shared.

    python -m harness.benchmarks.accuracy_intervals [--draws 4000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from harness.accuracy_ci import Z95, paired_difference, wilson

# name -> (N items, P(both right), P(baseline only), P(model only)); P(neither) is the rest
SCENARIOS: dict[str, tuple[int, float, float, float]] = {
    "quick, loses 1 point, 5% disagree": (500, 0.87, 0.03, 0.02),
    "quick, nearly identical (0.4% disagree)": (500, 0.898, 0.003, 0.001),
    "quick, int8-like (1% disagree, no loss)": (500, 0.895, 0.005, 0.005),
    "quick, loses 5 points, 13% disagree": (500, 0.81, 0.09, 0.04),
    "smoke, 256 items, loses 1 point": (256, 0.87, 0.03, 0.02),
    "at 99% accuracy, 500 items": (500, 0.985, 0.006, 0.002),
    "full, 10,000 items, loses 0.5 point": (10_000, 0.88, 0.02, 0.015),
}


def wald(b: int, c: int, n: int) -> tuple[float, float]:
    d = (b - c) / n
    se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    return d - Z95 * se, d + Z95 * se


def independent(k1: int, k2: int, n: int) -> tuple[float, float]:
    (l1, u1), (l2, u2) = wilson(k1, n), wilson(k2, n)
    p1, p2 = k1 / n, k2 / n
    return p1 - p2 - math.hypot(p1 - l1, u2 - p2), p1 - p2 + math.hypot(u1 - p1, p2 - l2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"{args.draws} draws per scenario; coverage of the true loss (95% promised) and "
          "median width in points")
    for name, (n, both, first, second) in SCENARIOS.items():
        truth = first - second
        probs = [both, first, second, 1 - both - first - second]
        found: dict[str, list[tuple[float, float]]] = {"paired (Newcombe 10)": [],
                                                      "paired Wald": [], "independent": []}
        for a, b, c, d in rng.multinomial(n, probs, size=args.draws):
            found["paired (Newcombe 10)"].append(paired_difference(a, b, c, d)[1:])
            found["paired Wald"].append(wald(b, c, n))
            found["independent"].append(independent(a + b, a + c, n))
        print(f"{name} (N={n}, true loss {100 * truth:.2f} points):")
        for method, cis in found.items():
            lo, hi = np.array(cis).T
            cover = np.mean((lo <= truth + 1e-12) & (truth - 1e-12 <= hi))
            print(f"  {method:<22} coverage {cover:6.1%}   median width "
                  f"{100 * np.median(hi - lo):5.2f} points")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
