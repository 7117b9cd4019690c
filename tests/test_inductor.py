"""torch-inductor: compiled outputs match eager, compile time is recorded apart from the timed
calls, INT8 is refused with its reason, and a sweep through the CLI stores ok cells."""

from __future__ import annotations

import json
import sqlite3
import time

import numpy as np
import pytest
import torch

from conftest import run_cli, tiny_suite
from harness.api import Artifact
from harness.registry import MODELS, TARGETS
from harness.timing import first_call_ns


@pytest.fixture(scope="module")
def inductor():  # type: ignore[no-untyped-def]
    """The target, or a skip when torch.compile cannot build CPU kernels on this machine."""
    target = TARGETS.get("torch-inductor")()
    why = target.available()
    if why:
        pytest.skip(why)
    try:  # the real toolchain, once: a broken compiler setup is a skip, not a failure
        torch.compile(torch.nn.Linear(2, 2), backend="inductor", dynamic=False)(torch.ones(1, 2))
    except Exception as exc:
        pytest.skip(f"torch.compile does not work here: {type(exc).__name__}: {exc}")
    return target


def artifact(name: str) -> Artifact:
    torch.manual_seed(0)
    spec = MODELS.get(name)
    return Artifact(None, spec.build(num_classes=10).eval(), spec.input_shape, (10,))


@pytest.mark.parametrize("name", ["lenet-5", "lenet-300-100"])
def test_compiled_outputs_match_eager(inductor, name: str) -> None:  # type: ignore[no-untyped-def]
    art = artifact(name)
    sess = inductor.prepare(art, 3, 1, "fp32")
    x = np.random.default_rng(1).standard_normal((3, *art.input_shape)).astype(np.float32)
    with torch.inference_mode():
        want = art.module(torch.from_numpy(x)).numpy()
    got = sess.run(x)[0]
    assert got.shape == want.shape == (3, 10)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * max(1.0, np.abs(want).max()))
    assert sess.precision == "fp32"
    assert not np.allclose(got, 0)  # a real forward, not a preallocated buffer


def test_compile_is_timed_in_prepare_not_in_the_calls(inductor) -> None:  # type: ignore[no-untyped-def]
    art = artifact("lenet-5")
    sess = inductor.prepare(art, 2, 1, "fp32")
    info = sess.runtime_info
    assert info["compile_reused"] is False and info["compile_s"] > 0
    x = np.zeros((2, *art.input_shape), np.float32)
    first = first_call_ns(sess, x) / 1e9  # what the runner stores as first_call_ms
    assert first < 0.2 * info["compile_s"], (first, info)
    # the same module at the same batch: the cached graph, its compile seconds reported again
    t0 = time.perf_counter()
    again = inductor.prepare(art, 2, 1, "fp32")
    assert time.perf_counter() - t0 < 0.2 * info["compile_s"]
    assert again.runtime_info == {"compile_s": info["compile_s"], "compile_reused": True}
    np.testing.assert_array_equal(again.run(x)[0], sess.run(x)[0])


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).relu()


def test_more_graphs_than_dynamos_default_limit_are_still_compiled(inductor) -> None:  # type: ignore[no-untyped-def]
    """Every instance of a class shares one forward code object, and Dynamo's default limit of
    8 graphs per code object would make the 9th prepared session silently run eager."""
    from torch._dynamo.utils import counters

    mods = [Tiny().eval(), Tiny().eval()]
    before = counters["frames"]["ok"]
    for b in range(1, 11):  # two modules of one class at ten batch sizes
        inductor.prepare(Artifact(None, mods[b % 2], (4,), (3,)), b, 1, "fp32")
    assert counters["frames"]["ok"] - before == 10


def test_versions_name_torch_and_the_cpp_compiler(inductor) -> None:  # type: ignore[no-untyped-def]
    import shutil
    import subprocess

    v = inductor.versions()
    assert v["torch"] == torch.__version__.split("+")[0]
    assert v["inductor_cpu_backend"] == "cpp"
    from harness.targets.torch_inductor import cxx as inductor_cxx

    cxx = shutil.which(inductor_cxx() or "")
    assert cxx and v["inductor_cxx"] in subprocess.run([cxx, "--version"], capture_output=True,
                                                       text=True).stdout


def test_int8_is_refused_with_the_reason(inductor) -> None:  # type: ignore[no-untyped-def]
    from harness.targets.torch_inductor import int8_unsupported

    why = int8_unsupported()
    assert why and "fp32 only" in why
    with pytest.raises(ValueError, match="fp32 only"):
        inductor.prepare(artifact("lenet-5"), 1, 1, "int8")


def test_sweep_through_the_cli_stores_ok_cells(inductor, tmp_path, data_dir) -> None:  # type: ignore[no-untyped-def]
    methods = """
[[methods]]
name = "l1-filter"
grid = { ratio = [0.5] }

[[methods]]
name = "int8-ptq"
config = { calibration = 32 }
"""
    suite = tiny_suite(tmp_path, models='["lenet-5"]', methods=methods)
    res = run_cli("run", "--suite", str(suite), "--profile", "smoke", "--data-dir", str(data_dir),
                  "--store", str(tmp_path / "r.db"), "--report-dir", str(tmp_path / "report"),
                  "--target", "torch-inductor", cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr  # the int8 cell fails, with its reason
    con = sqlite3.connect(tmp_path / "r.db")
    con.row_factory = sqlite3.Row
    rows = {r["method"]: r
            for r in con.execute("SELECT * FROM cells WHERE target='torch-inductor'")}
    assert set(rows) == {"baseline", "l1-filter", "int8-ptq"}, rows.keys()
    assert rows["int8-ptq"]["status"] == "failed"
    assert "fp32 only" in rows["int8-ptq"]["error"]
    for method in ("baseline", "l1-filter"):
        row = rows[method]
        assert row["status"] == "ok", row["error"]
        assert row["precision"] == "fp32"
        # accuracy from the compiled module's own outputs equals torch eager's
        assert abs(row["top1_target"] - row["top1_retrained"]) <= 0.01
        settings = json.loads(row["runtime_settings"])
        assert set(settings["compile_s"]) == {"1", "8"}, settings
        assert all(s > 0 for s in settings["compile_s"].values())
        meas = con.execute("SELECT batch_size, first_call_ms, latency_p50_ms FROM measurements "
                           "WHERE cell_key=? AND run_id=?",
                           (row["cell_key"], row["run_id"])).fetchall()
        assert {m["batch_size"] for m in meas} == {1, 8}
        for m in meas:  # the compile is in runtime_settings, not in the first or timed calls
            assert m["latency_p50_ms"] > 0
            assert m["first_call_ms"] < 200 * settings["compile_s"][str(m["batch_size"])]
    con.close()
