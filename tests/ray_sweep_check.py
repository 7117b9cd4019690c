"""Run by tests/test_ray.py inside a private network namespace (loopback only): a 3-node Ray
cluster on 127.0.0.1 (head, a compute node, a timing node), the same tiny sweep through
`--executor local` and `--executor ray`, then a Ray sweep whose worker is killed (SIGKILL)
mid-measurement, then `harness tune --executor ray` on the same cluster; a second cluster
without a shared cache; a third with two timing nodes of 1 and 2 CPUs and a compute node that
advertises a GPU (this machine has none: Ray counts what a node says), where a worker is killed
mid-fine-tune, a `--device cuda` sweep runs, and last a sweep loses the timing node holding its
first measurement (removed from the cluster mid-way). Prints one JSON object with what the
test asserts. Not collected by pytest.

    python tests/ray_sweep_check.py WORK   (WORK: an empty folder for stores, caches and data)

Ray's own session files (logs, sockets) go to a folder of their own under the system's temp
folder, removed at exit: under WORK their socket paths could pass the 107 bytes a Unix socket
name may have, and in Ray's default /tmp/ray every run would leave one session folder behind.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from conftest import tiny_suite, write_mnist_like  # noqa: E402

METHODS = """
[[methods]]
name = "l1-filter"
grid = { ratio = [0.5] }

[[methods]]
name = "int8-ptq"
config = { calibration = 32 }
"""


RAY_TMP = tempfile.mkdtemp(prefix="cm-ray-")  # the clusters' session files; see the docstring
WRITES: Counter[str] = Counter()  # cell key -> rows the driver wrote for it (put_cell calls)


def count_writes() -> None:
    """Count the driver's row writes: the store's primary key would hide a second write of a
    cell (INSERT OR REPLACE), the count does not."""
    from harness.store import Store

    real = Store.put_cell

    def put_cell(self: Store, cell: dict[str, object], *a: object, **kw: object) -> None:
        WRITES[str(cell["cell_key"])] += 1
        real(self, cell, *a, **kw)

    Store.put_cell = put_cell  # type: ignore[method-assign]


def sweep(work: Path, data: Path, store: str, cache: str, executor: object = None,
          device: str = "cpu") -> str:
    from harness import suite as suites
    from harness.runner import RunOptions, Runner

    s = suites.load(str(tiny_suite(work, "raytiny", '["lenet-5"]', METHODS)))
    opts = RunOptions(suite=s, profile="smoke", targets=["onnxruntime-cpu", "openvino-cpu"],
                      store=work / store, cache_dir=work / cache, data_dir=data, device=device)
    WRITES.clear()
    return Runner(opts, check_device=executor is None).run(executor)


def rows(work: Path, store: str, run_id: str) -> list[dict[str, object]]:
    from harness.store import Store

    st = Store(work / store)
    out = []
    for r in st.db.execute("SELECT cell_key, status, error, top1_pruned, top1_retrained, "
                           "top1_target, params_nonzero, macs, node FROM cells WHERE run_id=?",
                           (run_id,)):
        out.append(dict(r))
    st.close()
    return out


TUNE_METHODS = """
[[methods]]
name = "l1-filter"
search = { ratio = [0.2, 0.7] }
"""


def tune(work: Path, data: Path, address: str) -> dict[str, object]:
    """`harness tune --executor ray` (the CLI, a process of its own) on the cluster: 2 trials;
    what it stored, and on which nodes its cells were timed."""
    import subprocess

    from conftest import harness_bin

    from harness.store import Store

    suite = tiny_suite(work, "raytune", '["lenet-5"]', TUNE_METHODS)
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPRESSMARK_FAULT")}
    res = subprocess.run([*harness_bin(), "tune", "--suite", str(suite), "--profile", "smoke",
                          "--target", "onnxruntime-cpu", "--trials", "2",
                          "--store", str(work / "tune.db"), "--data-dir", str(data),
                          "--report-dir", str(work / "tune-report"), "--executor", "ray",
                          "--ray-address", address],
                         capture_output=True, text=True, timeout=240, env=env, cwd=work)
    out: dict[str, object] = {"rc": res.returncode, "tail": (res.stdout + res.stderr)[-2000:]}
    if (work / "tune.db").exists():
        st = Store(work / "tune.db")
        out["states"] = [r["state"] for r in st.trials()]
        out["nodes"] = [json.loads(n)["ray_node"] for (n,) in st.db.execute(
            "SELECT node FROM cells WHERE status='ok'")]
        out["executors"] = [json.loads(x)["executor"]["name"] for (x,) in st.db.execute(
            "SELECT settings FROM runs")]
        st.close()
    return out


def start_cluster(timing_cpus: int, *more_timing: int, gpus: int = 0) -> tuple[object, ...]:
    """Head (schedules only), a 2-CPU compute node (advertising `gpus`) and timing nodes of
    `timing_cpus`, *`more_timing` CPUs; connected. Returns the cluster, then the timing
    nodes, then the compute node."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "temp_dir": RAY_TMP})
    compute = cluster.add_node(num_cpus=2, num_gpus=gpus)
    timing = [cluster.add_node(num_cpus=c, resources={"timing": 1})
              for c in (timing_cpus, *more_timing)]
    ray.init(address=cluster.address, log_to_driver=False, include_dashboard=False)
    cluster.wait_for_nodes()
    return (cluster, *timing, compute)


