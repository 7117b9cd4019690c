"""The smoke profile of the shipped suite on real Fashion-MNIST, end to end, all CPU targets."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from conftest import have_fashion_mnist, run_cli


@pytest.mark.skipif(not have_fashion_mnist(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_lenet_smoke(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    res = run_cli("run", "--suite", "fashion-mnist-lenet", "--profile", "smoke",
                  "--target", "torch-cpu", "--target", "onnxruntime-cpu",
                  "--target", "openvino-cpu", "--store", str(tmp_path / "r.db"),
                  cwd=tmp_path)  # no --data-dir: an explicit one would not read the system copy
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0, res.stderr
    con = sqlite3.connect(tmp_path / "r.db")
    status = con.execute("SELECT status, COUNT(*) FROM cells GROUP BY status").fetchall()
    accs = con.execute("SELECT MIN(top1_target) FROM cells WHERE method='baseline'").fetchone()
    con.close()
    assert dict(status) == {"ok": 2 * 7 * 3}  # 2 models x (baseline + 6 configs) x 3 targets
    assert accs[0] > 0.6  # real pixels, a few seconds of training: well above chance (10%)
    assert (tmp_path / "reports" / "fashion-mnist-lenet" / "index.html").exists()
    # its duration is a figure to watch, not a pass/fail condition (timings drift here)
    print(f"fashion-mnist-lenet smoke, 3 targets: {elapsed:.0f} s")
