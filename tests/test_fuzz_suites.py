"""Suite files fuzzed with hypothesis: whatever a suite file holds, loading it gives a valid
Suite or a one-line UsageError, never another exception (issue 10, item 7: "never a traceback,
always exit 2 with one line").

Three generators, derandomized so CI sees the same cases every time:
- mutations of a valid tiny suite (values replaced by random ones of any TOML type, keys
  deleted, junk or valid keys added, values turned into strings, lists or tables): these
  reach the deep checks (method configs, recipes, timing) that random files rarely get to;
- random top-level tables over valid and junk keys with random nested values;
- random text and bytes (invalid TOML, invalid UTF-8).
Files are written by the small TOML emitter below (inline tables and arrays only), checked to
parse back to what was generated. A few malformed files also go through the real CLI: exit 2
and one line on stderr.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DEFAULT_METHODS, run_cli, tiny_suite
from harness import suite as suites
from harness.errors import UsageError
from harness.registry import METHODS
from harness.train import Recipe
from harness.typecheck import fits, hints

OUTCOMES: Counter[str] = Counter()  # "valid" / "usage error" per generator, for the summary


def _config_keys() -> set[str]:
    return {f.name for name in METHODS.names()
            for f in dataclasses.fields(METHODS.get(name).Config)}


VALID_KEYS = sorted(suites.SUITE_KEYS | suites.PROFILE_KEYS | suites.TIMING_KEYS
                    | suites.METHOD_KEYS | set(Recipe.__dataclass_fields__) | _config_keys()
                    | {"smoke", "quick", "full", "resize", "checkpoint"})
JUNK_KEYS = ["", " ", "bogus", "ratio ", "naïve", "line\nbreak", "a.b", "🙂", "x" * 40, "\x00"]
NAMES = ["mnist", "fashion-mnist", "cifar10", "voc2007", "fashion-det", "lenet-5",
         "lenet-300-100", "resnet-8", "yolov2-tiny", "l1-filter", "weight-level", "low-rank",
         "kd", "fitnets", "scratch", "pipeline", "int8-ptq", "qat", "fpgm", "weight-sharing",
         "baseline", "smoke", "quick", "full", "onnxruntime-cpu", "null", "sgd", "adam",
         "global", "layer2", "fc1", "channel", "l1-filter:ratio=0.5", "../../x", "a/b"]

keys = st.sampled_from(VALID_KEYS + JUNK_KEYS) | st.text(max_size=6)
scalars = st.one_of(
    st.sampled_from(NAMES),
    st.text(max_size=12),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, 1, -1, 2, 64, 2**31, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.5, 1e308, 5e-324]),
    st.booleans(),
)
values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
    max_leaves=12,
)

# ---- a tiny TOML emitter: inline tables and arrays, every key quoted -------------------------


def _string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_string(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"no TOML for {type(v).__name__}")


def dumps(table: dict[str, Any]) -> str:
    return "".join(f"{_string(k)} = {_value(v)}\n" for k, v in table.items())


def _same(a: Any, b: Any) -> bool:
    """Equality that counts nan as equal to nan (what a round trip must preserve)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return type(a) is type(b) and a == b


# ---- what every outcome must be ---------------------------------------------------------------


def check_outcome(path: Path, generator: str) -> None:
    try:
        s = suites.load(str(path))
    except UsageError as exc:
        text = str(exc)
        assert text.strip() and len(text.splitlines()) == 1, repr(text)
        OUTCOMES[f"{generator}: usage error"] += 1
        return
    assert isinstance(s, suites.Suite) and s.name.strip() and s.models and s.profiles
    assert_well_typed(s)
    OUTCOMES[f"{generator}: valid"] += 1


def assert_well_typed(s: suites.Suite) -> None:
    """A suite that loads holds only values of the types its dataclasses declare (the old
    loader let `lr = "x"` through to the first training step)."""
    for profile in s.profiles.values():
        for obj in (profile.train, profile.finetune, profile.timing):
            known = hints(type(obj))
            for f in dataclasses.fields(obj):
                value = getattr(obj, f.name)  # None: an optional key left out
                assert value is None and f.default is None or fits(value, known[f.name]), \
                    (f.name, value)
        assert profile.eval_samples is None or fits(profile.eval_samples, int)
    for run in s.runs:
        known = hints(METHODS.get(run.method).Config)
        for key, value in run.config.items():
            assert fits(value, known[key]), (run.method, key, value)
    assert isinstance(s.seed, int) and all(isinstance(t, str) for t in s.targets)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.fixture(scope="module")
