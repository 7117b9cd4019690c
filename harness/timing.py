"""The only place that times anything (MLMark rules).

Warm-up, then `iterations` calls of `Session.run`, each wrapped in `time.perf_counter_ns`.
Latency percentiles come from batch-1 calls; throughput = images / summed call time at batch N.
Because this VM drifts 20-60% between runs, a candidate is always timed *interleaved* with its
reference (the baseline on the same target and batch): rounds alternate A/B, B/A, ... and the
speedup is the ratio of the two, measured in the same minutes. Each round's chunk sizes are kept
with the samples, so `harness.stats` can compare the two sides round by round.

A measurement also records what the machine did meanwhile (`Window`: load average, CPU time
other processes took, steal): the runner re-measures or flags a contended window; nothing here
judges. Reading those counters happens before and after the timed loop, never inside it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.stats import MIN_CI_ROUNDS  # the fewest rounds an early stop may end at


# timed calls per interleaved chunk from which the switching bias (TimingConfig.rewarm) stayed
# within 2% on every network measured; fewer read a speedup low when calls are short
SAFE_CHUNK = 13
# a call this long or longer showed no switching bias at any chunk size (Faster R-CNN at batch
# 1 and ResNet-18 at batch 32, calls of tens of ms; biased: 1-3 ms and 40 us calls)
SHORT_CALL_MS = 10.0
# a call shorter than this is timed on a fresh pair of sessions every round (where the caller
# can open them, `measure_pair`'s `reopen`): a runtime session owns its thread pool, and most
# likely where its worker thread happens to run and wake costs tens of microseconds per call,
# fixed for the session's life (the effect is measured, the mechanism is not). Measured (`python -m harness.benchmarks.sessions`, 2 threads, 30 trials of
# 16 rounds, each on fresh sessions): LeNet-300-100 at batch 1 on ORT (52 us calls) against
# itself pruned by L1 0.25 read 1.23-3.03x on one session pair for all rounds, and 57% of the
# CIs held the trials' median (A/A 77%); on a fresh pair every round 1.27-1.54x, 90% (A/A
# 100%). OpenVINO, same calls: 83% -> 97% (A/A 80% -> 100%). Calls of 153 us and more
# (LeNet-5 on either runtime, LeNet-300-100 at batch 64, ResNet-56 at 2.6 ms) showed no such
# effect: their one-pair CIs held 95-100%.
REOPEN_BELOW_MS = 0.1


# calls per round are sized for this many times `min_seconds` (`calls_per_round`); a pair
# still short of it after its rounds runs more rounds, two at a time (`measure_pair`)
MIN_SECONDS_MARGIN = 1.1


@dataclass(frozen=True)
class TimingConfig:
    iterations: int = 1024  # MLMark: >= 1024 for a scored run
    warmup: int = 32
    rounds: int = 16  # interleaving rounds: the paired estimate's CI resamples these
    # optional cap on one interleaved measurement (both sessions), estimated from the warm-up;
    # quick profiles use it so big batches do not dominate the sweep. A scored (full) run
    # leaves it unset: `iterations` calls, always.
    max_seconds: float | None = None
    # optional floor on each session's timed seconds (MLPerf style: a minimum duration as well
    # as a minimum count); more calls per round are made until it is met
    min_seconds: float | None = None
    # optional early stop (MLPerf LoadGen stops early once its statistic is settled): after
    # `min_rounds` rounds, and after each further pair of rounds, the caller's `enough` check
    # (quality.py: is the speedup's CI half-width within `precision`?) may end the pair before
    # `rounds`. Unset: always `rounds` rounds. A row that stopped early has fewer than 16
    # rounds and is unscored (quality.MIN_SCORED_ROUNDS), so only unscored profiles use it.
    precision: float | None = None
    min_rounds: int | None = None
    # untimed calls at the start of every chunk: the first calls of a session after the other
    # one ran are slow (caches hold the other network, its threads slept), at batch 1 the
    # first up to twice a warm call, relatively more for the faster network; timed, they pull
    # a speedup toward 1, the more the smaller the chunk. Measured (benchmarks/switching.py,
    # ResNet-18 b=1, true 4.14x): 1/4/13-call chunks read -28/-17/-2%; rewarm = 4 removes it.
    # Profiles keep >= 13 calls per chunk at batch 1 instead (rewarm would change every key).
    rewarm: int = 0
    # a pair whose faster side's warm-up call is shorter than this many ms runs every round
    # on freshly opened sessions, each warmed with `warmup` untimed calls (REOPEN_BELOW_MS:
    # the session a runtime happens to open is a random effect the rounds alone cannot show)
    reopen_below_ms: float = REOPEN_BELOW_MS

    def reopens(self, call_s: float) -> bool:
        """Is a call of `call_s` seconds short enough to run every round on fresh sessions?"""
        return call_s * 1e3 < self.reopen_below_ms

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.warmup < 0 or self.rounds < 1 or self.rewarm < 0:
            raise ValueError("iterations >= 1, warmup >= 0, rounds >= 1, rewarm >= 0")
        if self.rounds % 2:  # A,B / B,A: an odd count lets one side go first once more
            raise ValueError(f"rounds must be even (each side goes first, and follows the "
                             f"other, in half of them), not {self.rounds}")
        if self.reopen_below_ms < 0:
            raise ValueError("reopen_below_ms must be >= 0")
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("max_seconds must be > 0")
        if self.min_seconds is not None and self.min_seconds < 0:
            raise ValueError("min_seconds must be >= 0")
        if self.precision is not None and not 0 < self.precision < 1:
            raise ValueError("precision is a CI half-width as a fraction, in (0, 1)")
        if self.min_rounds is not None and not MIN_CI_ROUNDS <= self.min_rounds <= self.rounds:
            raise ValueError(f"min_rounds must be between {MIN_CI_ROUNDS} and rounds "
                             f"({self.rounds}): fewer rounds give no 95% CI to stop on")

    @property
    def first_check(self) -> int | None:
        """The round after which an early stop is first considered: `min_rounds` raised to an
        even count (a pair stops only where each side has gone first equally often); None
        without `precision`, or where no such count comes before `rounds`."""
        if self.precision is None:
            return None
        first = self.min_rounds if self.min_rounds is not None else self.rounds
        first += first % 2
        return first if first < self.rounds else None


@dataclass(frozen=True)
class Timing:
    """Per-call durations at one batch size, summarised."""

    batch: int
    samples_ns: tuple[int, ...]
    rounds: tuple[int, ...] = ()  # calls per interleaved round, in order (sums to len(samples))
    sessions: int = 1  # session pairs the rounds ran on (one per round where reopened)

    def by_round(self) -> list[tuple[int, ...]]:
        """The samples split into their rounds (one round when none were recorded)."""
        sizes = self.rounds or (len(self.samples_ns),)
        out, i = [], 0
        for n in sizes:
            out.append(self.samples_ns[i: i + n])
            i += n
        return out

    @property
    def seconds(self) -> float:
        return sum(self.samples_ns) / 1e9

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


def first_call_ns(session: Any, x: np.ndarray) -> int:
    """The first inference of a fresh session, timed apart (lazy allocation and kernel
    selection happen here, as benchmark_app reports): it never enters the timed samples."""
    t0 = time.perf_counter_ns()
    session.run(x)
    return time.perf_counter_ns() - t0


@dataclass
class Window:
    """What the machine did while a measurement ran: read before and after, never inside."""

    wall_s: float = 0.0
    loadavg_1m: float = 0.0  # at the end of the window
    other_cpu: float = 0.0  # cores' worth of CPU time taken by other processes meanwhile
    steal: float = 0.0  # cores' worth of CPU time the hypervisor took (0 where unreadable)
    cores: int = 1
    # cores' worth the two readings can misread over this window: the kernel counts CPU time
    # in clock ticks (10 ms at USER_HZ 100), each active CPU's counter and this process's user
    # and system times rounded apiece, so a 5 ms window on an idle 2-core machine read "other
    # processes used 2 cores" in 36% of 200 tries; 0 where nothing was read
    resolution: float = 0.0
    _start: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0), repr=False)

    @staticmethod
    def _counters() -> tuple[float, float, float, float]:
        import psutil

        t = psutil.cpu_times()
        busy = t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) \
            + getattr(t, "softirq", 0.0)
        own = os.times()
        return time.perf_counter(), busy, own.user + own.system, getattr(t, "steal", 0.0)

    def __enter__(self) -> Window:
        self._start = self._counters()
        self.cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        return self

    def __exit__(self, *exc: object) -> None:
        t1, busy1, own1, steal1 = self._counters()
        t0, busy0, own0, steal0 = self._start
        self.wall_s = max(t1 - t0, 1e-9)
        self.other_cpu = max(0.0, (busy1 - busy0) - (own1 - own0)) / self.wall_s
        self.steal = max(0.0, steal1 - steal0) / self.wall_s
        self.resolution = MISREAD_TICKS / _TICKS_PER_S / self.wall_s
        self.loadavg_1m = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0

    def others_beyond_doubt(self) -> float:
        """Cores' worth other processes took beyond what the tick counters can misread: what
        a busy verdict may rest on (0 over a window too short to tell)."""
        return max(0.0, self.other_cpu - self.resolution)

    def steal_beyond_doubt(self) -> float:
        return max(0.0, self.steal - self.resolution)

    def as_dict(self) -> dict[str, float]:
        return {"wall_s": round(self.wall_s, 3), "loadavg_1m": round(self.loadavg_1m, 2),
                "other_cpu": round(self.other_cpu, 3), "steal": round(self.steal, 3),
                "resolution": round(self.resolution, 3), "cores": self.cores}


_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# The most an idle machine misread: 3,000 windows of 2-50 ms (this process busy or asleep) on
# the 2-core VM read at most 2 ticks of "other" CPU time (p99 1 tick; 4 read a little more,
# the machine's own housekeeping). The worst case of the rounding is larger (one tick per
# active CPU plus two for this process) and was never seen; the window check must still see a
# neighbour on the 30-40 ms windows of a LeNet sweep, which the worst case hid (two hogs: 2
# of 56 rows stored clean with 1.44-1.47 cores taken against a 1.18-core worst case).
MISREAD_TICKS = 2


def measure(session: Any, x: np.ndarray, cfg: TimingConfig) -> Timing:
    """Time one session alone."""
    _calls(session, x, cfg.warmup, [])
    samples: list[int] = []
    _calls(session, x, cfg.iterations, samples)
    return Timing(int(x.shape[0]), tuple(samples))


def calls_per_round(cfg: TimingConfig, fast_s: float, pair_s: float) -> int:
    """Timed calls per side in each round: `iterations / rounds`, raised until the faster side
    (one call: `fast_s`) runs `min_seconds`, lowered so a round of both sides (one call each:
    `pair_s`) with its re-warm calls fits `max_seconds`; at least one. `harness plan` costs a
    measurement with this same rule."""
    per = max(1, -(-cfg.iterations // cfg.rounds))
    if cfg.min_seconds:  # the faster side must reach it too, with a margin: sized exactly,
        # timed calls a little faster than the warm-up's left half of the rows short of it
        per = max(per, int(np.ceil(MIN_SECONDS_MARGIN * cfg.min_seconds / cfg.rounds
                                   / max(fast_s, 1e-9))))
    if cfg.max_seconds is not None:  # the untimed re-warm calls count against the cap too
        per = max(1, min(per, int(cfg.max_seconds / cfg.rounds / max(pair_s, 1e-9))
                         - cfg.rewarm))
    return per


def measure_pair(
    candidate: Any, reference: Any, x: np.ndarray, cfg: TimingConfig,
    enough: Callable[[Timing, Timing], bool] | None = None,
    reopen: Callable[[], tuple[Any, Any]] | None = None,
) -> tuple[Timing, Timing]:
    """Time candidate and reference interleaved: warm both, then alternate in `rounds` chunks
    (A,B / B,A / ...), each chunk after `rewarm` untimed calls. The reference is warmed
    first, so that in every round the first chunk follows calls of its own session and the
    second chunk follows the other's (whose first calls are slow: benchmarks/switching.py);
    over an even count of rounds each side is second equally often. Calls per round:
    `iterations / rounds`, raised until the faster side has run `min_seconds` (from the
    warm-up's medians, with MIN_SECONDS_MARGIN; a pair whose faster side is still short of it
    after `rounds` runs two more rounds at a time, up to twice `rounds`), lowered so a round
    fits `max_seconds` (from the fastest warm-up calls); at least one call each. With `cfg.precision`,
    `enough(candidate, reference)` is asked after `min_rounds` rounds and after every second
    round from there (an even count, so each side went first equally often); True ends the
    pair there. The check runs between rounds, never inside one.

    `reopen` opens a fresh (candidate, reference) pair. Given one, and calls shorter than
    `cfg.reopen_below_ms`, every round after the first runs on a new pair, each session
    warmed with `warmup` untimed calls just before its round (the round's second side first,
    so the first side's chunk follows its own calls, as in the A,B / B,A order). Each round is
    then an independent draw of the sessions as well as of the moment, and the CI over rounds
    holds what a session adds (REOPEN_BELOW_MS). Opening and warming are never timed."""
    wa: list[int] = []
    wb: list[int] = []
    _calls(reference, x, max(1, cfg.warmup), wb)
    _calls(candidate, x, max(1, cfg.warmup), wa)  # round 1 opens with the candidate's chunk
    a: list[int] = []
    b: list[int] = []
    fast_s = min(float(np.median(wa)), float(np.median(wb))) / 1e9
    per = calls_per_round(cfg, fast_s, (min(wa) + min(wb)) / 1e9)
    fresh = reopen is not None and cfg.reopens(fast_s)
    n = int(x.shape[0])
    first_check = cfg.first_check if enough is not None else None
    done = 0
    rounds = cfg.rounds
    r = 0
    while r < rounds:
        if fresh and r > 0:
            assert reopen is not None
            candidate, reference = reopen()
        first, second = ((candidate, a), (reference, b)) if r % 2 == 0 else ((reference, b), (candidate, a))
        if fresh and r > 0:
            _calls(second[0], x, max(1, cfg.warmup), [])
            _calls(first[0], x, max(1, cfg.warmup), [])
        _calls(first[0], x, cfg.rewarm, [])
        _calls(first[0], x, per, first[1])
        _calls(second[0], x, cfg.rewarm, [])
        _calls(second[0], x, per, second[1])
        done = r = r + 1
        if (first_check is not None and first_check <= done < cfg.rounds and done % 2 == 0
                and enough is not None
                and enough(Timing(n, tuple(a), (per,) * done), Timing(n, tuple(b), (per,) * done))):
            break
        if (done == rounds and cfg.min_seconds and rounds < 2 * cfg.rounds
                and min(sum(a), sum(b)) / 1e9 < cfg.min_seconds):
            rounds += 2  # the floor is not met yet: two more rounds, B,A / A,B stay balanced
    sizes = (per,) * done
    pairs = done if fresh else 1
    return Timing(n, tuple(a), sizes, pairs), Timing(n, tuple(b), sizes, pairs)
