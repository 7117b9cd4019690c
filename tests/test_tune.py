"""`harness tune`: search spaces, fronts, and the study end to end (4 trials on a LeNet smoke
suite, killed with kill -9 twice and resumed: no finished trial redone, no cell stored twice)."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import harness_bin, run_cli, tiny_suite

from harness import fronts, search
from harness.accuracy_ci import pack, unpack
from harness.errors import UsageError

SEARCH = """
[[methods]]
name = "l1-filter"
search = { ratio = [0.1, 0.8], then = ["", "int8-ptq"] }
"""


# ---- search spaces -------------------------------------------------------------------------

def test_space_kinds_and_the_run_of_a_point() -> None:
    dims = search.parse({"ratio": [0.1, 0.8], "bits": [2, 8], "plan": ["56-A", "56-B"],
                         "sparsity": {"low": 0.5, "high": 0.95, "step": 0.05},
                         "then": ["", "int8-ptq"]}, "m", {"ratio", "bits", "plan", "sparsity"},
                        "here")
    d = {x.name: x for x in dims}
    assert (d["ratio"].low, d["ratio"].high, d["ratio"].integer) == (0.1, 0.8, False)
    assert d["bits"].integer and d["bits"].choices is None
    assert d["plan"].choices == ("56-A", "56-B")
    assert d["sparsity"].step == 0.05
    space = search.Space("l1-filter", (d["ratio"], d["then"]))
    assert space.run({"ratio": 0.3, "then": ""}).config == {"ratio": 0.3}
    piped = space.run({"ratio": 0.3, "then": "int8-ptq"})
    assert (piped.method, piped.config) == ("pipeline", {"steps": ["l1-filter:ratio=0.3",
                                                                   "int8-ptq"]})
    # the pipeline step parses back to the same config
    from harness.methods.pipeline import parse_step

    assert parse_step(piped.config["steps"][0]) == ("l1-filter", {"ratio": 0.3})


def test_a_rounded_draw_stays_inside_its_range() -> None:
    """4 significant digits make keys repeatable, but never a value the range forbids: a
    draw of 0.99996 from [0.1, 0.99999] would round to 1.0 (a ratio that prunes everything)."""
    from harness.tune import _round

    assert _round(0.4841694527) == 0.4842
    assert _round(0.99996, 0.1, 0.99999) == 0.99999
    assert _round(0.123449, 0.123449, 0.5) == 0.123449  # 0.1234 would fall below low
    assert _round(0.3000001, 0.1, 0.8) == 0.3


@pytest.mark.parametrize("raw, words", [
    ({"ratio": [0.9, 0.1]}, "low (0.9) must be below high"),
    ({"ratoi": [0.1, 0.5]}, "not an option of 'l1-filter'"),
    ({"ratio": "x"}, "expected [low, high]"),
    ({"ratio": {"low": 0.1}}, "needs low and high"),
    ({"ratio": {"low": 0.0, "high": 1.0, "log": True}}, "log range needs low > 0"),
    ({"then": [1, 2, 3]}, "then-choices are step strings"),
    ({"plan": {"choices": ["56-A", "56-A"]}}, "listed twice"),
    ({}, "non-empty table"),
])
def test_bad_spaces_are_one_line(raw: dict, words: str) -> None:
    with pytest.raises(UsageError) as e:
        search.parse(raw, "l1-filter", {"ratio", "plan"}, "suite 'x'")
    assert words in str(e.value) and "\n" not in str(e.value)


def test_suite_checks_every_corner_at_load_time(tmp_path: Path) -> None:
    from harness import suite

    ok = suite.load(str(tiny_suite(tmp_path, methods=SEARCH)))
    assert ok.runs == ()  # search without grid: for the tuner only
    assert [s.method for s in ok.search] == ["l1-filter"]
    bad = tiny_suite(tmp_path, "bad", methods=SEARCH.replace("0.8", "1.5"))
    with pytest.raises(UsageError, match=r"search point .*ratio.* = 1.5.*ratio must be in"):
        suite.load(str(bad))
    bad = tiny_suite(tmp_path, "bad2", methods=SEARCH.replace('"int8-ptq"', '"int9"'))
    with pytest.raises(UsageError, match="unknown method 'int9'"):
        suite.load(str(bad))


# ---- fronts and disagreements (hand-checked) ------------------------------------------------

def _pt(trial: int, target: str, acc: float, sp: float, half: float = 0.02,
        quality: str = "clean") -> fronts.Point:
    return fronts.Point("s", trial, target, f"c{trial}", acc, sp, sp - half, sp + half, quality,
                        None)


def test_front_keeps_the_undominated_clean_trials() -> None:
    pts = [_pt(0, "a", 90.0, 1.5), _pt(1, "a", 89.0, 2.0), _pt(2, "a", 88.0, 1.8),
           _pt(3, "a", 91.0, 1.2), _pt(4, "a", 95.0, 3.0, quality="noisy"),
           _pt(5, "a", 90.0, 1.5)]  # 5 ties 0 on both: the earlier trial stays
    assert [p.trial for p in fronts.front(pts)] == [3, 0, 1]


def test_disagreements_name_the_trial_and_whether_the_cis_separate() -> None:
    pts = [_pt(0, "ort", 90.0, 2.0), _pt(1, "ort", 90.0, 1.5),  # ort: 0 best
           _pt(0, "ov", 90.0, 1.2), _pt(1, "ov", 90.0, 1.6)]    # ov: 1 best, beyond the CIs
    ds = fronts.disagreements(pts)
    assert [(d.trial, d.on, d.off, d.measurable) for d in ds] == [(0, "ort", "ov", True),
                                                                  (1, "ov", "ort", True)]
    assert "beaten there beyond the CIs" in ds[0].describe()
    close = [_pt(0, "ort", 90.0, 2.0), _pt(1, "ort", 90.0, 1.99, half=0.1),
             _pt(0, "ov", 90.0, 1.58, half=0.1), _pt(1, "ov", 90.0, 1.6)]
    assert [d.measurable for d in fronts.disagreements(close)] == [False, False]
    same = [_pt(0, "ort", 90.0, 2.0), _pt(1, "ort", 89.0, 1.0),
            _pt(0, "ov", 90.0, 1.9), _pt(1, "ov", 89.0, 1.1)]
    assert fronts.disagreements(same) == []


def test_a_noisy_point_on_the_other_target_is_no_disagreement() -> None:
    """Trial 0 tops the ort front; on ov its point is noisy (left off that front unjudged,
    as `harness tune` says): no disagreement is reported for it, either way round."""
    pts = [_pt(0, "ort", 90.0, 2.0), _pt(1, "ort", 90.0, 1.5),
           _pt(0, "ov", 90.0, 2.2, quality="noisy"), _pt(1, "ov", 90.0, 1.6)]
    assert [(d.trial, d.on, d.off) for d in fronts.disagreements(pts)] == [(1, "ov", "ort")]


def test_a_trial_is_searched_on_the_even_items_and_read_on_the_odd_ones(tmp_path: Path) -> None:
    """The search half and the held-out half of a cell's per-item results: a trial right on
    every even item and wrong on every odd one is searched at 100% and held out at 0%; a row
    without per-item results (mAP, an old cell) is searched on its whole accuracy."""
    from harness.store import Store

    v = np.arange(500) % 2 == 0
    assert fronts.search_accuracy({"top1_target": 0.5, "items_correct": pack(v)}) == 1.0
    assert fronts.search_accuracy({"top1_target": 0.5}) == 0.5
    assert fronts.search_accuracy({"top1_target": None, "top1_retrained": 0.7}) == 0.7
    st = Store(tmp_path / "r.db")
    st.start_run("r", suite="s")
    st.put_cell({"cell_key": "k", "run_id": "r", "suite": "s", "model": "m",
                 "method": "l1-filter", "method_config": {"ratio": 0.5}, "target": "t",
                 "status": "ok", "top1_target": 0.5, "items_correct": pack(v)},
                [{"batch_size": 1, "speedup": 2.0, "speedup_ci_low": 1.9,
                  "speedup_ci_high": 2.1, "quality": "clean"}])
    st.put_trial({"study": "st", "trial": 0, "suite": "s", "model": "m", "method": "l1-filter",
                  "method_config": {"ratio": 0.5}, "params": {}, "targets": ["t"],
                  "batch_size": 1, "state": "COMPLETE", "objective_values": [100.0, 2.0],
                  "cell_keys": {"t": "k"}})
    (p,) = fronts.points(st, "s")["st"]
    st.close()
    assert (p.accuracy, p.held_out) == (100.0, 0.0)
    assert p.accuracy_text() == "search 100.00% [98.5, 100.0], held out 0.00% [0.0, 1.5]"


def test_a_trial_names_the_targets_where_its_speedup_is_noisy() -> None:
    from types import SimpleNamespace

    from harness.tune import Tuner

    ok = {"status": "ok", "speedup": 2.0, "top1_target": 0.9}
    rows = {"k-ort": [{**ok, "batch_size": 64, "quality": "noisy", "quality_reason": "b=64"},
                      {**ok, "batch_size": 1, "quality": "noisy", "quality_reason": "CI +-22%"}],
            "k-ov": [{**ok, "batch_size": 1, "quality": "clean", "quality_reason": ""}],
            "k-old": [{**ok, "batch_size": 1}]}  # a row from before quality was stored
    me = SimpleNamespace(o=SimpleNamespace(batch=1, size=False), cell_keys=lambda run: {
        "onnxruntime-cpu": "k-ort", "openvino-cpu": "k-ov", "torch-cpu": "k-old"})
    store = SimpleNamespace(cell=lambda key: rows[key])
    values, why, noisy = Tuner.values(me, store, None)  # type: ignore[arg-type]
    assert values == [90.0, 2.0] * 3 and why is None
    assert noisy == {"onnxruntime-cpu": "CI +-22%"}


# ---- the study end to end -------------------------------------------------------------------

def _args(work: Path, suite: Path, trials: int) -> list[str]:
    return ["tune", "--suite", str(suite), "--profile", "smoke", "--trials", str(trials),
            "--store", str(work / "r.db"), "--data-dir", str(work / "data"),
            "--report-dir", str(work / "report")]


def _db(work: Path) -> sqlite3.Connection:
    con = sqlite3.connect(work / "r.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    return con


def _ok_cells(con: sqlite3.Connection) -> dict[str, str]:
    """cell_key -> run_id of its ok row; asserts no cell is stored ok twice."""
    rows = con.execute("SELECT cell_key, run_id FROM cells WHERE status='ok'").fetchall()
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)), "a cell stored twice"
    return dict(rows)


@pytest.fixture()
def work(tmp_path: Path, data_dir: Path) -> Path:
    import shutil

    shutil.copytree(data_dir / "MNIST", tmp_path / "data" / "MNIST")
    return tmp_path


@pytest.mark.slow
def test_tune_stores_trials_as_cells_and_resumes_after_kill_9(work: Path) -> None:
    suite = tiny_suite(work, methods=SEARCH)
    env = {"COMPRESSMARK_FAULT": "tune-tell", "COMPRESSMARK_FAULT_MARKER": str(work / "m")}
    # 1: killed (SIGKILL) right after trial 0's cells were stored, before Optuna was told
    first = run_cli(*_args(work, suite, 4), env=env)
    assert first.returncode == -signal.SIGKILL, first.stderr[-2000:]
    con = _db(work)
    stored = _ok_cells(con)
    assert len(stored) == 2  # the baseline and trial 0's cell
    con.close()
    # 2: settles trial 0 from the store (not re-run), then is killed at a random moment
    # once another trial is recorded
    proc = subprocess.Popen([*harness_bin(), *_args(work, suite, 4)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        try:
            con = sqlite3.connect(work / "r.db", timeout=5)
            n = con.execute("SELECT count(*) FROM trials WHERE state='COMPLETE'").fetchone()[0]
            con.close()
        except sqlite3.OperationalError:
            continue
        if n >= 2:
            time.sleep(1.5)  # into the next trial's compression or measurement
            proc.send_signal(signal.SIGKILL)
            break
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == -signal.SIGKILL, out[-2000:]
    assert "told from the store, not re-run" in out
    con = _db(work)
    before = _ok_cells(con)
    assert all(before[k] == v for k, v in stored.items())  # nothing finished was redone
    con.close()
    # 3: runs to the end
    last = run_cli(*_args(work, suite, 4))
    assert last.returncode == 0, last.stdout[-2000:] + last.stderr[-2000:]
    con = _db(work)
    after = _ok_cells(con)
    assert all(after[k] == v for k, v in before.items())  # every stored cell kept its row
    trials = con.execute("SELECT trial, state, method, method_config, cell_keys, "
                         "objective_values FROM trials ORDER BY trial").fetchall()
    complete = [t for t in trials if t[1] == "COMPLETE"]
    assert len(complete) == 4, trials
    # every complete trial is an ordinary stored cell of its configuration, with its values
    for _, _, method, cfg, keys, values in complete:
        (key,) = json.loads(keys).values()
        assert key in after
        row = con.execute("SELECT c.method, c.method_config, c.items_correct, m.speedup "
                          "FROM cells c JOIN measurements m USING (cell_key, run_id) WHERE "
                          "c.cell_key=? AND c.status='ok' AND m.batch_size=1", (key,)).fetchone()
        assert (row[0], json.loads(row[1])) == (method, json.loads(cfg))
        # the accuracy objective is the search half: the even-numbered evaluation items
        search = unpack(row[2])[0::2]
        assert json.loads(values) == pytest.approx([100 * search.mean(), row[3]])
    # a trial whose speedup row is noisy says so on its line, and the front names it as left
    # off (not beaten): checked against the stored quality of each trial's row
    quality = {}
    for number, _, _, _, keys, _ in complete:
        (key,) = json.loads(keys).values()
        quality[number] = con.execute(
            "SELECT m.quality FROM measurements m JOIN cells c USING (cell_key, run_id) WHERE "
            "c.cell_key=? AND c.status='ok' AND m.batch_size=1", (key,)).fetchone()[0]
    said = {int(line.split(":")[0].split()[1]): line
            for line in (out + last.stdout).splitlines() if line.startswith("trial ")
            and " FAILED" not in line and "killed" not in line}
    assert said, out + last.stdout
    for number, line in said.items():
        assert ("noisy on onnxruntime-cpu" in line) == (quality[number] != "clean"), line
    noisy = sorted(n for n, q in quality.items() if q != "clean")
    # each front point reads its search-half and held-out accuracies with 95% intervals
    front_lines = [line for line in last.stdout.splitlines() if line.startswith("  trial ")]
    assert bool(front_lines) == any(q == "clean" for q in quality.values()), last.stdout
    pct = r"\d+\.\d\d% \[\d+\.\d, \d+\.\d\]"
    assert all(re.search(f": search {pct}, held out {pct}  ", line)
               for line in front_lines), front_lines
    assert "held out` is its top-1 on the odd-numbered" in last.stdout
    left = [line for line in last.stdout.splitlines() if "left off as noisy" in line]
    if noisy:
        assert left and left[0].split(": trial")[1].lstrip("s ").split(", ") == \
            [str(n) for n in noisy], (left, noisy)
    else:
        assert not left
    configs = {(m, c) for _, _, m, c, _, _ in complete}
    # the baseline + one cell per distinct configuration: nothing else was measured
    assert len(after) == 1 + len(configs)
    con.close()
    # the report draws the study
    html = (work / "report" / "index.html").read_text()
    assert "Search (harness tune)" in html and "front on onnxruntime-cpu" in html
    assert list((work / "report").glob("search-*.png"))
    # a finished study runs no more trials; asking for more runs only the rest
    again = run_cli(*_args(work, suite, 4))
    assert again.returncode == 0, again.stderr[-2000:]
    assert not [line for line in again.stdout.splitlines() if line.startswith("trial ")]
    con = _db(work)
    assert _ok_cells(con) == after
    con.close()


@pytest.mark.slow
def test_a_failing_trial_is_recorded_and_the_study_goes_on(work: Path) -> None:
    suite = tiny_suite(work, methods=SEARCH)
    env = {"COMPRESSMARK_FAULT": "compress", "COMPRESSMARK_FAULT_ACTION": "enospc",
           "COMPRESSMARK_FAULT_MARKER": str(work / "m")}
    r = run_cli(*_args(work, suite, 2), env=env)
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "1 of 2 trials failed" in r.stdout
    # the tiny suite times 1 call per chunk at batch 1: tune says so once, as run does
    assert r.stderr.count("timing of profile smoke: 1 timed call per chunk") == 1, r.stderr
    con = _db(work)
    rows = con.execute("SELECT trial, state, error FROM trials ORDER BY trial").fetchall()
    assert [s for _, s, _ in rows] == ["FAIL", "COMPLETE"]
    assert "No space left on device" in rows[0][2]
    failed = con.execute("SELECT count(*) FROM cells WHERE status='failed'").fetchone()[0]
    assert failed == 1  # the failed trial's cell is stored as failed, as in `run`
    con.close()


def test_tune_bad_input_is_one_line_exit_2(work: Path) -> None:
    grid_only = tiny_suite(work, "grid")
    r = run_cli(*_args(work, grid_only, 4))
    assert r.returncode == 2 and "declares no search space" in r.stderr
    two = tiny_suite(work, "two", models='["lenet-300-100", "lenet-5"]', methods=SEARCH)
    r = run_cli(*_args(work, two, 4))
    assert r.returncode == 2 and "pass --model (choose from: lenet-300-100, lenet-5)" in r.stderr
    one = tiny_suite(work, "one", methods=SEARCH)
    for extra, words in ((["--batch", "3"], "--batch 3 is not timed by profile smoke (choose "
                                            "from: 1, 8)"),
                         (["--sampler", "cmaes"], "unknown sampler 'cmaes'"),
                         (["--method", "fpgm"], "method 'fpgm' has no search space")):
        r = run_cli(*_args(work, one, 4), *extra)
        assert r.returncode == 2 and words in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1
