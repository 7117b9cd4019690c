"""Suite files: shipped ones parse; every kind of mistake is a one-line UsageError."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_suite
from harness import suite
from harness.errors import UsageError


@pytest.mark.parametrize("name", sorted(suite.builtin_suites()))
def test_shipped_suites_parse(name: str) -> None:
    s = suite.load(name)
    assert s.name == name and s.models and s.runs
    assert {"smoke", "quick", "full"} <= set(s.profiles)
    assert s.profile("full").timing.iterations >= 1024  # MLMark: a scored run


def test_grid_is_expanded() -> None:
    s = suite.load("fashion-mnist-lenet")
    wl = [r for r in s.runs if r.method == "weight-level"]
    assert sorted(r.config["sparsity"] for r in wl) == [0.5, 0.8, 0.95]
    assert all(r.config["scope"] == "global" for r in wl)


BAD = {
    "unknown top key": ("bogus = 1\n", "unknown key 'bogus'"),
    "unknown model": (None, "unknown model 'nope'"),
    "unknown method": ('[[methods]]\nname = "nope"\n', "unknown method 'nope'"),
    "unknown option": ('[[methods]]\nname = "l1-filter"\ngrid = { rato = [0.5] }\n',
                       "has no option 'rato'"),
    "bad value": ('[[methods]]\nname = "l1-filter"\ngrid = { ratio = [1.5] }\n',
                  "ratio must be in"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_suite(case: str, tmp_path: Path) -> None:
    extra, message = BAD[case]
    if extra is None:
        path = tiny_suite(tmp_path, models='["nope"]')
    else:
        path = tiny_suite(tmp_path)
        path.write_text(extra + path.read_text() if "key" in case else path.read_text() + extra)
    with pytest.raises(UsageError, match=message):
        suite.load(str(path))


def test_invalid_toml(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_text("name = [unclosed\n")
    with pytest.raises(UsageError, match="not valid TOML"):
        suite.load(str(p))


def test_unknown_profile_and_suite(tmp_path: Path) -> None:
    s = suite.load(str(tiny_suite(tmp_path)))
    with pytest.raises(UsageError, match="unknown profile 'quick' \\(choose from: smoke\\)"):
        s.profile("quick")
    with pytest.raises(UsageError, match="unknown suite 'nope' \\(choose from: .*fashion-mnist-lenet"):
        suite.load("nope")


def test_timing_keys_stay_what_they_were_before_rewarm(tmp_path: Path) -> None:
    """Cell keys hold the profile's timing as text; `rewarm` joined the table later and must
    not change the key of any result stored before it (every row would be re-measured)."""
    import dataclasses

    before = dataclasses.make_dataclass("Timing", [
        (f.name, f.type, f) for f in dataclasses.fields(suite.Timing) if f.name != "rewarm"])
    for name in suite.builtin_suites():
        for profile in suite.load(name).profiles.values():
            t = profile.timing
            old = before(**{k: v for k, v in dataclasses.asdict(t).items() if k != "rewarm"})
            assert t.key() == repr(old)
            assert t.config().rewarm == 0
    path = tiny_suite(tmp_path)
    path.write_text(path.read_text().replace("threads = 1", "threads = 1, rewarm = 4", 1))
    t = suite.load(str(path)).profile("smoke").timing
    assert t.rewarm == 4 and t.config().rewarm == 4 and "rewarm=4" in t.key()


def test_short_chunks_are_named_where_they_bias_a_speedup() -> None:
    import dataclasses

    smoke = suite.load("fashion-mnist-resnet").profile("smoke").timing  # 12 calls / 6 rounds
    why = smoke.short_chunks()
    assert why is not None and "2 timed calls per chunk" in why and "iterations >= 78" in why
    assert suite.load("fashion-mnist-resnet").profile("quick").timing.short_chunks() is None
    assert dataclasses.replace(smoke, rewarm=4).short_chunks() is None  # re-warmed chunks
    assert dataclasses.replace(smoke, batch_sizes=(32, 64)).short_chunks() is None  # long calls
    assert dataclasses.replace(smoke, iterations=78).short_chunks() is None  # 13 per chunk
    assert dataclasses.replace(smoke, iterations=48).short_chunks() is not None  # 12
