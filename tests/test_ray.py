"""`--executor ray` on a real 3-node Ray cluster, loopback only.

The cluster runs inside a private network namespace this test makes (`unshare -n`, loopback
up): Ray rewrites 127.0.0.1 to the host's interface address otherwise, and no traffic may leave
the machine. It is also a private PID namespace (`-p -f --kill-child --mount-proc`): when the
check ends, or is killed at its timeout, every process it started goes with it (a driver
killed outright left Ray's dashboard and runtime-env agents running).
`tests/ray_sweep_check.py` runs the same tiny sweep locally and on the cluster, then once more
with a worker killed (SIGKILL) in the middle of a measurement.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent


# private network, PID and mount namespaces; the shell is the PID namespace's first process,
# so when it ends (or unshare is killed: --kill-child) the kernel ends every process left in it
UNSHARE = ["unshare", "-n", "-p", "-f", "--kill-child", "--mount-proc"]


def _need_namespace() -> None:
    """Skip unless this machine can make the namespaces (root, util-linux, iproute2)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None or subprocess.run(
            [*UNSHARE, "sh", "-c", "ip link set lo up"], capture_output=True,
            timeout=20).returncode != 0:
        pytest.skip("cannot make a private network namespace here (needs root and iproute2)")


pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                       reason="ray not installed (pip install compressmark[ray])"),
]


def _run_check(script: str, timeout: int, work: Path) -> dict:  # type: ignore[type-arg]
    """Run a cluster check script in a private network namespace (loopback only), its files
    in `work`; its RESULT line, parsed."""
    _need_namespace()
    cmd = f"ip link set lo up; {sys.executable} {HERE / script} {shlex.quote(str(work))}"
    res = subprocess.run([*UNSHARE, "sh", "-c", cmd], capture_output=True, text=True,
                         timeout=timeout)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert res.returncode == 0 and lines, res.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:  # type: ignore[type-arg]
    return _run_check("ray_sweep_check.py", 360, tmp_path_factory.mktemp("raycheck"))


def _in_namespace(net_ns: str) -> list[int]:
    """Host PIDs of the processes in the network namespace `net_ns` ("net:[inode]")."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "ns" / "net").readlink().name == net_ns:
                pids.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return pids


def test_a_check_killed_at_its_timeout_leaves_no_process() -> None:
    """A cluster check killed outright (as `subprocess.run` does at its timeout) takes every
    process it started with it: the driver, GCS, raylet and Ray's agents, which outlived a
    killed driver in a network namespace alone."""
    _need_namespace()
    script = ("import os, sys, time, ray\n"
              "from ray.cluster_utils import Cluster\n"
              "c = Cluster(initialize_head=True, head_node_args={'num_cpus': 1, "
              "'temp_dir': sys.argv[1]})\n"
              "ray.init(address=c.address, log_to_driver=False)\n"
              "print('NS', os.readlink('/proc/self/ns/net'), flush=True)\n"
              "time.sleep(300)\n")
    ray_tmp = tempfile.mkdtemp(prefix="cm-ray-")  # short: Ray's socket paths must fit 107 bytes
    cmd = f"ip link set lo up; {sys.executable} -c {shlex.quote(script)} {ray_tmp}"
    proc = subprocess.Popen([*UNSHARE, "sh", "-c", cmd], stdout=subprocess.PIPE, text=True)
    bound = threading.Timer(120, proc.kill)  # a cluster that never comes up: readline ends
    bound.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("NS "), line
        ns = line.split()[1]
        assert len(_in_namespace(ns)) >= 4  # sh, the driver, GCS, raylet (and the agents)
    finally:
        bound.cancel()
        proc.kill()
        proc.wait()
        shutil.rmtree(ray_tmp, ignore_errors=True)
    deadline = time.monotonic() + 15
    while _in_namespace(ns) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _in_namespace(ns) == []


def _cells(rows: list[dict]) -> dict[str, tuple]:  # type: ignore[type-arg]
    return {r["cell_key"]: (r["status"], r["top1_pruned"], r["top1_retrained"],
                            r["top1_target"], r["params_nonzero"], r["macs"]) for r in rows}


def test_the_clusters_session_files_are_removed(result: dict) -> None:  # type: ignore[type-arg]
    """Each of the three clusters kept its logs and sockets in the check's own folder (not
    Ray's /tmp/ray, where every run would leave them), and the check removed that folder."""
    assert len(result["ray_sessions"]) == 3, result["ray_sessions"]
    assert not Path(result["ray_tmp"]).exists()


def test_ray_stores_the_same_cells_as_local(result: dict) -> None:  # type: ignore[type-arg]
    local, ray = _cells(result["local"]), _cells(result["ray"])
    assert len(local) == 6 and local == ray
    assert all(c[0] == "ok" for c in local.values())


