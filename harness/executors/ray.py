"""`--executor ray`: the plan's steps as Ray tasks; timing only on nodes that advertise it.

Compute steps (baseline, compress) ask for one CPU (and one GPU with `--device cuda`) and run
on any node. With `--device cuda` neither the driver nor a timing node needs a GPU: the driver
only checks that some node advertises one, and a measure step on a node without one scores
the cached models on the CPU. Measure steps are pinned, one at a time, to a free node that
advertises the custom `timing` resource (`ray start --resources '{"timing": 1}'`) and ask for
every CPU of that node (its own count: timing nodes may differ), so nothing else runs there
while it times: `timing.py`'s interleaving assumes a quiet machine. A cell and its baseline
are always timed in the same task, so a speedup never divides numbers from two machines; each
row records the node it was timed on and the CPUs it held there (`node.cpus_held`). Paths
reach the workers made absolute (`remote_options`).

Artifacts move one of two ways (`artifacts`, recorded in the run's settings):

- `shared`: through the cache directory, which every node sees at the same path (a shared file
  system, or one machine): nothing is copied;
- `object-store`: each node keeps its own cache (`<cache>/nodes/<node id>`); a compute step
  returns its cache entry (baseline or compressed model, a tar of verified files) as a Ray
  object, and the steps that need it receive it through Ray's object store and unpack it into
  their node's cache before running (an entry is data checked against its sha256 list when
  read, never code; a bad one is a cache miss, rebuilt there).

`auto` (the default) asks every node whether it sees a probe file the driver wrote into the
cache directory: all do -> shared, else object-store. Steps hand back plain data only (rows, samples, a one-line
error); the driver is the store's only writer. A worker that dies mid-step is retried
(`max_retries`, bounded); a step that still fails fails the cells that needed it, and the
sweep goes on. The driver killed: the same command resumes from the store and the cache.
Importing this module does not import ray; `harness list` never does.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import tarfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.plan import Plan, Step

MAX_RETRIES = 2  # a worker killed mid-step is retried this often, then its cells fail
ARTIFACTS = ("auto", "shared", "object-store")
RECEIVED = "received.log"  # object-store mode: entries a node's cache got from other nodes
_RUNNERS: dict[tuple[str, str], Any] = {}  # per worker process: the Runner of a run, reused


def _runner(opts: Any, run_id: str, own_cache: bool) -> Any:
    """This worker's Runner for a run, built from the driver's options (reused for the steps
    of the same run that land in this process: it holds the loaded data). With `own_cache`
    the node keeps its cache under `<cache>/nodes/<node id>`."""
    import ray

    from harness.runner import Runner, digest

    node = ray.get_runtime_context().get_node_id()
    if own_cache:
        opts = dataclasses.replace(opts, cache_dir=opts.cache_dir / "nodes" / node[:16])
    key = (run_id, digest(dataclasses.asdict(opts)))
    runner = _RUNNERS.get(key)
    if runner is None:
        _RUNNERS.clear()
        runner = Runner(opts, check_device=False)  # a step that trains checks this node
        runner.run_id = run_id
        runner.node = {**runner.node, "ray_node": node, "pid": os.getpid()}
        _RUNNERS[key] = runner
    return runner


def _held(step: Step, result: Any) -> Any:
    """A measurement's rows say how many CPUs of its node it held (all of them, or something
    else ran beside it)."""
    if step.kind == "measure":
        import ray

        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 0.0)
        for cell, _, _ in result.cells:
            cell["node"] = {**cell.get("node", {}), "cpus_held": cpus}
    return result


def _run_step(opts: Any, run_id: str, step: Step) -> Any:
    """In a Ray worker, shared cache: run one step; plain data back."""
    return _held(step, _runner(opts, run_id, False).execute(step))


def _run_step_carried(opts: Any, run_id: str, step: Step, *bundles: Any) -> Any:
    """In a Ray worker, object-store mode: unpack the entries this step needs into this node's
    cache, run the step, and (a compute step) hand back its own entry as a second object."""
    runner = _runner(opts, run_id, True)
    # the only entries this step reads: its model's baseline and (measure) its compressed
    # model. A bundle naming any other path (a kind's whole folder, another model's entry)
    # is dropped unread: it could only replace entries this step does not ask for.
    wanted = {runner.baseline_folder(step.model)}
    if step.kind == "measure" and step.run is not None and step.run.method != "baseline":
        wanted.add(runner.compressed_folder(step.model, step.run))
    allowed = {f.relative_to(runner.o.cache_dir).as_posix() for f in wanted}
    from harness.cache import CacheError

    try:
        for bundle in bundles:
            if bundle is not None and unpack(runner.o.cache_dir, bundle, allowed,
                                             runner.ev.log):
                runner.forget(runner.o.cache_dir / bundle[0])  # its older copy was in memory
    except CacheError as exc:  # another process on this node still times from the old copy
        failed = runner.failed_step(step, str(exc))
        return _held(step, failed) if step.kind == "measure" else (failed, None)
    result = runner.execute(step)
    if step.kind == "measure":
        return _held(step, result)
    folder = (runner.baseline_folder(step.model) if step.kind == "baseline"
              else runner.compressed_folder(step.model, step.run))
    return result, (pack(runner.o.cache_dir, folder) if result.error is None else None)


def pack(root: Path, folder: Path) -> tuple[str, bytes]:
    """A cache entry as (its path under the cache root, an uncompressed tar of its files)."""
    buf = io.BytesIO()
    rel = folder.relative_to(root).as_posix()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and not p.is_symlink():
                tar.add(p, arcname=p.relative_to(folder).as_posix(), recursive=False)
    return rel, buf.getvalue()


def unpack(root: Path, bundle: tuple[str, bytes], allowed: set[str] | None = None,
           log: Any = lambda line: None, wait_s: float | None = None) -> bool:
    """Put a packed entry in place under `root` unless the same one (the same `meta.json`,
    which lists every file's sha256) is already there: an entry rebuilt elsewhere (`--force`)
    replaces this node's older one, so a measurement here reads what the compute step made.
    Names are checked (tarfile's `data` filter: no absolute paths, no `..`, no links out, no
    devices); the entry is moved into place whole, so a reader sees it complete or not at
    all. With `allowed`, a bundle whose path is not one of those entry paths is ignored.

    An older copy is replaced only once no other process on this node uses it (`cache.claim`,
    as `--force` does locally: a measurement there reopens its files), waiting up to `wait_s`
    (default `cache.CLAIM_WAIT_S`), then a CacheError. True where it replaced or added one;
    this process's own hold on the entry is let go (what it had in memory is stale)."""
    from harness import cache

    rel, data = bundle
    target = root / rel
    if not cache._safe_name(rel) or (allowed is not None and rel not in allowed):
        return False
    tmp = root / f".incoming-{uuid.uuid4().hex[:8]}"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            tar.extractall(tmp, filter="data")
        if _same_entry(target, tmp):
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        held = cache.held(target)  # this process uses the older copy itself
        cache.claim(target, log, cache.CLAIM_WAIT_S if wait_s is None else wait_s)
        replaced = False
        try:
            with cache.building(target, log):  # not under a builder on this node
                if not _same_entry(target, tmp):
                    cache.discard(target)
                    os.replace(tmp, target)
                    with open(root / RECEIVED, "a") as f:  # entries that came through the store
                        f.write(rel + "\n")
                    replaced = True
        finally:
            if held and not replaced:  # the copy it uses stays: shared again, as it was
                cache.use(target, log)
            else:
                cache.release(target)
        return replaced
    finally:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


def _same_entry(target: Path, incoming: Path) -> bool:
    """Is a valid entry at `target` the one just received (the same manifest)?"""
    from harness import cache

    meta = incoming / cache.META
    return (cache.peek(target) and meta.is_file()
            and (target / cache.META).read_bytes() == meta.read_bytes())


def remote_options(opts: Any) -> Any:
    """The run's options as workers get them: paths made absolute here, since a worker's
    working directory is not the driver's (a relative `--cache-dir` would name another folder
    on every node, and `auto` would find no shared cache)."""
    return dataclasses.replace(
        opts, store=opts.store.resolve(), cache_dir=opts.cache_dir.resolve(),
        data_dir=opts.data_dir.resolve() if opts.data_dir is not None else None)


def node_facts(targets: list[str]) -> dict[str, Any]:
    """On one node: what a cell's key says about where it is timed (the CPU model, each
    target's runtime versions), and the targets that cannot run there."""
    import harness.runner  # noqa: F401 - registers the targets (and plugins' ones)
    from harness import sysinfo
    from harness.registry import TARGETS

    facts: dict[str, Any] = {"cpu": sysinfo.machine().get("cpu"), "versions": {},
                             "unusable": {}}
    for name in targets:
        target = TARGETS.get(name)()
        why = target.available()
        if why:
            facts["unusable"][name] = why
        else:
            facts["versions"][name] = target.versions()
    return facts


def differences(driver: dict[str, Any], node: dict[str, Any]) -> list[str]:
    """How a timing node differs from the driver: its CPU and runtime versions (the cells it
    times are keyed and recorded by the node's own, `Runner.timed_facts`), and the targets it
    cannot run (every cell it times there fails)."""
    out = []
    if node["cpu"] != driver["cpu"]:
        out.append(f"CPU {node['cpu']} (the driver's: {driver['cpu']})")
    for name, versions in node["versions"].items():
        if versions != driver["versions"].get(name):
            out.append(f"{name} {versions} (the driver's: {driver['versions'].get(name)})")
    out += [f"{name} cannot run there ({why})" for name, why in node["unusable"].items()]
    return out


# HTTP/2's client preface and an empty SETTINGS frame: a Ray head's GCS is a gRPC server,
# which answers with a SETTINGS frame of its own; a web server or anything else does not
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])


