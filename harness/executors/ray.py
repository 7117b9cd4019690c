"""`--executor ray`: the plan's steps as Ray tasks; timing only on nodes that advertise it.

Compute steps (baseline, compress) ask for one CPU (and one GPU with `--device cuda`) and run
on any node. Measure steps ask for the custom `timing` resource and every CPU of a timing node
(`ray start --resources '{"timing": 1}'`), so a timing node runs one measurement at a time and
nothing else: `timing.py`'s interleaving assumes a quiet machine. A cell and its baseline are
always timed in the same task, so a speedup never divides numbers from two machines; each
row records the node it was timed on.

Artifacts move through the cache directory, which every node must see at the same path (a
shared file system, or one machine). Steps hand back plain data only (rows, samples, a one-line
error); the driver is the store's only writer. A worker that dies mid-step is retried
(`max_retries`, bounded); a step that still fails fails the cells that needed it, and the
sweep goes on. The driver killed: the same command resumes from the store and the cache.
Importing this module does not import ray; `harness list` never does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from harness.errors import UsageError
from harness.plan import Plan, Step

MAX_RETRIES = 2  # a worker killed mid-step is retried this often, then its cells fail
_RUNNERS: dict[tuple[str, str], Any] = {}  # per worker process: the Runner of a run, reused


def _run_step(opts: Any, run_id: str, step: Step) -> Any:
    """In a Ray worker: run one step on a Runner built from the driver's options (reused for
    the steps of the same run that land in this process: it holds the loaded data)."""
    import ray

    from harness.runner import Runner, digest

    key = (run_id, digest(dataclasses.asdict(opts)))
    runner = _RUNNERS.get(key)
    if runner is None:
        _RUNNERS.clear()
        runner = Runner(opts)
        runner.run_id = run_id
        runner.node = {**runner.node, "ray_node": ray.get_runtime_context().get_node_id(),
                       "pid": os.getpid()}
        _RUNNERS[key] = runner
    return runner.execute(step)


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = MAX_RETRIES) -> None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise UsageError("--executor ray needs ray: pip install 'compressmark[ray]'")
        self.address = address
        self.max_retries = max_retries
        self.timing_nodes: list[dict[str, Any]] = []

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address, "max_retries": self.max_retries,
                "artifacts": "shared cache directory",
                "timing_nodes": [{"node": n["NodeID"], "host": n.get("NodeManagerAddress"),
                                  "cpus": n["Resources"].get("CPU")}
                                 for n in self.timing_nodes]}

    def _connect(self) -> Any:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address or "auto", log_to_driver=False,
                     include_dashboard=False)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        self.timing_nodes = [n for n in nodes if n["Resources"].get("timing", 0) >= 1]
        if not self.timing_nodes:
            raise UsageError("no Ray node advertises the timing resource: start one with "
                             "`ray start --address HEAD:PORT --resources '{\"timing\": 1}'`")
        return ray

    def run(self, runner: Any, plan: Plan) -> Iterator[Any]:
        from harness.runner import StepResult

        ray = self._connect()
        # a measurement holds every CPU of its node; the smallest timing node sets the ask
        cpus = min(float(n["Resources"].get("CPU", 1)) for n in self.timing_nodes)
        gpus = 1 if runner.o.device == "cuda" else 0
        remote = ray.remote(_run_step)
        compute = remote.options(num_cpus=1, num_gpus=gpus, max_retries=self.max_retries,
                                 retry_exceptions=False)
        measure = remote.options(num_cpus=cpus, resources={"timing": 1},
                                 max_retries=self.max_retries, retry_exceptions=False)
        opts_ref = ray.put(runner.o)
        done: set[str] = set()
        failed: dict[str, str] = {}
        waiting = list(plan.steps)
        pending: dict[Any, Step] = {}
        while waiting or pending:
            still = []
            for step in waiting:
                blocked = next((failed[k] for k in step.needs if k in failed), None)
                if blocked is not None:
                    failed[step.key] = blocked
                    if step.kind == "measure":
                        yield StepResult(step.key, cells=[runner.failed_cell(step, blocked)])
                elif all(k in done for k in step.needs if k in plan.by_key):
                    task = measure if step.kind == "measure" else compute
                    pending[task.remote(opts_ref, runner.run_id, step)] = step
                else:
                    still.append(step)
            waiting = still
            if not pending:
                continue
            ready, _ = ray.wait(list(pending), num_returns=1)
            step = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as exc:  # the worker died past its retries, or Ray failed it
                msg = " ".join(str(exc).split())[:300]
                result = StepResult(step.key, error=f"{type(exc).__name__}: {msg}")
                if step.kind == "measure":
                    result = StepResult(step.key, cells=[runner.failed_cell(step,
                                                                            result.error)])
            if result.error is not None:
                failed[step.key] = result.error
            else:
                done.add(step.key)
            yield result