def test_every_measurement_ran_on_the_timing_node(result: dict) -> None:  # type: ignore[type-arg]
    for row in result["ray"] + result["kill"]:
        assert json.loads(row["node"])["ray_node"] == result["timing_node"]


def test_a_killed_worker_loses_no_row_and_duplicates_none(result: dict) -> None:  # type: ignore[type-arg]
    assert result["killed"].startswith("measure ")  # a worker really died mid-measurement
    assert result["kill_rows_per_cell"] == [1] * 6
    assert _cells(result["kill"]) == _cells(result["local"])
    # the store's key would hide a second write of a cell: the driver wrote each one once
    assert result["kill_writes"] == {r["cell_key"]: 1 for r in result["kill"]}


def test_measurements_hold_every_cpu_of_timing_nodes_of_different_sizes(result: dict) -> None:  # type: ignore[type-arg]
    # timing nodes of 1 and 2 CPUs: each measurement held all of its own node's CPUs, both
    # nodes timed; a worker killed mid-fine-tune was retried; paths given relative worked
    assert result["killed_finetune"].startswith("finetune ")
    assert _cells(result["two"]) == _cells(result["local"])
    assert result["two_writes"] == {r["cell_key"]: 1 for r in result["two"]}
    held = {json.loads(r["node"])["ray_node"]: json.loads(r["node"])["cpus_held"]
            for r in result["two"]}
    assert held == result["two_nodes"]


def test_cuda_needs_a_gpu_node_not_a_gpu_driver(result: dict) -> None:  # type: ignore[type-arg]
    # no node with a GPU: one line, before anything runs (compute steps would wait forever)
    assert result["no_gpu"].startswith("--device cuda: no node of the Ray cluster advertises")
    # a node that says it has one: the driver (no GPU here) goes on, training steps go there,
    # and fail naming it, since this machine has no CUDA device
    assert len(result["cuda"]) == 6
    for row in result["cuda"]:
        assert row["status"] == "failed"
        assert f"on node {result['gpu_node']} sees no CUDA device" in row["error"]


def test_timing_nodes_facts_are_recorded_and_match_the_driver_on_one_machine(result: dict) -> None:  # type: ignore[type-arg]
    (node,) = result["timing_facts"]
    assert set(node["versions"]) == {"onnxruntime-cpu", "openvino-cpu"} and node["cpu"]
    assert node["unusable"] == {} and node["differs"] == []


def test_a_timing_node_unlike_the_driver_is_named() -> None:
    from harness.executors.ray import differences

    driver = {"cpu": "Xeon A", "versions": {"onnxruntime-cpu": {"onnxruntime": "1.22.0"}},
              "unusable": {}}
    assert differences(driver, driver) == []
    node = {"cpu": "EPYC B", "versions": {"onnxruntime-cpu": {"onnxruntime": "1.20.1"}},
            "unusable": {"openvino-cpu": "openvino not installed"}}
    assert differences(driver, node) == [
        "CPU EPYC B (the driver's: Xeon A)",
        "onnxruntime-cpu {'onnxruntime': '1.20.1'} (the driver's: {'onnxruntime': '1.22.0'})",
        "openvino-cpu cannot run there (openvino not installed)"]


def test_cells_are_keyed_by_the_timing_nodes_not_the_driver(tmp_path: Path) -> None:
    """A stored cell is reused only where it would be timed again: the driver's CPU does not
    enter the key; a pool of one kind keys as that machine would locally; a mixed pool names
    every kind (a cell stored by one of its kinds alone is measured again)."""
    from conftest import tiny_suite

    from harness import suite as suites
    from harness.runner import Runner, RunOptions
    from harness.suite import MethodRun

    r = Runner(RunOptions(suite=suites.load(str(tiny_suite(tmp_path))), profile="smoke",
                          targets=["onnxruntime-cpu"], store=tmp_path / "r.db",
                          cache_dir=tmp_path / "cache"))
    run, t = MethodRun("l1-filter", {"ratio": 0.5}), "onnxruntime-cpu"
    here = r.cell_key("lenet-300-100", run, t)
    me = {"cpu": r.machine["cpu"], "versions": {t: r.timed_facts(t)[1]}}
    other = {"cpu": "EPYC B", "versions": {t: {"onnxruntime": "0.0.1"}}}

    def key(*pool: dict) -> str:  # type: ignore[type-arg]
        r.timed_on = list(pool)
        return r.cell_key("lenet-300-100", run, t)

    assert key(me, me) == here  # timing nodes like this machine: the local key
    only_other = key(other)
    assert only_other != here
    assert key(other, other) == only_other  # how many nodes does not matter, only which kinds
    assert key({**other, "versions": {t: me["versions"][t]}}) not in (here, only_other)
    mixed = key(me, other)
    assert mixed not in (here, only_other) and key(other, me) == mixed


