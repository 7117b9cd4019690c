"""The timing protocol: counts, percentiles, interleaving, three significant figures."""

from __future__ import annotations

import numpy as np
import pytest

from harness.timing import Timing, TimingConfig, measure, measure_pair, sig3


class Recorder:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        self.log.append(self.name)
        return [batch]


def test_measure_makes_warmup_plus_iterations_calls() -> None:
    log: list[str] = []
    t = measure(Recorder("a", log), np.zeros((4, 3)), TimingConfig(iterations=10, warmup=3))
    assert len(log) == 13 and len(t.samples_ns) == 10 and t.batch == 4


def test_pair_is_interleaved_in_alternating_rounds() -> None:
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log)
    ta, tb = measure_pair(a, b, np.zeros((1, 3)), TimingConfig(iterations=4, warmup=1, rounds=4))
    assert log == ["b", "a"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(ta.samples_ns) == len(tb.samples_ns) == 4


def test_each_side_follows_the_other_equally_often() -> None:
    """The first calls of a session after the other one ran are slow (benchmarks/switching.py):
    the reference is warmed first, so every round's first chunk follows calls of its own
    session, and over an even count of rounds each side's chunk follows the other's equally
    often (the candidate's did in one more round when it was warmed first)."""
    log: list[str] = []
    measure_pair(Recorder("a", log), Recorder("b", log), np.zeros((1, 3)),
                 TimingConfig(iterations=48, warmup=2, rounds=16))
    assert log[:4] == ["b", "b", "a", "a"] and len(log) == 4 + 32 * 3
    after_other = {"a": 0, "b": 0}
    for start in range(4, len(log), 3):  # the 32 timed chunks of 3 calls
        if log[start - 1] != log[start]:
            after_other[log[start]] += 1
    assert after_other == {"a": 8, "b": 8}


def test_a_switching_penalty_leaves_an_a_a_pair_at_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a simulated clock: sessions of 1000 ns calls (and a reference of 2000 ns), each call
    that follows the other session's 500 ns slower. Two calls per chunk, 16 rounds, so every
    round has one side's chunk cost the switch. With each side paying it in 8 rounds, the A/A
    reads exactly 1.0 and a true 2x the geometric mean of its two kinds of round (what is
    left is the short chunks' switching bias that `rewarm` or 13-call chunks remove). With the
    candidate warmed first (measure version 4) the candidate paid in 9 rounds: 0.894x and
    1.70x."""
    from types import SimpleNamespace

    from harness import stats, timing

    now = [0]
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter_ns=lambda: now[0]))
    last: list[str | None] = [None]

    class Session:
        def __init__(self, name: str, ns: int) -> None:
            self.name, self.ns = name, ns

        def run(self, batch: np.ndarray) -> list[np.ndarray]:
            now[0] += self.ns + (500 if last[0] not in (None, self.name) else 0)
            last[0] = self.name
            return [batch]

    cfg = TimingConfig(iterations=32, warmup=2, rounds=16)
    # the 2x pair's rounds: candidate's chunk switched 2000 / 1250, reference's 2250 / 1000
    for ref_ns, want in ((1000, 1.0), (2000, (2000 / 1250 * 2250 / 1000) ** 0.5)):
        last[0] = None
        ta, tb = measure_pair(Session("a", 1000), Session("b", ref_ns), np.zeros((1, 1)), cfg)
        got = stats.speedup(ta.by_round(), tb.by_round()).value
        assert got == pytest.approx(want, rel=1e-9), (ref_ns, got)


def test_rewarm_calls_open_every_chunk_untimed() -> None:
    """rewarm = 2: each chunk starts with two calls that are not among the samples (the
    session's first calls after the other one ran: benchmarks/switching.py)."""
    log: list[str] = []
    a, b = Recorder("a", log), Recorder("b", log)
    ta, tb = measure_pair(a, b, np.zeros((1, 3)),
                          TimingConfig(iterations=6, warmup=1, rounds=2, rewarm=2))
    assert log == ["b", "a"] + ["a"] * 5 + ["b"] * 5 + ["b"] * 5 + ["a"] * 5
    assert len(ta.samples_ns) == len(tb.samples_ns) == 6 and ta.rounds == (3, 3)
    with pytest.raises(ValueError):
        TimingConfig(rewarm=-1)


def test_rewarm_calls_count_against_max_seconds() -> None:
    """A 1 ms call, 4 rounds, a 0.042 s cap: 5 calls per side per round fit, so 4 timed calls
    follow the one re-warm call (5 without it)."""
    for rewarm, per in ((0, 5), (1, 4)):
        calls: list[str] = []
        cfg = TimingConfig(iterations=1000, warmup=1, rounds=4, max_seconds=0.042, rewarm=rewarm)
        ta, _ = measure_pair(Clock(1_000_000, calls, "a"), Clock(1_000_000, calls, "b"),
                             np.zeros((1, 1)), cfg)
        assert ta.rounds == (per,) * 4, (rewarm, ta.rounds)
        assert len(calls) == 2 + 2 * 4 * (per + rewarm)


def test_percentiles_and_throughput() -> None:
    t = Timing(batch=8, samples_ns=tuple(int(x * 1e6) for x in range(1, 101)))  # 1..100 ms
    assert t.p50_ms == pytest.approx(50.5)
    assert t.percentile_ms(95) == pytest.approx(95.05)
    assert t.throughput_ips == pytest.approx(8 * 100 / 5.05)
    s = t.summary()
    assert s["latency_p99_ms"] == 99.0 and s["iterations"] == 100


def test_sig3() -> None:
    assert sig3(1234.5) == 1230.0 and sig3(0.012345) == 0.0123 and sig3(None) is None


def test_bad_config_rejected() -> None:
    with pytest.raises(ValueError):
        TimingConfig(iterations=0)
    with pytest.raises(ValueError, match="rounds must be even"):
        TimingConfig(rounds=15)


def test_max_seconds_caps_a_slow_pair() -> None:
    import time

    class Slow:
        def run(self, batch: np.ndarray) -> list[np.ndarray]:
            time.sleep(0.01)
            return [batch]

    cfg = TimingConfig(iterations=1000, warmup=1, rounds=2, max_seconds=0.2)
    ta, tb = measure_pair(Slow(), Slow(), np.zeros((1, 1)), cfg)
    assert 2 * 2 <= len(ta.samples_ns) <= 2 * 10 and len(ta.samples_ns) == len(tb.samples_ns)


class Clock:
    """A session whose calls take a set time: `time.perf_counter_ns` is real, so each call
    busy-waits its duration (short enough to keep the test fast)."""

    def __init__(self, ns: int, calls: list[str], name: str) -> None:
        self.ns, self.calls, self.name = ns, calls, name

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        import time

        self.calls.append(self.name)
        end = time.perf_counter_ns() + self.ns
        while time.perf_counter_ns() < end:
            pass
        return [batch]


def test_early_stop_is_asked_only_after_min_rounds_on_even_counts() -> None:
    asked: list[int] = []

    def never(ct: Timing, rt: Timing) -> bool:
        assert len(ct.rounds) == len(rt.rounds) and sum(ct.rounds) == len(ct.samples_ns)
        asked.append(len(ct.rounds))
        return False

    log: list[str] = []
    cfg = TimingConfig(iterations=16, warmup=1, rounds=16, precision=0.02, min_rounds=11)
    ta, _ = measure_pair(Recorder("a", log), Recorder("b", log), np.zeros((1, 1)), cfg, never)
    assert asked == [12, 14] and len(ta.rounds) == 16  # never after the last round
    # what `harness plan` takes for the earliest stop agrees: 11 -> 12; 15 -> no early stop
    assert cfg.first_check == 12
    assert TimingConfig(rounds=16, precision=0.02, min_rounds=15).first_check is None
    assert TimingConfig(rounds=16, precision=0.02).first_check is None


def test_early_stop_ends_the_pair_where_enough_says_so() -> None:
    log: list[str] = []
    cfg = TimingConfig(iterations=32, warmup=1, rounds=16, precision=0.02, min_rounds=12)
    ta, tb = measure_pair(Recorder("a", log), Recorder("b", log), np.zeros((1, 1)), cfg,
                          lambda ct, rt: True)
    assert ta.rounds == tb.rounds == (2,) * 12 and len(ta.samples_ns) == 24
    assert log.count("a") == log.count("b") == 1 + 24  # warm-up + 12 rounds of 2, no more
    # without `precision` the check is never asked, whatever is passed
    full, _ = measure_pair(Recorder("a", []), Recorder("b", []), np.zeros((1, 1)),
                           TimingConfig(iterations=32, warmup=1, rounds=16), lambda c, r: True)
    assert len(full.rounds) == 16


def test_settled_stops_a_steady_pair_and_not_a_scattered_one() -> None:
    from harness.quality import settled
    from harness.stats import ESTIMATOR

    cfg = TimingConfig(rounds=16, precision=0.02, min_rounds=12)
    enough = settled(cfg, ESTIMATOR)
    assert enough is not None and settled(TimingConfig(), ESTIMATOR) is None
    rng = np.random.default_rng(0)

    def sides(spread: float) -> tuple[Timing, Timing]:
        cand = (1e6 * rng.lognormal(0, spread, 12 * 8)).astype(int)
        ref = (2e6 * rng.lognormal(0, spread, 12 * 8)).astype(int)
        return Timing(1, tuple(cand), (8,) * 12), Timing(1, tuple(ref), (8,) * 12)

    assert enough(*sides(0.005))  # 2.0x within +-2% after 12 rounds: stop
    assert not enough(*sides(0.3))  # +-30% per call: keep timing


def test_a_steady_real_pair_stops_early() -> None:
    from harness.quality import settled
    from harness.stats import ESTIMATOR

    cfg = TimingConfig(iterations=64, warmup=1, rounds=16, precision=0.1, min_rounds=12)
    calls: list[str] = []
    fast, slow = Clock(200_000, calls, "fast"), Clock(400_000, calls, "slow")
    ta, tb = measure_pair(fast, slow, np.zeros((1, 1)), cfg, settled(cfg, ESTIMATOR))
    assert len(ta.rounds) < 16  # 2x apart and steady: settled at 12 or 14 rounds
    assert 1.6 < float(np.median(tb.samples_ns)) / float(np.median(ta.samples_ns)) < 2.5


def test_max_seconds_may_leave_one_call_per_round() -> None:
    cfg = TimingConfig(iterations=1000, warmup=1, rounds=4, max_seconds=0.001)
    calls: list[str] = []
    ta, tb = measure_pair(Clock(1_000_000, calls, "a"), Clock(1_000_000, calls, "b"),
                          np.zeros((1, 1)), cfg)
    assert ta.rounds == tb.rounds == (1,) * 4


def test_short_calls_run_each_round_on_freshly_opened_sessions() -> None:
    """With `reopen` and calls under reopen_below_ms, rounds 2.. each open a new pair; each new
    session gets `warmup` untimed calls, the round's second side first, and no call of a
    replaced session is timed again."""
    log: list[str] = []
    opened: list[int] = []

    def reopen() -> tuple[Recorder, Recorder]:
        opened.append(len(opened) + 1)
        k = len(opened)
        return Recorder(f"a{k}", log), Recorder(f"b{k}", log)

    cfg = TimingConfig(iterations=8, warmup=2, rounds=4)
    ta, tb = measure_pair(Recorder("a0", log), Recorder("b0", log), np.zeros((1, 3)), cfg,
                          reopen=reopen)
    assert opened == [1, 2, 3]
    assert log == (["b0"] * 2 + ["a0"] * 2 + ["a0"] * 2 + ["b0"] * 2  # warm-up, round 1
                   + ["a1"] * 2 + ["b1"] * 2 + ["b1"] * 2 + ["a1"] * 2  # B,A: A warmed first
                   + ["b2"] * 2 + ["a2"] * 2 + ["a2"] * 2 + ["b2"] * 2
                   + ["a3"] * 2 + ["b3"] * 2 + ["b3"] * 2 + ["a3"] * 2)
    assert ta.sessions == tb.sessions == 4 and ta.rounds == (2,) * 4
    # calls of 2 ms keep the pair they started with; so does a zero threshold
    long: list[str] = []
    ta, _ = measure_pair(Clock(2_000_000, long, "a"), Clock(2_000_000, long, "b"),
                         np.zeros((1, 1)), TimingConfig(iterations=4, warmup=1, rounds=2),
                         reopen=reopen)
    assert len(opened) == 3 and ta.sessions == 1
    ta, _ = measure_pair(Recorder("a", []), Recorder("b", []), np.zeros((1, 1)),
                         TimingConfig(iterations=4, warmup=1, rounds=2, reopen_below_ms=0),
                         reopen=reopen)
    assert len(opened) == 3 and ta.sessions == 1
    with pytest.raises(ValueError):
        TimingConfig(reopen_below_ms=-1)


def test_a_session_drawn_fast_or_slow_enters_the_ci_only_when_sessions_are_reopened() -> None:
    """A runtime session's speed can be set for its life (which core its worker thread wakes
    on): here each session is drawn 100 us or 250 us, the same network on both sides, so the
    truth is 1.0x. One pair for all rounds reads the one draw, 2.5x with a tight CI that
    excludes 1.0; fresh pairs per round read 1.0x with 1.0 inside the CI."""
    from harness.stats import speedup

    rng = np.random.default_rng(3)
    calls: list[str] = []

    def drawn(name: str) -> Clock:
        return Clock(int(rng.choice([100_000, 250_000])), calls, name)

    # calls of 100-250 us: a threshold above them (the default, 0.1 ms, is below)
    cfg = TimingConfig(iterations=48, warmup=1, rounds=16, reopen_below_ms=1.0)
    while True:  # a first pair that drew differently, the case one pair cannot see
        a, b = drawn("a"), drawn("b")
        if a.ns != b.ns:
            break
    ta, tb = measure_pair(a, b, np.zeros((1, 1)), cfg)
    one = speedup(ta.by_round(), tb.by_round())
    assert not one.ci_low <= 1.0 <= one.ci_high and ta.sessions == 1
    assert abs(np.log(one.value)) > np.log(2.0)
    ta, tb = measure_pair(a, b, np.zeros((1, 1)), cfg,
                          reopen=lambda: (drawn("a"), drawn("b")))
    fresh = speedup(ta.by_round(), tb.by_round())
    assert fresh.ci_low <= 1.0 <= fresh.ci_high and ta.sessions == 16, fresh


@pytest.mark.slow
def test_a_suites_rewarm_reaches_the_timed_pairs_and_their_rows(tmp_path, data_dir, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """`timing.rewarm` in a suite: the runner's pairs make the untimed calls, the stored row
    says so, and its note then carries no short-chunk caveat (3 calls per chunk here)."""
    import shutil

    from conftest import tiny_suite
    from harness import suite as suites
    from harness import timing
    from harness.claims import aa_bands, note
    from harness.runner import RunOptions, Runner
    from harness.store import Store

    shutil.copytree(data_dir / "MNIST", tmp_path / "data" / "MNIST")
    path = tiny_suite(tmp_path, methods="")
    # warmup 5: the median of 5 warm-up calls is what the reopen rule reads (1 call can be slow)
    # 2 rounds of 3 calls (rows of 2 rounds are stored noisy: this test counts calls only)
    path.write_text(path.read_text().replace("threads = 1", "threads = 1, rewarm = 3", 1)
                    .replace("warmup = 1,", "warmup = 5,", 1).replace("rounds = 6,", "rounds = 2,", 1))
    seen: list[int] = []
    real = timing._calls

    def counting(session, x, n, out):  # type: ignore[no-untyped-def]
        seen.append(n)
        return real(session, x, n, out)

    monkeypatch.setattr(timing, "_calls", counting)
    Runner(RunOptions(suite=suites.load(str(path)), profile="smoke",
                      targets=["onnxruntime-cpu"], store=tmp_path / "r.db",
                      cache_dir=tmp_path / "cache", data_dir=tmp_path / "data")).run()
    monkeypatch.undo()
    rows = [r for r in Store(tmp_path / "r.db").rows() if r.get("speedup") is not None]
    assert {r["batch_size"] for r in rows} == {1, 8}
    # per attempt at a pair: 2 rounds x 2 sides of (3 untimed calls, then 3 timed ones)
    assert seen.count(3) == sum(2 * 2 * 2 * r["attempts"] for r in rows), seen
    # LeNet-300-100's batch-1 calls (~20 us on ORT) are under REOPEN_BELOW_MS: the second
    # round ran on a fresh pair, its sessions warmed (warmup = 5) as the first pair was
    ones = [r for r in rows if r["batch_size"] == 1]
    assert ones and all(r["window"]["sessions"] == 2 for r in ones)
    assert seen.count(5) >= sum(2 * 2 * r["attempts"] for r in ones) + sum(
        2 * r["attempts"] for r in rows if r["batch_size"] != 1), seen
    for r in rows:
        assert r["window"]["rewarm"] == 3 and r["iterations"] == 6
        as_candidate = {**r, "method": "other"}  # the caveat's rule, on this row's numbers
        assert "may read low" not in note(as_candidate, aa_bands(rows))
        del as_candidate["window"]["rewarm"]
        assert "chunks of 3 calls" in note(as_candidate, aa_bands(rows))  # LeNet: us calls