def _reachable(address: str | None, timeout: float = 5.0) -> None:
    """Refuse, in one line, a HOST:PORT where no Ray head answers: nothing listening, or
    something that does not speak gRPC (`ray.init` retried either for minutes). `ray://`
    (Ray Client) is refused too; `auto` is left to `ray.init` (`RayExecutor._connect`)."""
    import socket

    if not address or address == "auto":
        return
    if "://" in address:
        raise UsageError(f"--ray-address {address}: Ray Client (ray://) addresses are not "
                         "supported; give the head's HOST:PORT (the GCS port, 6379 by "
                         "default) or auto")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--ray-address {address!r} is not HOST:PORT with a port in "
                         "1-65535 (or auto)")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(_H2_PREFACE)
            head = s.recv(9)
    except OSError as exc:
        raise UsageError(f"--ray-address {address}: no Ray head answers there "
                         f"({exc.strerror or exc}); start one with `ray start --head "
                         f"--port {port}` or pass its address") from None
    if len(head) < 9 or head[3] != 4:  # the frame type of SETTINGS
        raise UsageError(f"--ray-address {address}: something answers there, but not a Ray "
                         "head (no gRPC); pass the address `ray start --head` printed")


def _code_digest() -> str:
    from harness import sysinfo

    return sysinfo.code_digest()


