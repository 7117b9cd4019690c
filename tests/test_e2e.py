"""A whole sweep through the real CLI on tiny data: store, resume, force, failures, export, report."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path

import pytest

from conftest import DEFAULT_METHODS, cells, run_cli, tiny_suite

TARGETS = ["torch-cpu", "onnxruntime-cpu", "openvino-cpu", "null"]
FAILING = DEFAULT_METHODS + """
[[methods]]
name = "l1-filter"
config = { layers = ["nope"] }
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, data_dir):  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("sweep")
    suite = tiny_suite(work, methods=FAILING)
    args = ["run", "--suite", str(suite), "--profile", "smoke", "--data-dir", str(data_dir),
            "--store", str(work / "r.db"), "--report-dir", str(work / "report")]
    for t in TARGETS:
        args += ["--target", t]
    first = run_cli(*args, cwd=work)
    # exit 1: the l1-filter config with a missing layer fails on every target (after the
    # whole sweep and the report)
    assert first.returncode == 1, first.stdout + first.stderr
    assert f"{3 * len(TARGETS)} ok, {len(TARGETS)} failed" in first.stdout
    return work, args, first


def test_every_cell_is_stored_and_a_failure_does_not_stop_the_sweep(sweep) -> None:  # type: ignore[no-untyped-def]
    work, _, _ = sweep
    rows = cells(work / "r.db")
    assert len(rows) == 4 * len(TARGETS)  # baseline + 3 method configs, per target
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == len(TARGETS)
    assert all("no layer named nope" in r["error"] for r in failed)
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["method"] for r in ok} == {"baseline", "weight-level", "l1-filter"}


def test_accuracy_is_real_and_agrees_across_runtimes(sweep) -> None:  # type: ignore[no-untyped-def]
    work, _, _ = sweep
    ok = [r for r in cells(work / "r.db") if r["status"] == "ok"]
    base = [r for r in ok if r["method"] == "baseline" and r["target"] == "torch-cpu"][0]
    assert base["top1_retrained"] > 0.5  # the synthetic classes are learnable: far above 10%
    for r in ok:
        if r["target"] == "null":
            assert r["top1_target"] is None
        else:  # computed by the harness from the runtime's own outputs
            assert abs(r["top1_target"] - r["top1_retrained"]) <= 0.01, dict(r)
    l1 = [r for r in ok if r["method"] == "l1-filter"][0]
    assert l1["params_total"] < base["params_total"] and l1["compression_ratio"] > 1.5
    wl = [r for r in ok if r["method"] == "weight-level"][0]
    assert wl["params_total"] == base["params_total"] and wl["params_nonzero"] < base["params_nonzero"]


def test_every_scored_row_carries_its_accuracy_intervals(sweep) -> None:  # type: ignore[no-untyped-def]
    """The runtime's per-item results are stored with each cell; the rows read back carry
    the top-1's interval around the stored top-1 and the loss's paired interval around the
    loss against the row's own baseline (the null target scores nothing: no interval)."""
    from harness.accuracy_ci import unpack
    from harness.recommend import accuracy_losses
    from harness.store import Store

    work, _, first = sweep
    con = sqlite3.connect(work / "r.db")
    stored = con.execute("SELECT target, top1_target, eval_samples, items_correct FROM cells "
                         "WHERE status='ok'").fetchall()
    con.close()
    for target, top1, n, text in stored:
        if target == "null":
            assert text is None
            continue
        vec = unpack(text)
        assert vec is not None and vec.size <= n and round(float(vec.mean()), 5) == top1
    st = Store(work / "r.db", readonly=True)
    rows = [r for r in st.rows() if r["status"] == "ok"]
    st.close()
    losses = accuracy_losses(rows)
    for r in rows:
        if r["target"] == "null":
            assert r["top1_target_ci_low"] is None
            continue
        assert r["top1_target_ci_low"] <= r["top1_target"] <= r["top1_target_ci_high"]
        if r["method"] == "baseline":
            assert r["accuracy_loss_ci_low"] is None
        else:
            assert r["accuracy_loss_ci_low"] <= losses[id(r)] <= r["accuracy_loss_ci_high"]
    assert "95% CI [" in first.stdout and "(n=" in first.stdout  # the table says it too


def test_measurements_for_every_finished_cell(sweep) -> None:  # type: ignore[no-untyped-def]
    work, _, _ = sweep
    con = sqlite3.connect(work / "r.db")
    n = con.execute(
        "SELECT COUNT(*) FROM measurements m JOIN cells c USING (cell_key, run_id) "
        "WHERE c.status='ok' AND m.latency_p50_ms > 0 AND m.throughput_ips > 0 "
        "AND m.speedup > 0").fetchone()[0]
    runs = con.execute("SELECT machine, versions, git_commit FROM runs").fetchall()
    con.close()
    assert n == 3 * len(TARGETS) * 2  # two batch sizes
    machine, versions = json.loads(runs[0][0]), json.loads(runs[0][1])
    assert machine["cores_logical"] >= 1 and "isa" in machine and machine["memory_gib"] > 0
    assert {"torch", "onnxruntime", "openvino", "nncf"} <= set(versions)


