"""Judge the speedup estimators of `harness.stats` on synthetic samples with a known ratio.

Each trial draws interleaved rounds the way `timing.measure_pair` records them: per round a
chunk of candidate calls and a chunk of reference calls, a slow drift both sides of a round
share (this VM: 20-60% between minutes), lognormal per-call noise, and contention that is not
fair to both sides (bursts that hit whole chunks of one side, and preemptions that long calls
suffer more often than short ones). Prints, per scenario and estimator, the median and 95th
percentile of |estimate / truth - 1| and how often the 95% bootstrap CI covers the truth.

    python -m harness.benchmarks.estimators            # 200 trials per scenario, seeded
    python -m harness.benchmarks.estimators --stopping # the early stop of `precision` profiles

`--stopping` judges the early stop (`timing.measure_pair` asks `quality.settled` after
`min_rounds` rounds and every second round after): how often the default estimator's CI covers
the truth when a pair may stop as soon as its CI is within `precision`, against always timing
every round, and how many rounds it took. Stopping on a narrow CI is optional stopping, which
could cost coverage; this measures how much.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from harness.stats import ESTIMATORS, speedup


@dataclass(frozen=True)
class Scenario:
    name: str
    drift: float = 0.0  # sd of the per-round log drift shared by both sides
    noise: float = 0.05  # per-call lognormal sd
    burst_chunks: float = 0.0  # share of reference chunks hit by a burst (one side only)
    burst_factor: float = 10.0
    preempt_long: float = 0.0  # probability a reference (long) call is preempted
    preempt_short: float = 0.0  # probability a candidate (short) call is preempted
    preempt_ns: float = 6e6  # one lost time slice


SCENARIOS = (
    Scenario("quiet"),
    Scenario("drift 40%", drift=0.4),
    Scenario("bursts on 15% of ref chunks", drift=0.2, burst_chunks=0.15),
    Scenario("bursts on 30% of ref chunks", drift=0.2, burst_chunks=0.30),
    Scenario("long calls preempted 30%, short 5%", drift=0.2, preempt_long=0.3,
             preempt_short=0.05),
)


def draw(rng: np.random.Generator, sc: Scenario, ratio: float, rounds: int, per: int,
         ref_ns: float = 2.5e6) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(candidate rounds, reference rounds) with true speedup `ratio` (= ref / cand time)."""
    cand_ns = ref_ns / ratio
    level = np.exp(np.cumsum(rng.normal(0, sc.drift / np.sqrt(rounds), rounds)))
    cand, ref = [], []
    for r in range(rounds):
        c = cand_ns * level[r] * rng.lognormal(0, sc.noise, per)
        b = ref_ns * level[r] * rng.lognormal(0, sc.noise, per)
        if rng.random() < sc.burst_chunks:
            start = rng.integers(0, per)
            b[start:] *= sc.burst_factor
        b += sc.preempt_ns * (rng.random(per) < sc.preempt_long)
        c += sc.preempt_ns * (rng.random(per) < sc.preempt_short)
        cand.append(c.astype(np.int64))
        ref.append(b.astype(np.int64))
    return cand, ref


def judge(trials: int, rounds: int, per: int, ratio: float) -> list[dict[str, object]]:
    out = []
    for sc in SCENARIOS:
        for name in ESTIMATORS:
            errs, cover = [], 0
            for t in range(trials):
                rng = np.random.default_rng(1000 + t)
                cand, ref = draw(rng, sc, ratio, rounds, per)
                s = speedup(cand, ref, name, seed=t, resamples=400)
                errs.append(abs(s.value / ratio - 1))
                cover += s.ci_low <= ratio <= s.ci_high
            out.append({"scenario": sc.name, "estimator": name,
                        "err_median": float(np.median(errs)),
                        "err_p95": float(np.percentile(errs, 95)),
                        "ci_coverage": cover / trials})
    return out


def stopping(trials: int, rounds: int, per: int, ratio: float, min_rounds: int,
             precision: float) -> list[dict[str, object]]:
    """Coverage and rounds used of the early stop, per scenario, against all `rounds`."""
    from harness.quality import settled
    from harness.stats import ESTIMATOR
    from harness.timing import Timing, TimingConfig

    enough = settled(TimingConfig(rounds=rounds, precision=precision, min_rounds=min_rounds),
                     ESTIMATOR)
    assert enough is not None
    out = []
    for sc in SCENARIOS:
        cover_fixed = cover_seq = 0
        used, errs = [], []
        for t in range(trials):
            rng = np.random.default_rng(5000 + t)
            cand, ref = draw(rng, sc, ratio, rounds, per)
            fixed = speedup(cand, ref)
            cover_fixed += fixed.ci_low <= ratio <= fixed.ci_high
            stop = rounds
            for done in range(min_rounds + min_rounds % 2, rounds, 2):  # as measure_pair asks
                ct = Timing(1, tuple(np.concatenate(cand[:done])), (per,) * done)
                rt = Timing(1, tuple(np.concatenate(ref[:done])), (per,) * done)
                if enough(ct, rt):
                    stop = done
                    break
            s = speedup(cand[:stop], ref[:stop])
            cover_seq += s.ci_low <= ratio <= s.ci_high
            used.append(stop)
            errs.append(abs(s.value / ratio - 1))
        out.append({"scenario": sc.name, "fixed": cover_fixed / trials,
                    "early": cover_seq / trials, "rounds": float(np.mean(used)),
                    "err_p95": float(np.percentile(errs, 95))})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=16)
    ap.add_argument("--per-round", type=int, default=32)
    ap.add_argument("--ratio", type=float, default=2.1)
    ap.add_argument("--stopping", action="store_true",
                    help="judge the early stop instead of the estimators")
    ap.add_argument("--min-rounds", type=int, default=12)
    ap.add_argument("--precision", type=float, default=0.02)
    args = ap.parse_args(argv)
    if args.stopping:
        print(f"true speedup {args.ratio}, up to {args.rounds} rounds x {args.per_round} calls "
              f"per side, stop once the CI is within +-{args.precision:.0%} (first asked after "
              f"{args.min_rounds} rounds); {args.trials} seeded trials per scenario")
        print(f"{'scenario':<38} {'covers: all rounds':>18} {'early stop':>10} "
              f"{'rounds used':>11} {'|err| p95':>9}")
        for r in stopping(args.trials, args.rounds, args.per_round, args.ratio,
                          args.min_rounds, args.precision):
            print(f"{r['scenario']:<38} {r['fixed']:>18.1%} {r['early']:>10.1%} "
                  f"{r['rounds']:>11.1f} {r['err_p95']:>9.3%}")
        return 0
    rows = judge(args.trials, args.rounds, args.per_round, args.ratio)
    print(f"true speedup {args.ratio}, {args.rounds} rounds x {args.per_round} calls per side, "
          f"{args.trials} seeded trials per scenario")
    print(f"{'scenario':<38} {'estimator':<28} {'|err| p50':>9} {'|err| p95':>9} "
          f"{'CI covers':>9}")
    for r in rows:
        print(f"{r['scenario']:<38} {r['estimator']:<28} {r['err_median']:>9.3%} "
              f"{r['err_p95']:>9.3%} {r['ci_coverage']:>9.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
