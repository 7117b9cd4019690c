"""The wheel holds every subpackage and suite file; a third-party plugin is found by entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from conftest import ROOT, run_cli

SUBPACKAGES = ("harness", "harness/methods", "harness/targets", "harness/reports",
               "harness/benchmarks", "harness/benchmarks/models", "harness/benchmarks/datasets",
               "harness/benchmarks/suites")


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          timeout=300)


def test_wheel_contains_every_subpackage_and_suite(tmp_path: Path) -> None:
    res = pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT))
    assert res.returncode == 0, res.stderr
    wheel = next(tmp_path.glob("compressmark-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg in SUBPACKAGES:
        assert f"{pkg}/__init__.py" in names, pkg
    suites = {p.name for p in (ROOT / "benchmarks" / "suites").glob("*.toml")}
    assert suites and all(f"harness/benchmarks/suites/{s}" in names for s in suites)
    assert "harness/reports/templates/report.html.j2" in names
    for folder, pkg in (("methods", "harness/methods"), ("targets", "harness/targets")):
        for py in (ROOT / folder).glob("*.py"):
            assert f"{pkg}/{py.name}" in names, py
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "harness = harness.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()


def test_example_plugin_is_discovered_and_runs(tmp_path: Path, data_dir: Path) -> None:
    site = tmp_path / "site"
    res = pip("install", "--no-deps", "--no-build-isolation", "-q", "--target", str(site),
              str(ROOT / "tests" / "plugin_example"))
    assert res.returncode == 0, res.stderr
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = run_cli("list", env=env)
    assert "random-filter" in listed.stdout and "example-random" in listed.stdout
    run = run_cli("run", "--suite", "example-random", "--profile", "smoke", "--data-dir",
                  str(data_dir), "--store", str(tmp_path / "r.db"), "--report-dir",
                  str(tmp_path / "rep"), env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "random-filter" in run.stdout and "FAILED" not in run.stdout + run.stderr
    # without the plugin on the path, its method is simply unknown
    plain = run_cli("list", "methods")
    assert "random-filter" not in plain.stdout