def test_one_machine_resolves_auto_to_the_shared_cache(result: dict) -> None:  # type: ignore[type-arg]
    assert result["auto_artifacts"] == "shared"


def test_a_driver_on_a_timing_nodes_machine_is_recorded(result: dict) -> None:  # type: ignore[type-arg]
    # one machine: the driver shares it with the timing node, and the run's settings say so
    assert result["driver_beside"] == [result["timing_node"]]


def test_models_travel_through_the_object_store_without_a_shared_cache(result: dict) -> None:  # type: ignore[type-arg]
    assert _cells(result["object_store"]) == _cells(result["local"])
    for row in result["object_store"]:
        assert json.loads(row["node"])["ray_node"] == result["timing_node_2"]
    # the CPU-less timing node trained nothing: the baseline and both compressed models it
    # measured reached its own cache as objects
    kinds = sorted(p.split("/")[0] for p in result["received"])
    assert kinds == ["baselines", "compressed", "compressed"], result["received"]


def test_tune_runs_its_trials_on_the_cluster(result: dict) -> None:  # type: ignore[type-arg]
    tuned = result["tune"]
    assert tuned["rc"] == 0, tuned["tail"]
    assert tuned["states"] == ["COMPLETE", "COMPLETE"]
    assert tuned["executors"] == ["ray"]
    # the baseline's A/A cell and one cell per trial, each timed on the timing node
    assert len(tuned["nodes"]) >= 2 and set(tuned["nodes"]) == {result["timing_node"]}


def test_an_address_no_ray_head_answers_on_is_one_line_not_minutes_of_retries() -> None:
    """`ray.init` retries an unreachable HOST:PORT for minutes; the executor refuses it
    first (a closed loopback port: refused at once, no traffic leaves the machine)."""
    import time

    from harness.errors import UsageError
    from harness.executors.ray import RayExecutor

    t0 = time.perf_counter()
    with pytest.raises(UsageError, match=r"--ray-address 127\.0\.0\.1:1: no Ray head answers"):
        RayExecutor("127.0.0.1:1")._connect()
    assert time.perf_counter() - t0 < 10
    with pytest.raises(UsageError, match="is not HOST:PORT"):
        RayExecutor("localhost")._connect()


def test_an_address_that_is_not_a_ray_head_is_one_line() -> None:
    """Something listening that is not a Ray head (here a plain TCP server on loopback that
    answers like a web server: `ray.init` retried it for minutes), a Ray Client address and
    a port out of range: each is one line naming the problem, before Ray is started."""
    import socket
    import threading
    import time

    from harness.errors import UsageError
    from harness.executors.ray import RayExecutor

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")

    threading.Thread(target=answer, daemon=True).start()
    port = server.getsockname()[1]
    t0 = time.perf_counter()
    try:
        with pytest.raises(UsageError, match="something answers there, but not a Ray head"):
            RayExecutor(f"127.0.0.1:{port}")._connect()
    finally:
        server.close()
    assert time.perf_counter() - t0 < 10
    with pytest.raises(UsageError, match=r"Ray Client \(ray://\) addresses are not supported"):
        RayExecutor("ray://127.0.0.1:10001")._connect()
    with pytest.raises(UsageError, match="port in 1-65535"):
        RayExecutor("127.0.0.1:99999")._connect()