def _alive(ray: Any, node: str, exc: BaseException) -> bool:
    """Is a timing node still there after a step on it failed with `exc`?"""
    gone = (getattr(ray.exceptions, "NodeDiedError", ()), getattr(ray.exceptions,
            "TaskUnschedulableError", ()))
    if isinstance(exc, tuple(t for t in gone if t)):
        return False
    return any(n["NodeID"] == node and n.get("Alive") for n in ray.nodes())


def _sees(path: str) -> bool:
    return os.path.exists(path)


def _pinned(node: str) -> Any:
    """The scheduling strategy that runs a task on `node` and nowhere else (if that node is
    gone, the task fails instead of waiting)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(node, soft=False)


def _ask_each(ray: Any, fn: Any, nodes: list[dict[str, Any]], *args: Any, timeout: float
              ) -> list[Any]:
    """`fn(*args)` once on each of `nodes`, asking for no CPU (so it runs beside anything):
    their answers, in the order of `nodes`."""
    task = ray.remote(fn)
    return ray.get([task.options(num_cpus=0, scheduling_strategy=_pinned(n["NodeID"]))
                    .remote(*args) for n in nodes], timeout=timeout)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = MAX_RETRIES,
                 artifacts: str = "auto") -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs ray: pip install 'compressmark[ray]'")
        if artifacts not in ARTIFACTS:
            raise UsageError(f"unknown artifacts mode '{artifacts}' (choose from: "
                             f"{', '.join(ARTIFACTS)})")
        self.address = address
        self.max_retries = max_retries
        self.artifacts = artifacts  # resolved from "auto" when the run starts
        self.nodes: list[dict[str, Any]] = []  # the cluster's live nodes
        self.timing_nodes: list[dict[str, Any]] = []
        self.options: Any = None  # the run's options as workers get them (remote_options)
        self.driver_host: str | None = None
        self.facts: dict[str, dict[str, Any]] = {}  # timing node -> node_facts + differences
        self.beside: list[str] = []  # timing nodes on the driver's own machine

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "max_retries": self.max_retries,
                "artifacts": self.artifacts, "driver_host": self.driver_host,
                "driver_beside_timing_nodes": self.beside,
                "timing_nodes": [{"node": n["NodeID"], "host": n.get("NodeManagerAddress"),
                                  "cpus": n["Resources"].get("CPU"),
                                  **self.facts.get(n["NodeID"], {})}
                                 for n in self.timing_nodes]}

    def _connect(self) -> Any:
        import ray

        _reachable(self.address)
        if not ray.is_initialized():
            try:
                ray.init(address=self.address or "auto", log_to_driver=False,
                         include_dashboard=False, logging_level=logging.WARNING)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UsageError(f"--executor ray: cannot connect to a Ray cluster at "
                                 f"{self.address or 'auto'} ({first}); start a head with "
                                 "`ray start --head` and pass --ray-address HOST:PORT") from None
        self.nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.timing_nodes = [n for n in self.nodes if n["Resources"].get("timing", 0) >= 1]
        if not self.timing_nodes:
            raise UsageError("no Ray node advertises the timing resource: start one with "
                             "`ray start --address HEAD:PORT --resources '{\"timing\": 1}'`")
        return ray

    def _shared(self, ray: Any, cache_dir: Path) -> bool:
        """Does every live node see a file the driver just wrote into the cache directory?"""
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = cache_dir / f".ray-probe-{uuid.uuid4().hex[:8]}"
        probe.write_text("shared?")
        try:
            return all(_ask_each(ray, _sees, self.nodes, str(probe), timeout=120))
        except ray.exceptions.GetTimeoutError:  # a node that cannot answer in 2 minutes is
            return False  # not known to see the cache: models travel through the object store
        finally:
            probe.unlink(missing_ok=True)

    def _check_timing_nodes(self, ray: Any, runner: Any) -> None:
        """Ask every timing node for its facts (recorded in the run's settings) and key the
        run's cells by them (`Runner.timed_facts`): the driver times nothing, so its own CPU
        and runtimes say nothing about a cell. A line for each way a node differs from the
        driver; a warning where the timing nodes differ from each other or cannot run a
        target."""
        driver = node_facts(runner.targets)
        answers = _ask_each(ray, node_facts, self.timing_nodes, runner.targets, timeout=300)
        for n, facts in zip(self.timing_nodes, answers, strict=True):
            facts["differs"] = differences(driver, facts)
            self.facts[n["NodeID"]] = facts
            where = f"timing node {n.get('NodeManagerAddress')} ({n['NodeID'][:8]})"
            for line in differences(driver, {**facts, "unusable": {}}):
                runner.ev.log(f"{where} differs from this driver: {line}; the cells it times "
                              "are keyed by the node's facts")
            for name, why in facts["unusable"].items():  # every cell it times there fails
                runner.ev.log(f"warning: {where} cannot run {name} ({why})")
        runner.timed_on = [{"cpu": f["cpu"], "versions": f["versions"]} for f in answers]
        kinds = {json.dumps(f, sort_keys=True) for f in runner.timed_on}
        if len(kinds) > 1:
            runner.ev.log(f"warning: the {len(self.timing_nodes)} timing nodes are {len(kinds)} "
                          "kinds of machine (CPU or runtime versions differ): a speedup still "
                          "divides two numbers from one node, but latencies of different cells "
                          "may come from different machines (each row's `node` says which); "
                          "cell keys name every kind")

    def _check_code(self, ray: Any) -> None:
        """Refuse a cluster whose nodes import other harness code than the driver (another
        checkout or install): their rows would go under the driver's cell keys."""
        from harness import sysinfo

        mine = sysinfo.code_digest()
        theirs = _ask_each(ray, _code_digest, self.nodes, timeout=300)
        other = [f"{n.get('NodeManagerAddress')} ({n['NodeID'][:8]}): {d}"
                 for n, d in zip(self.nodes, theirs, strict=True) if d != mine]
        if other:
            raise UsageError(f"Ray node(s) run other harness code than this driver ({mine}): "
                             f"{'; '.join(other)}; install the same commit on every node")

    def start(self, runner: Any) -> None:
        """Before the run is recorded: connect, find the timing nodes, resolve `auto` (so the
        run's settings say which way artifacts moved)."""
        ray = self._connect()
        self._check_code(ray)
        self.driver_host = ray.util.get_node_ip_address()
        self.beside = [n["NodeID"] for n in self.timing_nodes
                       if n.get("NodeManagerAddress") == self.driver_host]
        if self.beside:  # its bookkeeping between steps runs beside the next measurement
            runner.ev.log(f"warning: this driver runs on the machine of {len(self.beside)} "
                          f"timing node(s) ({self.driver_host}): it stores rows and prints "
                          "progress while measurements run there; run `harness` from the head "
                          "or another machine (README \"Past one machine\")")
        if runner.o.device == "cuda" and not any(
                n["Resources"].get("GPU", 0) >= 1 for n in self.nodes):
            # compute steps ask for a GPU: on a cluster without one they would wait forever
            raise UsageError("--device cuda: no node of the Ray cluster advertises a GPU "
                             "(start one on a GPU machine with `ray start --address HEAD:PORT "
                             "--num-gpus 1`, or choose --device cpu)")
        self._check_timing_nodes(ray, runner)
        self.options = remote_options(runner.o)
        if self.artifacts == "auto":
            self.artifacts = ("shared" if self._shared(ray, self.options.cache_dir)
                              else "object-store")

    def run(self, runner: Any, plan: Plan) -> Iterator[Any]:
        import ray

        if not self.timing_nodes:  # run without a session (which starts it first)
            self.start(runner)
        carried = self.artifacts == "object-store"
        gpus = 1 if runner.o.device == "cuda" else 0
        remote = ray.remote(_run_step_carried if carried else _run_step)
        compute = remote.options(num_cpus=1, num_gpus=gpus, max_retries=self.max_retries,
                                 retry_exceptions=False, num_returns=2 if carried else 1)
        # a measurement is pinned to a free timing node and holds every CPU of that node (its
        # own count: timing nodes may differ), so nothing else runs there while it times
        cpus = {n["NodeID"]: float(n["Resources"].get("CPU", 0)) for n in self.timing_nodes}
        free = set(cpus)  # timing nodes with no measurement on them
        busy: dict[Any, str] = {}  # a running measurement -> its node

        def measure(node: str) -> Any:
            free.discard(node)
            return remote.options(
                num_cpus=cpus[node], resources={"timing": 1},
                scheduling_strategy=_pinned(node),
                max_retries=self.max_retries, retry_exceptions=False)

        opts_ref = ray.put(self.options)
        done: set[str] = set()
        failed: dict[str, str] = {}
        waiting = list(plan.steps)
        pending: dict[Any, Step] = {}
        entries: dict[str, Any] = {}  # object-store mode: step key -> its cache entry's object
        users = Counter(k for st in plan.steps for k in st.needs)  # steps that still need it
        requeued: Counter[str] = Counter()  # measure steps sent again after their node died

        def finished_with(step: Step) -> None:
            """`step` needs its entries no more: one no step needs leaves the object store."""
            for k in step.needs:
                users[k] -= 1
                if users[k] == 0:
                    entries.pop(k, None)
        while waiting or pending:
            still = []
            for step in waiting:
                blocked = next((failed[k] for k in step.needs if k in failed), None)
                if blocked is None and step.kind == "measure" and not cpus:
                    blocked = "no timing node left: the cluster lost every one"
                if blocked is not None:
                    failed[step.key] = blocked
                    if step.kind == "measure":
                        yield runner.failed_step(step, blocked)
                elif (all(k in done for k in step.needs if k in plan.by_key)
                      and step.kind == "measure" and runner.taken(step)):
                    finished_with(step)  # stored meanwhile by another run: not measured
                elif (all(k in done for k in step.needs if k in plan.by_key)
                      and (step.kind != "measure" or free)):
                    node = min(free) if step.kind == "measure" else None
                    task = compute if node is None else measure(node)
                    # object-store mode: the entries it needs travel with it (a cached step of
                    # this plan has none: the node that needs it rebuilds or finds it)
                    carry = [entries[k] for k in step.needs if k in entries] if carried else []
                    ref = task.remote(opts_ref, runner.run_id, step, *carry)
                    if carried and step.kind != "measure":
                        ref, entries[step.key] = ref
                    pending[ref] = step
                    if node is not None:
                        busy[ref] = node
                else:
                    still.append(step)
            waiting = still
            if not pending:
                continue
            ready, _ = ray.wait(list(pending), num_returns=1)
            step = pending.pop(ready[0])
            node = busy.pop(ready[0], None)
            error: Exception | None = None
            try:
                result = ray.get(ready[0])
            except Exception as exc:  # the worker died past its retries, or Ray failed it
                error = exc
            if node is not None:
                if error is None or _alive(ray, node, error):
                    free.add(node)  # its timing node is free again
                else:  # the node is gone: never pinned to again
                    cpus.pop(node, None)
                    runner.ev.log(f"timing node {node[:8]} is gone ({type(error).__name__})")
                    if requeued[step.key] < self.max_retries and cpus:
                        requeued[step.key] += 1  # measured again on a timing node still there
                        waiting.append(step)
                        continue
            finished_with(step)
            if error is not None:
                msg = " ".join(str(error).split())[:300]
                result = runner.failed_step(step, f"{type(error).__name__}: {msg}")
            if result.error is not None:
                failed[step.key] = result.error
            else:
                done.add(step.key)
            yield result