def base(folder: Path) -> dict[str, Any]:
    """A valid tiny suite (all three profiles, two methods) as a Python table."""
    raw = tomllib.loads(tiny_suite(folder, name="base", methods=DEFAULT_METHODS).read_text())
    raw["profiles"]["quick"] = copy.deepcopy(raw["profiles"]["smoke"])
    raw["methods"].append({"name": "kd", "config": {"student": "lenet-5", "epochs": 0.5}})
    suites.load(str(folder / "base.toml"))
    return raw


FUZZ = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `node` (dict keys and list indices)."""
    out = []
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for k, v in items:
        out.append((*at, k))
        out.extend(_paths(v, (*at, k)))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for k in path:
        node = node[k]
    return node


@FUZZ
@given(data=st.data())
def test_mutated_suites_load_or_say_why_in_one_line(data: st.DataObject, folder: Path,
                                                    base: dict[str, Any]) -> None:
    doc = copy.deepcopy(base)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        paths = _paths(doc)
        op = data.draw(st.sampled_from(["set", "delete", "add", "retype"]), label="op")
        if op == "add" or not paths:
            tables = [p for p in [(), *paths] if isinstance(_get(doc, p), dict)]
            where = _get(doc, data.draw(st.sampled_from(tables), label="table"))
            where[data.draw(keys, label="key")] = data.draw(values, label="value")
            continue
        path = data.draw(st.sampled_from(paths), label="path")
        parent, last = _get(doc, path[:-1]), path[-1]
        if op == "delete":
            del parent[last]
        elif op == "set":
            parent[last] = data.draw(values, label="value")
        else:  # the same value as a string, a one-item list or a one-key table
            old = parent[last]
            parent[last] = data.draw(st.sampled_from([str(old), [old], {"x": old}]),
                                     label="retyped")
    text = dumps(doc)
    assert _same(tomllib.loads(text), doc)
    path = folder / "mutated.toml"
    path.write_text(text, encoding="utf-8")
    check_outcome(path, "mutated")


@settings(FUZZ, max_examples=200)
@given(doc=st.dictionaries(st.sampled_from(sorted(suites.SUITE_KEYS) + JUNK_KEYS) | keys,
                           values, max_size=8))
def test_random_tables_load_or_say_why_in_one_line(doc: dict[str, Any], folder: Path) -> None:
    text = dumps(doc)
    assert _same(tomllib.loads(text), doc)
    path = folder / "random.toml"
    path.write_text(text, encoding="utf-8")
    check_outcome(path, "random table")


@settings(FUZZ, max_examples=100)
@given(blob=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_say_why_in_one_line(blob: bytes, folder: Path) -> None:
    path = folder / "bytes.toml"
    path.write_bytes(blob)
    check_outcome(path, "random bytes")


def test_fuzz_summary() -> None:
    """How many cases the generators tried (printed with -s; the lead's README figure)."""
    if not OUTCOMES:
        pytest.skip("run with the fuzz tests above")
    total = sum(OUTCOMES.values())
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(OUTCOMES.items()))
    print(f"\nfuzzed suite files: {total} ({kinds})")
    assert OUTCOMES["mutated: valid"] > 0 and OUTCOMES["mutated: usage error"] > 0


# ---- through the real CLI: exit 2, one line --------------------------------------------------

CLI_CASES = {
    "ratio a string": lambda b: _set(b, ("methods", 1, "grid", "ratio"), ["abc"]),
    "profiles a list": lambda b: _set(b, ("profiles",), [1, 2]),
    "huge seed": lambda b: _set(b, ("seed",), 2**63 - 1),
    "unicode junk key": lambda b: _set(b, ("naïve 🙂\n",), {"x": [1.5, "y"]}),
}


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    _get(doc, path[:-1])[path[-1]] = value
    return doc


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_malformed_suites_through_the_cli(case: str, tmp_path: Path, base: dict[str, Any]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(dumps(CLI_CASES[case](base)), encoding="utf-8")
    res = run_cli("run", "--suite", str(path), "--profile", "smoke", "--store",
                  str(tmp_path / "s.db"), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert not (tmp_path / "s.db").exists()