def lose_a_timing_node(cluster: object, nodes: tuple[object, ...], held: Path, work: Path,
                       data: Path) -> dict[str, object]:
    """A sweep whose first measurement is held mid-way (the armed `held` fault) while the
    timing node running it is removed from the cluster (its raylet and workers die); what
    the sweep stored, which node went and what the driver said."""
    import sqlite3
    import threading

    from harness import suite as suites
    from harness.executors.ray import RayExecutor
    from harness.runner import Events, RunOptions, Runner

    removed: list[str] = []

    def remove_the_measuring_node() -> None:
        while not held.exists():
            time.sleep(0.1)
        pid = int(held.read_text().split()[1])  # the worker holding the measurement
        raylet = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        for node in nodes:
            if node.all_processes["raylet"][0].process.pid == raylet:  # type: ignore[attr-defined]
                removed.append(node.node_id)  # type: ignore[attr-defined]
                cluster.remove_node(node)  # type: ignore[attr-defined]
        Path(f"{held}.release").touch()

    threading.Thread(target=remove_the_measuring_node, daemon=True).start()
    logs: list[str] = []
    folder = work / "loss"
    folder.mkdir()
    opts = RunOptions(suite=suites.load(str(tiny_suite(folder))), profile="smoke",
                      targets=["onnxruntime-cpu"], store=folder / "r.db",
                      cache_dir=folder / "cache", data_dir=data)
    run_id = Runner(opts, Events(log=logs.append)).run(
        RayExecutor(cluster.address))  # type: ignore[attr-defined]
    con = sqlite3.connect(folder / "r.db")
    stored = [{"cell_key": k, "status": s, "error": e, "node": json.loads(n or "{}")}
              for k, s, e, n in con.execute("SELECT cell_key, status, error, node FROM cells "
                                            "WHERE run_id=?", (run_id,))]
    con.close()
    return {"removed": removed, "nodes": [n.node_id for n in nodes],  # type: ignore[attr-defined]
            "rows": stored, "gone_lines": [ln for ln in logs if "is gone" in ln]}