def test_report_and_table(sweep) -> None:  # type: ignore[no-untyped-def]
    work, _, first = sweep
    report = work / "report"
    assert (report / "index.html").exists()
    assert (report / "speedup_vs_compression.png").stat().st_size > 1000
    assert (report / "accuracy_vs_speedup.png").stat().st_size > 1000
    html = (report / "index.html").read_text()
    assert "no layer named nope" in html and "weight-level" in html
    assert "loss 95% CI" in html and re.search(r"<td[^>]*>\[-?[0-9.]+, -?[0-9.]+\]</td>", html)
    for head in ("Target", "Model", "Method", "Precision", "Batch", "Metric", "Score", "Units"):
        assert head in first.stdout


def test_resume_skips_finished_cells_and_force_redoes_them(sweep) -> None:  # type: ignore[no-untyped-def]
    work, args, _ = sweep
    cache = sorted((work / ".harness" / "cache").glob("compressed/*/model.safetensors")) or sorted(
        (work / "r.db").parent.glob("cache/compressed/*/model.safetensors"))
    assert cache  # the compressed models are cached (as data, see harness/modeldata.py)
    mtimes = {p: p.stat().st_mtime_ns for p in cache}
    again = run_cli(*args, cwd=work)
    assert again.returncode == 1, again.stderr  # the failed cells are retried, and fail again
    assert f"0 ok, {len(TARGETS)} failed (12 more stored by earlier runs, skipped)" in again.stdout
    assert again.stdout.count("(stored, skipped)") + again.stderr.count("(stored, skipped)") == 12
    rows = cells(work / "r.db")
    assert sum(r["status"] == "ok" for r in rows) == 12  # no finished cell was redone
    assert sum(r["status"] == "failed" for r in rows) == 8  # failed cells are retried
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    forced = run_cli(*args, "--force", "--method", "l1-filter", cwd=work)
    assert forced.returncode == 1, forced.stderr
    rows = cells(work / "r.db")
    assert sum(r["status"] == "ok" for r in rows) == 12 + 2 * len(TARGETS)


def test_export_csv_and_json(sweep) -> None:  # type: ignore[no-untyped-def]
    work, _, _ = sweep
    res = run_cli("export", "--format", "csv", "--store", str(work / "r.db"), cwd=work)
    assert res.returncode == 0, res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    needed = ("suite model method method_config target precision batch_size top1_pruned "
              "top1_retrained top1_target params_total params_nonzero flops size_bytes "
              "latency_p50_ms latency_p95_ms latency_p99_ms throughput_ips speedup "
              "compression_ratio status error run_id cell_key").split()
    assert set(needed) <= set(rows[0])
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 3 * len(TARGETS) * 2
    assert all(float(r["latency_p50_ms"]) > 0 for r in ok)
    res = run_cli("export", "--format", "json", "--store", str(work / "r.db"), cwd=work)
    assert len(json.loads(res.stdout)) == len(rows)


def test_report_rerenders_from_store_alone(sweep) -> None:  # type: ignore[no-untyped-def]
    """From the store alone, and without torch or a runtime (the suite's budgets are read
    from its file's own keys: `suite.declared_budgets`)."""
    import subprocess
    import sys

    work, _, _ = sweep
    out = work / "again"
    code = ("import sys; from harness import cli; sys.argv = ['harness', *sys.argv[1:]]\n"
            "try:\n    cli.main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print([m for m in ('torch', 'onnxruntime', 'openvino') if m in sys.modules])")
    res = subprocess.run([sys.executable, "-c", code, "report", "--store", str(work / "r.db"),
                          "--suite", "tiny", "--out", str(out)], cwd=work, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().splitlines()[-1] == "[]", res.stdout
    assert (out / "index.html").exists() and (out / "speedup_vs_compression.png").exists()


def test_a_version_1_store_is_migrated_without_losing_rows(sweep, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from harness.store import SCHEMA_VERSION, Store

    work, _, _ = sweep
    db = tmp_path / "old.db"
    shutil.copy(work / "r.db", db)
    con = sqlite3.connect(db)
    n = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    con.execute("CREATE TABLE c2 AS SELECT * FROM cells")
    con.execute("DROP TABLE cells")
    cols = [r[1] for r in con.execute("PRAGMA table_info(c2)") if r[1] not in
            ("metric", "postprocess_ms")]
    con.execute(f"CREATE TABLE cells AS SELECT {', '.join(cols)} FROM c2")
    con.execute("DROP TABLE c2")
    con.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    con.commit()
    con.close()
    st = Store(db)
    assert len({r["cell_key"] + r["run_id"] for r in st.rows(latest=False)}) == n
    assert st.db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    st.close()


def test_latest_rows_are_one_per_logical_cell(sweep, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Cells measured again under other settings (another cell key) supersede the old ones."""
    import shutil

    from harness.store import Store

    work, _, _ = sweep
    db = tmp_path / "s.db"
    shutil.copy(work / "r.db", db)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO cells (cell_key, run_id, suite, model, method, method_config, "
                "target, status, created) SELECT 'other-key', run_id, suite, model, method, "
                "method_config, target, 'ok', '9999' FROM cells WHERE method='baseline' "
                "AND target='null' LIMIT 1")
    con.commit()
    con.close()
    st = Store(db)
    rows = [r for r in st.rows() if r["method"] == "baseline" and r["target"] == "null"]
    st.close()
    assert [r["cell_key"] for r in rows] == ["other-key"]
