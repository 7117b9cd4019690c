"""Run by tests/test_ray.py inside a private network namespace (loopback only): a Ray cluster
with two 1-CPU timing nodes; the first measurement is held mid-way (the fault hook's pause)
and the timing node running it is removed from the cluster (its raylet and workers die).
The sweep must drop that node, measure the held cell again and the rest on the node still
there, and store every cell ok once. Prints one JSON object. Not collected by pytest.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import tiny_suite, write_mnist_like  # noqa: E402
from ray_sweep_check import start_cluster  # noqa: E402


def main() -> None:
    import ray

    from harness import suite as suites
    from harness.executors.ray import RayExecutor
    from harness.runner import Events, RunOptions, Runner

    work = Path(tempfile.mkdtemp())
    marker = work / "held"
    # the workers inherit this: the first to reach a measurement waits for <marker>.release
    os.environ.update(COMPRESSMARK_FAULT="measure", COMPRESSMARK_FAULT_ACTION="pause",
                      COMPRESSMARK_FAULT_MARKER=str(marker))
    cluster, node_a, node_b, _ = start_cluster(1, 1)
    removed: list[str] = []

    def remove_the_measuring_node() -> None:
        while not marker.exists():
            time.sleep(0.1)
        pid = int(marker.read_text().split()[1])  # the worker holding the measurement
        raylet = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        for node in (node_a, node_b):
            if node.all_processes["raylet"][0].process.pid == raylet:  # type: ignore[attr-defined]
                removed.append(node.node_id)  # type: ignore[attr-defined]
                cluster.remove_node(node)  # type: ignore[attr-defined]
        Path(f"{marker}.release").touch()

    threading.Thread(target=remove_the_measuring_node, daemon=True).start()
    write_mnist_like(work / "data" / "MNIST" / "raw")
    logs: list[str] = []
    opts = RunOptions(suite=suites.load(str(tiny_suite(work))), profile="smoke",
                      targets=["onnxruntime-cpu"], store=work / "r.db", cache_dir=work / "cache",
                      data_dir=work / "data")
    run_id = Runner(opts, Events(log=logs.append)).run(
        RayExecutor(cluster.address))  # type: ignore[attr-defined]
    con = sqlite3.connect(work / "r.db")
    rows = [{"cell_key": k, "status": s, "error": e, "node": json.loads(n or "{}")}
            for k, s, e, n in con.execute("SELECT cell_key, status, error, node FROM cells "
                                          "WHERE run_id=?", (run_id,))]
    con.close()
    print("RESULT " + json.dumps({
        "removed": removed, "nodes": [node_a.node_id, node_b.node_id],  # type: ignore[attr-defined]
        "rows": rows, "gone_lines": [ln for ln in logs if "is gone" in ln]}), flush=True)
    ray.shutdown()
    cluster.shutdown()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
