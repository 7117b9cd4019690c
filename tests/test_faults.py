"""Fault injection: the run killed (kill -9) at every stage and at random times, and a full
disk: no finished cell is lost or redone, the store stays intact, the cache heals.

Each kill is real: `harness.faults.checkpoint` sends the harness process SIGKILL at the named
stage (no cleanup runs), or this test kills it after a random delay. The chain of runs goes a
little further each time (a stage already passed is not killed again), and after every run
the store is checked: `PRAGMA integrity_check` ok, no cell stored twice, every cell finished
before still there from the run that finished it.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import harness_bin, run_cli, tiny_suite

METHODS = """
[[methods]]
name = "weight-level"
grid = { sparsity = [0.5] }

[[methods]]
name = "int8-ptq"
config = { calibration = 32 }
"""
# the order the sweep reaches them: each run of the chain is killed a little later
CHAIN = ("baseline-train", "export", "measure", "store-write", "compress", "finetune",
         "quantize")
CELLS = 3  # baseline, weight-level, int8-ptq on one target


def _state(db: Path) -> dict[str, str]:
    """cell_key -> run_id of its ok row; asserts integrity and no duplicate ok rows."""
    if not db.exists():
        return {}
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = con.execute("SELECT cell_key, run_id FROM cells WHERE status='ok'").fetchall()
    con.close()
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)), f"a cell stored twice: {keys}"
    return dict(rows)


def _args(work: Path, suite: Path) -> list[str]:
    return ["run", "--suite", str(suite), "--profile", "smoke", "--target", "onnxruntime-cpu",
            "--store", str(work / "r.db"), "--data-dir", str(work / "data")]


@pytest.fixture()
def work(tmp_path: Path, data_dir: Path) -> tuple[Path, Path]:
    import shutil

    shutil.copytree(data_dir / "MNIST", tmp_path / "data" / "MNIST")
    return tmp_path, tiny_suite(tmp_path, "faulty", '["lenet-300-100"]', METHODS)


def test_killed_at_every_stage_then_healed(work: tuple[Path, Path]) -> None:
    tmp, suite = work
    before: dict[str, str] = {}
    killed = []
    for stage in CHAIN:
        marker = tmp / f"killed-{stage}"
        res = run_cli(*_args(tmp, suite), cwd=tmp,
                      env={"COMPRESSMARK_FAULT": stage, "COMPRESSMARK_FAULT_MARKER": str(marker)})
        if marker.exists():
            assert res.returncode == -signal.SIGKILL, (stage, res.returncode, res.stderr[-500:])
            killed.append(stage)
        now = _state(tmp / "r.db")
        for key, run in before.items():  # nothing finished is lost or redone
            assert now.get(key) == run, (stage, key)
        before = now
    assert killed == list(CHAIN)  # every stage was reached and really killed once
    res = run_cli(*_args(tmp, suite), cwd=tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    final = _state(tmp / "r.db")
    assert len(final) == CELLS
    for key, run in before.items():
        assert final[key] == run


def test_killed_at_random_times_then_healed(work: tuple[Path, Path]) -> None:
    tmp, suite = work
    rng = random.Random(20261123)
    before: dict[str, str] = {}
    for _ in range(3):
        proc = subprocess.Popen([*harness_bin(), *_args(tmp, suite)], cwd=tmp,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(4.0, 14.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        now = _state(tmp / "r.db")
        for key, run in before.items():
            assert now.get(key) == run
        before = now
    res = run_cli(*_args(tmp, suite), cwd=tmp)
    assert res.returncode == 0, res.stderr[-2000:]
    final = _state(tmp / "r.db")
    assert len(final) == CELLS and all(final[k] == r for k, r in before.items())


def test_disk_full_at_the_store_write_is_one_line_and_no_half_row(
        work: tuple[Path, Path]) -> None:
    tmp, suite = work
    res = run_cli(*_args(tmp, suite), cwd=tmp,
                  env={"COMPRESSMARK_FAULT": "store-write", "COMPRESSMARK_FAULT_ACTION": "enospc",
                       "COMPRESSMARK_FAULT_MARKER": str(tmp / "enospc")})
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "No space left on device" in lines[0], res.stderr[-1000:]
    assert "Traceback" not in res.stderr
    con = sqlite3.connect(tmp / "r.db")
    assert con.execute("SELECT COUNT(*) FROM cells").fetchone()[0] == 0
    assert con.execute("SELECT COUNT(*) FROM measurements").fetchone()[0] == 0
    assert con.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 0
    con.close()
    assert run_cli(*_args(tmp, suite), cwd=tmp).returncode == 0
    assert len(_state(tmp / "r.db")) == CELLS


def test_two_sweeps_sharing_a_cache_build_an_entry_once(work: tuple[Path, Path]) -> None:
    """Two sweeps on one cache (e.g. a `run` beside a `tune`): the first is held mid-build of a
    compressed model (paused at its fine-tune, its folder half made); the second, on its own
    store, must wait for that entry rather than rebuild it or delete the half-made folder, then
    use it. Both rows are ok and carry the same accuracies."""
    tmp, suite = work
    cache = ["--cache-dir", str(tmp / "cache")]
    prime = run_cli(*_args(tmp, suite), *cache, "--method", "int8-ptq", cwd=tmp)
    assert prime.returncode == 0, prime.stderr[-2000:]  # the baseline is cached now
    marker = tmp / "paused"
    args_a = [*_args(tmp, suite), *cache, "--method", "weight-level"]
    args_b = [*args_a[:args_a.index("--store")], "--store", str(tmp / "r2.db"),
              *args_a[args_a.index("--store") + 2:]]
    env = {**os.environ, "COMPRESSMARK_FAULT": "finetune",
           "COMPRESSMARK_FAULT_ACTION": "pause", "COMPRESSMARK_FAULT_MARKER": str(marker)}
    a = subprocess.Popen([*harness_bin(), *args_a], cwd=tmp, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out_b = tmp / "b.log"
    b = None
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():  # A holds the entry, mid-build
            assert a.poll() is None and time.monotonic() < deadline, "A never reached finetune"
            time.sleep(0.1)
        with open(out_b, "w") as log:
            b = subprocess.Popen([*harness_bin(), *args_b], cwd=tmp, env=env, text=True,
                                 stdout=log, stderr=subprocess.STDOUT)
            while "waiting for another process building" not in out_b.read_text():
                assert b.poll() is None, f"B did not wait: {out_b.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "B never reached the entry"
                time.sleep(0.1)
            Path(str(marker) + ".release").touch()  # let A finish its build
            out_a = a.communicate(timeout=240)[0]
            assert a.returncode == 0, out_a[-2000:]
            assert b.wait(timeout=240) == 0, out_b.read_text()[-2000:]
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
    text_b = out_b.read_text()
    assert "cached compressed model" in text_b and "discarding" not in text_b, text_b[-2000:]
    assert "discarding" not in out_a
    rows = {}
    for db in ("r.db", "r2.db"):
        con = sqlite3.connect(tmp / db)
        rows[db] = con.execute("SELECT status, top1_pruned, top1_retrained, top1_target FROM "
                               "cells WHERE method='weight-level'").fetchall()
        con.close()
    assert len(rows["r.db"]) == len(rows["r2.db"]) == 1 and rows["r.db"][0][0] == "ok"
    assert rows["r.db"] == rows["r2.db"]


def test_force_waits_for_a_sweep_timing_from_the_entry_it_rebuilds(
        work: tuple[Path, Path]) -> None:
    """Sweep A is held at its first measurement, timing from the cached baseline's files;
    sweep B, `--force` on the same cache, must not delete them under A (A's cells failed:
    NO_SUCHFILE). B waits, saying so, until A is done; then both end with every cell ok."""
    tmp, suite = work
    cache = ["--cache-dir", str(tmp / "cache"), "--method", "weight-level"]
    prime = run_cli(*_args(tmp, suite), *cache, cwd=tmp)
    assert prime.returncode == 0, prime.stderr[-2000:]
    held, b_train = tmp / "a-held", tmp / "b-training"
    args_a = [*_args(tmp, suite), *cache]
    args_a[args_a.index("--store") + 1] = str(tmp / "a.db")
    args_b = [*_args(tmp, suite), *cache, "--force"]
    args_b[args_b.index("--store") + 1] = str(tmp / "b.db")

    def env(stage: str, marker: Path) -> dict[str, str]:
        return {**os.environ, "COMPRESSMARK_FAULT": stage, "COMPRESSMARK_FAULT_ACTION": "pause",
                "COMPRESSMARK_FAULT_MARKER": str(marker)}

    a = subprocess.Popen([*harness_bin(), *args_a], cwd=tmp, env=env("measure", held),
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out_b = tmp / "b.log"
    b = None
    try:
        deadline = time.monotonic() + 240
        while not held.exists():  # A holds its first measurement
            assert a.poll() is None and time.monotonic() < deadline, "A never measured"
            time.sleep(0.1)
        with open(out_b, "w") as log:
            # B pauses once it retrains (the old code got there at once, the entry deleted)
            b = subprocess.Popen([*harness_bin(), *args_b], cwd=tmp, env=env("baseline-train",
                                 b_train), text=True, stdout=log, stderr=subprocess.STDOUT)
            while "--force waits for another sweep using" not in out_b.read_text():
                assert b.poll() is None, f"B did not wait: {out_b.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "B never reached the baseline"
                if b_train.exists():  # B deleted the entry A is timing from (held there)
                    break
                time.sleep(0.1)
            Path(f"{held}.release").touch()  # A goes on measuring
            out_a = a.communicate(timeout=240)[0]
            Path(f"{b_train}.release").touch()
            assert b.wait(timeout=240) == 0, out_b.read_text()[-2000:]
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
    assert a.returncode == 0, out_a[-2000:]
    for db in ("a.db", "b.db"):
        con = sqlite3.connect(tmp / db)
        assert {st for st, in con.execute("SELECT status FROM cells")} == {"ok"}, db
        con.close()
    assert b_train.exists()  # B did retrain, after A was done


def test_a_cell_another_run_stored_meanwhile_is_not_measured_again(
        tmp_path: Path, data_dir: Path) -> None:
    """Two sweeps on one store: run A stores its cells while run B (planned before that) is
    still on its way. B asks the store again just before each measurement, skips the cells
    A stored and stores no second row of them (both measured and stored every cell)."""
    from harness import suite as suites
    from harness.executors.local import LocalExecutor
    from harness.runner import Events, RunOptions, Runner

    suite = suites.load(str(tiny_suite(tmp_path, methods=METHODS)))

    def runner(db: str, cells: list[str]) -> Runner:
        return Runner(RunOptions(suite=suite, profile="smoke", targets=["null"],
                                 store=tmp_path / db, cache_dir=tmp_path / "cache",
                                 data_dir=data_dir), Events(cell=cells.append))

    runner("a.db", []).run()
    shared = tmp_path / "shared.db"

    class AStoresMeanwhile(LocalExecutor):
        """B's executor: its plan is made (nothing stored yet); then A's rows land."""

        def run(self, runner: Runner, plan: object):  # type: ignore[no-untyped-def]
            assert sum(s.kind == "measure" for s in plan.steps) == CELLS  # type: ignore[attr-defined]
            con = sqlite3.connect(shared)
            con.execute("ATTACH ? AS a", (str(tmp_path / "a.db"),))
            for table in ("cells", "measurements", "samples"):
                con.execute(f"INSERT INTO {table} SELECT * FROM a.{table}")
            con.commit()
            con.close()
            yield from super().run(runner, plan)

    con = sqlite3.connect(tmp_path / "a.db")
    ok = {k for k, in con.execute("SELECT cell_key FROM cells WHERE status='ok'")}
    con.close()
    assert len(ok) == CELLS - 1  # int8-ptq makes no artifact for `null`: failed, not finished
    cells: list[str] = []
    b = runner("shared.db", cells)
    b.run(AStoresMeanwhile())
    assert sum("stored meanwhile by another run, skipped" in c for c in cells) == len(ok), cells
    con = sqlite3.connect(shared)
    mine = {k for k, in con.execute("SELECT cell_key FROM cells WHERE run_id=?", (b.run_id,))}
    con.close()
    assert len(mine) == CELLS - len(ok) and not mine & ok  # the failed cell is tried again
