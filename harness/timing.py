"""The only place that times anything (MLMark rules).

Warm-up, then `iterations` calls of `Session.run`, each wrapped in `time.perf_counter_ns`.
Latency percentiles come from batch-1 calls; throughput = images / summed call time at batch N.
Because this VM drifts 20-60% between runs, a candidate is always timed *interleaved* with its
reference (the baseline on the same target and batch): rounds alternate A/B, B/A, ... and the
speedup is the ratio of the two, measured in the same minutes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TimingConfig:
    iterations: int = 1024  # MLMark: >= 1024 for a scored run
    warmup: int = 32
    rounds: int = 4  # interleaving rounds between candidate and reference
    # optional cap on one interleaved measurement (both sessions), estimated from the warm-up;
    # quick profiles use it so big batches do not dominate the sweep. A scored (full) run
    # leaves it unset: `iterations` calls, always.
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.warmup < 0 or self.rounds < 1:
            raise ValueError("iterations >= 1, warmup >= 0, rounds >= 1")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("max_seconds must be > 0")


@dataclass(frozen=True)
class Timing:
    """Per-call durations at one batch size, summarised."""

    batch: int
    samples_ns: tuple[int, ...]

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(np.asarray(self.samples_ns), q)) / 1e6

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def throughput_ips(self) -> float:
        return self.batch * len(self.samples_ns) / (sum(self.samples_ns) / 1e9)

    def summary(self) -> dict[str, float]:
        return {
            "latency_p50_ms": sig3(self.percentile_ms(50)),
            "latency_p90_ms": sig3(self.percentile_ms(90)),
            "latency_p95_ms": sig3(self.percentile_ms(95)),
            "latency_p99_ms": sig3(self.percentile_ms(99)),
            "throughput_ips": sig3(self.throughput_ips),
            "iterations": len(self.samples_ns),
        }


def sig3(x: float | None) -> float | None:
    """Round to three significant figures (MLMark reporting rule)."""
    if x is None or x == 0 or not np.isfinite(x):
        return x
    return float(f"{x:.3g}")


def _calls(session: Any, x: np.ndarray, n: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    run = session.run
    for _ in range(n):
        t0 = clock()
        run(x)
        out.append(clock() - t0)


def measure(session: Any, x: np.ndarray, cfg: TimingConfig) -> Timing:
    """Time one session alone."""
    _calls(session, x, cfg.warmup, [])
    samples: list[int] = []
    _calls(session, x, cfg.iterations, samples)
    return Timing(int(x.shape[0]), tuple(samples))


def measure_pair(
    candidate: Any, reference: Any, x: np.ndarray, cfg: TimingConfig
) -> tuple[Timing, Timing]:
    """Time candidate and reference interleaved: warm both, then alternate in `rounds` chunks."""
    wa: list[int] = []
    wb: list[int] = []
    _calls(candidate, x, max(1, cfg.warmup), wa)
    _calls(reference, x, max(1, cfg.warmup), wb)
    a: list[int] = []
    b: list[int] = []
    per = max(1, -(-cfg.iterations // cfg.rounds))
    if cfg.max_seconds is not None:
        pair_s = (min(wa) + min(wb)) / 1e9
        per = max(2, min(per, int(cfg.max_seconds / cfg.rounds / pair_s)))
    for r in range(cfg.rounds):
        first, second = ((candidate, a), (reference, b)) if r % 2 == 0 else ((reference, b), (candidate, a))
        _calls(first[0], x, per, first[1])
        _calls(second[0], x, per, second[1])
    n = int(x.shape[0])
    return Timing(n, tuple(a)), Timing(n, tuple(b))