def main(work: Path) -> None:
    import ray

    from harness.executors.ray import RayExecutor

    data = work / "data"
    write_mnist_like(data / "MNIST" / "raw")
    t0 = time.perf_counter()
    local_id = sweep(work, data, "local.db", "cache-local")
    t_local = time.perf_counter() - t0
    os.environ.pop("COMPRESSMARK_FAULT", None)

    # the fault hook is in every worker's environment from the start, disarmed while its
    # marker exists; removing the marker arms it for the third sweep
    marker = work / "killed-measure"
    marker.write_text("disarmed")
    os.environ["COMPRESSMARK_FAULT_MARKER"] = str(marker)
    os.environ["COMPRESSMARK_FAULT"] = "measure"
    cluster, timing, _ = start_cluster(timing_cpus=1)
    t0 = time.perf_counter()
    ray_id = sweep(work, data, "ray.db", "cache-ray", RayExecutor(cluster.address))
    t_ray = time.perf_counter() - t0
    count_writes()
    from harness.errors import UsageError

    try:  # a cuda sweep on a cluster without a GPU would wait forever for one
        sweep(work, data, "cuda0.db", "cache-ray", RayExecutor(cluster.address), device="cuda")
        no_gpu = "ran"
    except UsageError as exc:
        no_gpu = str(exc)

    # a worker killed (kill -9) in the middle of a measure step (one in a compute step: the
    # third cluster below): Ray retries the step; the driver writes every cell once
    marker.unlink()
    kill_id = sweep(work, data, "kill.db", "cache-kill", RayExecutor(cluster.address))
    kill_writes = dict(WRITES)
    from harness.store import Store

    st = Store(work / "kill.db")
    per_key = [n for (n,) in st.db.execute(
        "SELECT COUNT(*) FROM cells WHERE run_id=? GROUP BY cell_key", (kill_id,))]
    executor = json.loads(st.db.execute("SELECT settings FROM runs WHERE run_id=?",
                                        (kill_id,)).fetchone()[0])["executor"]
    auto = executor["artifacts"]
    st.close()
    tuned = tune(work, data, cluster.address)
    ray.shutdown()
    cluster.shutdown()

    # no shared cache: every node its own, models through Ray's object store; the timing
    # node has no CPU for compute steps, so everything it measures reached it as an object
    os.environ["COMPRESSMARK_FAULT"] = ""
    cluster, timing2, _ = start_cluster(timing_cpus=0)
    obj_id = sweep(work, data, "obj.db", "cache-obj",
                   RayExecutor(cluster.address, artifacts="object-store"))
    received = work / "cache-obj" / "nodes" / timing2.node_id[:16] / "received.log"
    ray.shutdown()
    cluster.shutdown()

    # timing nodes of 1 and 2 CPUs, and a compute node that says it has a GPU; a worker is
    # killed mid-fine-tune (a compute step), with relative paths from the driver's folder
    fine = work / "killed-finetune"
    os.environ.update(COMPRESSMARK_FAULT="finetune", COMPRESSMARK_FAULT_MARKER=str(fine))
    # and, disarmed until the last sweep, a measurement held mid-way (the node-loss sweep)
    held = work / "held-measure"
    held.write_text("disarmed")
    os.environ.update(COMPRESSMARK_FAULT_2="measure", COMPRESSMARK_FAULT_2_ACTION="pause",
                      COMPRESSMARK_FAULT_2_MARKER=str(held))
    cluster, small, big, gpu = start_cluster(1, 2, gpus=1)
    here = os.getcwd()
    os.chdir(work)
    try:
        two_id = sweep(Path("."), Path("data"), "two.db", "cache-two", RayExecutor(cluster.address))
        two_writes = dict(WRITES)
        cuda_id = sweep(Path("."), Path("data"), "cuda.db", "cache-two",
                        RayExecutor(cluster.address), device="cuda")
    finally:
        os.chdir(here)
    held.unlink()  # armed: the next sweep's first measurement waits, and its node is removed
    node_loss = lose_a_timing_node(cluster, (small, big), held, work, data)
    ray.shutdown()
    cluster.shutdown()
    print("RESULT " + json.dumps({
        "local": rows(work, "local.db", local_id), "ray": rows(work, "ray.db", ray_id),
        "kill": rows(work, "kill.db", kill_id), "kill_rows_per_cell": per_key,
        "auto_artifacts": auto, "driver_beside": executor["driver_beside_timing_nodes"],
        "object_store": rows(work, "obj.db", obj_id),
        "received": received.read_text().split() if received.exists() else [],
        "timing_node_2": timing2.node_id,
        "killed": (work / "killed-measure").read_text() if (work / "killed-measure").exists()
        else None,
        "timing_node": timing.node_id, "seconds": {"local": t_local, "ray": t_ray},
        "tune": tuned,
        "kill_writes": kill_writes, "no_gpu": no_gpu, "timing_facts": executor["timing_nodes"],
        "two": rows(work, "two.db", two_id), "two_writes": two_writes,
        "two_nodes": {small.node_id: 1.0, big.node_id: 2.0},
        "killed_finetune": fine.read_text() if fine.exists() else None,
        "cuda": rows(work, "cuda.db", cuda_id), "gpu_node": gpu.node_id,
        "node_loss": node_loss,
        "ray_tmp": RAY_TMP,
        "ray_sessions": sorted(p.name for p in Path(RAY_TMP).glob("session_2*")),
    }))


if __name__ == "__main__":
    try:
        main(Path(sys.argv[1]).resolve())
    finally:
        shutil.rmtree(RAY_TMP, ignore_errors=True)
