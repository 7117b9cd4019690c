"""`--device cuda`: where a process may lack the GPU, and what it then does.

A cuda sweep on Ray trains on GPU nodes; its driver and its timing nodes may have no GPU (the
targets it times are CPU runtimes). The CPU-side tests here run everywhere: a local run refuses cuda in one line where
there is none, and a process without CUDA (a Ray worker on a timing node) measures a cuda
sweep's cached models, scoring them on the CPU, and fails a step that would have to train,
naming its node. The tests marked `cuda` run only where torch sees a CUDA device and skip
cleanly elsewhere (CI has none)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import cells, run_cli, tiny_suite

METHODS = """
[[methods]]
name = "weight-level"
grid = { sparsity = [0.5] }
"""

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def _options(work: Path, data_dir: Path, device: str, store: str = "r.db") -> Any:
    from harness import suite as suites
    from harness.runner import RunOptions

    s = suites.load(str(tiny_suite(work, methods=METHODS)))
    return RunOptions(suite=s, profile="smoke", targets=["onnxruntime-cpu"],
                      store=work / store, cache_dir=work / "cache", data_dir=data_dir,
                      device=device)


@no_cuda
def test_a_local_run_refuses_cuda_where_there_is_none(tmp_path: Path, data_dir: Path) -> None:
    suite = tiny_suite(tmp_path, methods=METHODS)
    res = run_cli("run", "--suite", str(suite), "--profile", "smoke", "--device", "cuda",
                  "--data-dir", str(data_dir), "--store", str(tmp_path / "r.db"), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "--device cuda: no CUDA device is available here (choose: cpu)" in res.stderr
    assert not (tmp_path / "r.db").exists()  # nothing stored, nothing lost


@no_cuda
def test_a_process_without_cuda_measures_a_cuda_sweep_on_the_cpu(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a measure step on a GPU-less timing node does: the models a GPU node trained are
    in the cache (here: this machine's CPU-trained weights, copied under the cuda sweep's
    keys, as a GPU node would have written them); it loads, scores and times them, training
    nothing. A step that would have to train fails, naming the node, instead of training on
    the CPU under keys that say cuda."""
    import harness.runner as runner_mod
    from harness.runner import Runner

    cpu = Runner(_options(tmp_path, data_dir, "cpu", "cpu.db"))
    cpu.run()
    cuda = Runner(_options(tmp_path, data_dir, "cuda", "cuda.db"), check_device=False)
    (model,) = cuda.o.suite.models
    runs = cuda.method_runs(model)
    assert cuda.baseline_folder(model) != cpu.baseline_folder(model)  # the device is in keys
    shutil.copytree(cpu.baseline_folder(model), cuda.baseline_folder(model))
    for run in runs:
        if run.method != "baseline":
            shutil.copytree(cpu.compressed_folder(model, run), cuda.compressed_folder(model, run))

    def no_training(*a: Any, **kw: Any) -> None:
        raise AssertionError("a measure step of cached models trained")

    monkeypatch.setattr(runner_mod, "fit", no_training)
    cuda.run()
    cpu_rows, cuda_rows = cells(tmp_path / "cpu.db"), cells(tmp_path / "cuda.db")
    assert len(cuda_rows) == len(cpu_rows) == 2
    assert all(r["status"] == "ok" for r in cuda_rows), [r["error"] for r in cuda_rows]
    assert {r["cell_key"] for r in cuda_rows}.isdisjoint(r["cell_key"] for r in cpu_rows)
    by_method = {r["method"]: r for r in cpu_rows}
    for r in cuda_rows:  # the same weights, scored on the CPU in both
        want = by_method[r["method"]]
        for col in ("top1_baseline", "top1_pruned", "top1_retrained", "top1_target"):
            assert r[col] == want[col], (r["method"], col)

    # the compressed model is not cached: its compress step must train, and cannot here
    shutil.rmtree(cuda.compressed_folder(model, next(r for r in runs if r.method != "baseline")))
    again = Runner(dataclasses.replace(cuda.o, store=tmp_path / "again.db"), check_device=False)
    again.run()
    rows = {r["method"]: r for r in cells(tmp_path / "again.db")}
    assert rows["baseline"]["status"] == "ok"
    failed = rows["weight-level"]
    assert failed["status"] == "failed"
    assert "compress needs --device cuda" in failed["error"]
    assert f"on node {again.node['host']} sees no CUDA device" in failed["error"]


@needs_cuda
def test_a_cuda_sweep_trains_on_the_gpu_and_scores_on_the_runtime(
        tmp_path: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a GPU is at hand: the baseline and the fine-tune train on it, and the accuracy
    the runtime measures on the exported network agrees with torch's on the GPU."""
    import harness.runner as runner_mod
    from harness.runner import Runner

    devices: list[str] = []
    real_fit = runner_mod.fit

    def fit(model: torch.nn.Module, *a: Any, **kw: Any) -> torch.nn.Module:
        out = real_fit(model, *a, **kw)
        devices.append(next(model.parameters()).device.type)
        return out

    monkeypatch.setattr(runner_mod, "fit", fit)
    Runner(_options(tmp_path, data_dir, "cuda")).run()
    rows = cells(tmp_path / "r.db")
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    assert devices == ["cuda", "cuda"]  # the baseline, then the fine-tune
    for r in rows:  # 256 evaluation items: at most a couple may flip between the two
        assert abs(r["top1_retrained"] - r["top1_target"]) <= 2 / 256 + 1e-9
