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
