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
    assert log == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(ta.samples_ns) == len(tb.samples_ns) == 4


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


def test_max_seconds_caps_a_slow_pair() -> None:
    import time

    class Slow:
        def run(self, batch: np.ndarray) -> list[np.ndarray]:
            time.sleep(0.01)
            return [batch]

    cfg = TimingConfig(iterations=1000, warmup=1, rounds=2, max_seconds=0.2)
    ta, tb = measure_pair(Slow(), Slow(), np.zeros((1, 1)), cfg)
    assert 2 * 2 <= len(ta.samples_ns) <= 2 * 10 and len(ta.samples_ns) == len(tb.samples_ns)