def test_nodes_running_other_harness_code_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that imports another checkout would store rows made by other code under the
    driver's cell keys: the driver asks every node for its code digest and refuses in one
    line naming the node."""
    from harness import sysinfo
    from harness.errors import UsageError
    from harness.executors import ray as ray_executor

    mine = sysinfo.code_digest()
    assert len(mine) == 16 and mine == sysinfo.code_digest()
    ex = ray_executor.RayExecutor("127.0.0.1:1")
    ex.nodes = [{"NodeID": "a" * 16, "NodeManagerAddress": "10.0.0.1"},
                {"NodeID": "b" * 16, "NodeManagerAddress": "10.0.0.2"}]
    monkeypatch.setattr(ray_executor, "_ask_each", lambda ray, fn, nodes, **kw: [mine, "0" * 16])
    with pytest.raises(UsageError, match=r"10\.0\.0\.2 \(bbbbbbbb\): 0{16}; install the same"):
        ex._check_code(None)
    monkeypatch.setattr(ray_executor, "_ask_each", lambda ray, fn, nodes, **kw: [mine, mine])
    ex._check_code(None)  # the same code everywhere: accepted


def test_a_timing_node_that_dies_mid_measurement_loses_no_cell(result: dict) -> None:  # type: ignore[type-arg]
    """Two timing nodes; the one holding the first measurement is removed from the cluster.
    The executor drops it (it was handed more measurements and failed them), measures the
    held cell again on the other, and every cell is stored ok, once, timed there."""
    out = result["node_loss"]
    assert len(out["removed"]) == 1, out  # a node really died mid-measurement
    (alive,) = set(out["nodes"]) - set(out["removed"])
    assert out["gone_lines"] and out["removed"][0][:8] in out["gone_lines"][0]
    rows = out["rows"]
    assert len(rows) == 3 and len({r["cell_key"] for r in rows}) == 3
    assert all(r["status"] == "ok" and r["node"]["ray_node"] == alive for r in rows), rows


def test_an_entry_rebuilt_elsewhere_replaces_a_nodes_older_one(tmp_path: Path) -> None:
    """Object-store mode under --force: the compute node rebuilt an entry this node already
    holds; the measurement here must read the new one. The same entry again changes nothing,
    and a bundle naming a path out of the cache is ignored."""
    from harness import cache
    from harness.executors.ray import RECEIVED, pack, unpack

    a, b = tmp_path / "A", tmp_path / "B"
    rel = Path("compressed") / "lenet-5-l1-filter-abc"
    cache.write_entry(b / rel, {"built": "earlier run"}, {"model.safetensors": b"OLD"})
    cache.write_entry(a / rel, {"built": "--force"}, {"model.safetensors": b"NEW"})
    bundle = pack(a, a / rel)
    unpack(b, bundle)
    entry = cache.read_entry(b / rel, print)
    assert entry is not None and entry.read_bytes("model.safetensors") == b"NEW"
    unpack(b, bundle)  # already there: not replaced again
    assert (b / RECEIVED).read_text().splitlines() == [rel.as_posix()]
    unpack(b, ("../outside", bundle[1]))
    assert not (tmp_path / "outside").exists()
    assert {p.name for p in b.iterdir()} <= {RECEIVED, "compressed", ".locks"}
    # a bundle that names a whole kind's folder, or an entry the step did not ask for, is
    # dropped: it would otherwise replace every compressed model on this node
    other = Path("compressed") / "lenet-5-fpgm-def"
    cache.write_entry(a / other, {"built": "elsewhere"}, {"model.safetensors": b"X"})
    for name in ("compressed", other.as_posix()):
        unpack(b, (name, pack(a, a / other)[1]), allowed={rel.as_posix()})
    assert sorted(p.name for p in (b / "compressed").iterdir()) == [rel.name]
    entry = cache.read_entry(b / rel, print)
    assert entry is not None and entry.read_bytes("model.safetensors") == b"NEW"
    unpack(b, pack(a, a / other), allowed={rel.as_posix(), other.as_posix()})
    assert cache.read_entry(b / other, print) is not None


def test_an_older_copy_in_use_on_the_node_is_not_replaced_under_it(tmp_path: Path) -> None:
    """Object-store mode: another process on this node (a worker of another sweep) times
    from this node's older copy of an entry. The copy rebuilt elsewhere waits for it (as
    `--force` does locally), gives up in one line leaving the old copy whole, and replaces
    it once that process is gone."""
    import time

    from conftest import hold_entry
    from harness import cache
    from harness.executors.ray import pack, unpack

    a, b = tmp_path / "A", tmp_path / "B"
    rel = Path("baseline") / "lenet-5-abc"
    cache.write_entry(b / rel, {"built": "earlier run"}, {"model.safetensors": b"OLD"})
    cache.write_entry(a / rel, {"built": "--force"}, {"model.safetensors": b"NEW"})
    bundle = pack(a, a / rel)
    holder = hold_entry(b / rel)
    logs: list[str] = []
    try:
        t0 = time.monotonic()
        with pytest.raises(cache.CacheError, match="another sweep still uses baseline/"):
            unpack(b, bundle, log=logs.append, wait_s=0.5)
        assert time.monotonic() - t0 < 5
        assert logs == ["cache: --force waits for another sweep using baseline/lenet-5-abc"]
        entry = cache.read_entry(b / rel, print)  # the holder's files are untouched
        assert entry is not None and entry.read_bytes("model.safetensors") == b"OLD"
    finally:
        holder.kill()
        holder.wait()
    assert unpack(b, bundle, log=logs.append, wait_s=5) is True
    entry = cache.read_entry(b / rel, print)
    assert entry is not None and entry.read_bytes("model.safetensors") == b"NEW"
    assert unpack(b, bundle, log=logs.append, wait_s=5) is False  # the same one: nothing done
    # this process used the old copy itself (a worker's earlier step): it is not waited for
    cache.write_entry(a / rel, {"built": "--force again"}, {"model.safetensors": b"NEWER"})
    cache.use(b / rel, logs.append)
    assert unpack(b, pack(a, a / rel), log=logs.append, wait_s=0.5) is True
    entry = cache.read_entry(b / rel, print)
    assert entry is not None and entry.read_bytes("model.safetensors") == b"NEWER"
