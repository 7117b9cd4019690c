"""Bad input: one line naming the problem and the valid choices, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli, tiny_suite

CASES = {
    "unknown suite": (["run", "--suite", "nope"], "unknown suite 'nope' (choose from:"),
    "unknown target": (["run", "--suite", "fashion-mnist-lenet", "--target", "nope"],
                       "unknown target 'nope' (choose from: null, onnxruntime-cpu"),
    "unknown profile": (["run", "--suite", "fashion-mnist-lenet", "--profile", "huge"],
                        "unknown profile 'huge' (choose from: smoke, quick, full)"),
    "unknown method": (["run", "--suite", "fashion-mnist-lenet", "--method", "nope"],
                       "unknown method 'nope' (choose from: baseline, "),
    "unknown device": (["run", "--suite", "fashion-mnist-lenet", "--device", "tpu"],
                       "unknown device 'tpu' (choose from: cpu, cuda)"),
    "unknown executor": (["run", "--suite", "fashion-mnist-lenet", "--executor", "dask"],
                         "unknown executor 'dask' (choose from: local, ray)"),
    "tune: unknown executor": (["tune", "--suite", "fashion-mnist-resnet", "--executor", "dask"],
                               "unknown executor 'dask' (choose from: local, ray)"),
    "tune: ray address without ray": (["tune", "--suite", "fashion-mnist-resnet",
                                       "--ray-address", "auto"],
                                      "--ray-address needs --executor ray"),
    "tune: unknown device": (["tune", "--suite", "fashion-mnist-resnet", "--device", "tpu"],
                             "unknown device 'tpu' (choose from: cpu, cuda)"),
    "missing option": (["run"], "Missing option '--suite'"),
    "model not in suite": (["run", "--suite", "fashion-mnist-lenet", "--model", "resnet-56"],
                           "model 'resnet-56' is not in suite fashion-mnist-lenet (choose from: "
                           "lenet-300-100, lenet-5)"),
    "unknown list kind": (["list", "gizmos"], "'gizmos' is not one of"),
    "unknown format": (["export", "--format", "xml"], "'xml' is not one of 'csv', 'json'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_2(case: str, tmp_path: Path) -> None:
    args, message = CASES[case]
    res = run_cli(*args, "--store", str(tmp_path / "s.db"), cwd=tmp_path) if args[0] in (
        "run", "export", "tune") and args != ["run"] else run_cli(*args, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stderr
    assert message in lines[0]
    assert "Traceback" not in res.stderr


def test_malformed_suite_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x'\ndataset = 'mnist'\nmodels = ['lenet-5']\nprofiles = {}\nbogus = 1\n")
    res = run_cli("run", "--suite", str(bad), cwd=tmp_path)
    assert res.returncode == 2 and "unknown key 'bogus' (valid:" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_missing_dataset_says_how_to_get_it(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path)
    store = tmp_path / "keep.db"
    store.write_bytes(b"")  # an existing store must survive a bad run untouched
    res = run_cli("run", "--suite", str(suite), "--profile", "smoke", "--data-dir",
                  str(tmp_path / "empty"), "--store", str(store), cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert "dataset 'mnist' not found" in line and "--download" in line
    assert len(line.splitlines()) == 1
    assert store.read_bytes() == b""


def test_report_without_store(tmp_path: Path) -> None:
    res = run_cli("report", "--store", str(tmp_path / "none.db"), cwd=tmp_path)
    assert res.returncode == 2 and "no store at" in res.stderr


def test_help_on_every_command() -> None:
    for cmd in ([], ["list"], ["run"], ["report"], ["export"]):
        res = run_cli(*cmd, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout, (cmd, res.stderr)


def test_list_shows_descriptions_and_availability() -> None:
    res = run_cli("list")
    assert res.returncode == 0
    out = res.stdout
    assert "l1-filter" in out and "Li et al. 2016" in out
    assert "fashion-mnist-lenet" in out and "openvino-cpu" in out
    res = run_cli("list", "targets")
    assert "null" in res.stdout and "methods" not in res.stdout
