"""What a plan will cost, and how long it takes on N workers: `harness plan`.

Per-step costs are measured on this machine at planning time, on the models themselves (the
suite's, and every student a distillation or scratch run trains, whose steps cost the student's
own training step plus the teacher's forward pass): one training step (forward + backward + SGD
update at the recipe's batch size), one inference call at each timed batch size and at the
training batch size, and one ONNX export. A step's estimate multiplies those by what the
suite's profile asks for (epochs x steps per epoch, evaluation batches, timing calls on both
interleaved sessions). A measure step's calls are timed on its target itself (the exported
network opened as the runner opens it), where that target is installed: torch eager stands in
only where it is not (it overstated ORT's ResNet-56 calls 1.4x at batch 64, 3-4x at batch 1).
The makespan of N CPU workers plus the timing nodes is simulated with list scheduling over the
plan's dependencies (longest remaining path first), which also shows the critical path: a
model's baseline must finish before anything of that model can start, so past a few workers
per model more workers stop helping. GPU workers are an assumption, stated
with the figure: training steps `gpu_speedup` times faster, measure steps unchanged (they time
the CPU runtimes).
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.plan import Plan, Step
from harness.timing import calls_per_round

# training-set sizes for datasets that may not be on this machine (planning needs no data)
KNOWN_TRAIN_SIZES = {"cifar10": 50000, "fashion-mnist": 60000, "mnist": 60000,
                     "voc2007": 5011, "fashion-det": 6000}
STUDENT_METHODS = ("kd", "fitnets", "scratch")  # train a student on the baseline's budget
INT8_METHODS = ("int8-ptq", "qat")


@dataclass(frozen=True)
class ModelCosts:
    train_step_s: float  # one optimiser step at the training batch size
    forward_s: dict[int, float]  # one torch inference call per timed batch size
    export_s: float
    # target -> batch size -> one call of the exported fp32 network on that runtime
    runtime_s: dict[str, dict[int, float]] = field(default_factory=dict)
    # one inference call at the training batch size: what this model, as a teacher, adds to
    # each step of a distillation (where the student was not measured, 0.3 of a training step
    # of the teacher stands in for it)
    teacher_forward_s: float = 0.0

    def call_s(self, target: str | None, batch: int) -> float:
        """One inference call on `target` (torch eager where it could not be timed)."""
        return self.runtime_s.get(target or "", {}).get(batch, self.forward_s[batch])


def _best_time(fn: Any, repeats: int = 5) -> float:
    """The fastest of `repeats` calls after a warm-up: what the step costs on a quiet core
    (other processes only ever add to it; a planning estimate should not inherit them)."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_model(runner: Any, name: str) -> ModelCosts:
    """Time one training step, one inference call per batch size and one export of `name`."""
    from harness.export import _export

    model = runner._fresh(name)
    shape = tuple(runner.dataset.input_shape)
    batch = runner.profile.train.batch_size
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, *shape)
    classify = runner.task == "classify"
    y = torch.randint(0, runner.dataset.num_classes, (batch,))

    def train_step() -> None:
        model.train()
        opt.zero_grad()
        out = model(x)
        loss = (torch.nn.functional.cross_entropy(out, y) if classify
                else out.float().pow(2).mean())  # a detector's loss costs about its forward
        loss.backward()
        opt.step()

    step = _best_time(train_step)
    model.eval()
    fwd = {}
    with torch.inference_mode():
        for b in runner.profile.timing.batch_sizes:
            xb = torch.randn(b, *shape)
            fwd[b] = _best_time(lambda xb=xb: model(xb))
        train_fwd = fwd[batch] if batch in fwd else _best_time(lambda: model(x))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        t0 = time.perf_counter()
        _export(model, shape, path)
        export = time.perf_counter() - t0
        runtime = {t: _runtime_calls(runner, t, model, path, shape) for t in runner.targets}
    return ModelCosts(step, fwd, export, {t: c for t, c in runtime.items() if c}, train_fwd)


def student_of(run: Any) -> tuple[str, float | None] | None:
    """(the registry model a distillation or scratch run trains, its epochs override), or None
    for any other run: that student's own step, not the suite model's, is what it costs."""
    if run is None or run.method not in STUDENT_METHODS:
        return None
    from harness.registry import METHODS

    try:
        cfg = METHODS.get(run.method).Config(**run.config)
    except Exception:  # noqa: BLE001 - an estimate: a bad config fails at run time, not here
        return None
    return cfg.student, cfg.epochs


def models_to_measure(models: Any, plan: Plan) -> list[str]:
    """The suite's models, then every student a compress step of the plan trains."""
    students = [st[0] for st in (student_of(s.run) for s in plan.steps if s.kind == "compress")
                if st]
    return list(dict.fromkeys([*models, *students]))


def _runtime_calls(runner: Any, target_name: str, model: torch.nn.Module, path: Path,
                   shape: tuple[int, ...]) -> dict[int, float]:
    """One call per timed batch size of the exported network on `target_name`, opened as the
    runner opens a cell's session (threads, runtime settings); {} where it cannot be opened
    (the torch call then stands in)."""
    from harness.api import Artifact
    from harness.registry import TARGETS

    try:
        target = TARGETS.get(target_name)()
        with torch.inference_mode():
            out_shape = tuple(model(torch.zeros((1, *shape))).shape[1:])
        art = Artifact(path, model, shape, out_shape, "fp32")
        out = {}
        for b in runner.profile.timing.batch_sizes:
            sess = target.prepare(art, b, runner.threads, "fp32", **runner._settings(target))
            x = np.random.default_rng(0).standard_normal((b, *shape)).astype(np.float32)
            out[b] = _best_time(lambda sess=sess, x=x: sess.run(x))
        return out
    except Exception:  # noqa: BLE001 - an estimate: any runtime problem falls back to torch
        return {}


def train_size(runner: Any, recipe: Any) -> int:
    if recipe.train_samples:
        return int(recipe.train_samples)
    name = runner.o.suite.dataset
    if name in KNOWN_TRAIN_SIZES:
        return KNOWN_TRAIN_SIZES[name]
    return len(runner.dataset.train())


def step_seconds(runner: Any, step: Step, costs: dict[str, ModelCosts],
                 rounds: int | None = None) -> float:
    """The estimated seconds of one step on one CPU worker (0 when it is a cache hit). A
    measure step is costed at the profile's full rounds, or at `rounds` (e.g. its early stop's
    first check, for the lower end of a profile with a `precision`)."""
    c = costs[step.model]
    prof = runner.profile
    eval_n = prof.eval_samples or 10000
    big = max(prof.timing.batch_sizes)
    evaluate = math.ceil(eval_n / big) * c.forward_s[big]
    if step.kind == "baseline":
        if step.cached:
            return evaluate + c.export_s
        steps = prof.train.epochs * math.ceil(train_size(runner, prof.train)
                                              / prof.train.batch_size)
        return steps * c.train_step_s + evaluate + c.export_s
    student = student_of(step.run)
    # the network the step trains or times: a measured student, else the suite's model
    own = costs.get(student[0], c) if student else c
    if step.kind == "compress":
        if step.cached:
            return 0.0
        method = step.run.method if step.run else ""
        recipe = prof.train if student else prof.finetune
        epochs = (student[1] if student and student[1] is not None else recipe.epochs)
        steps = epochs * math.ceil(train_size(runner, recipe) / recipe.batch_size)
        per_step = own.train_step_s
        if student and method != "scratch":  # the teacher's forward pass on every batch
            per_step += c.teacher_forward_s if own is not c else 0.3 * c.train_step_s
        extra = 2 * c.export_s if method in INT8_METHODS else c.export_s  # + quantizers
        return steps * per_step + 2 * math.ceil(eval_n / big) * own.forward_s[big] + extra
    timing = prof.timing
    cfg = timing.config()
    calls = 0.0
    evaluate = math.ceil(eval_n / big) * own.call_s(step.target, big)  # accuracy on the runtime
    for b in timing.batch_sizes:
        cand, ref = own.call_s(step.target, b), c.call_s(step.target, b)
        per = calls_per_round(cfg, min(cand, ref), cand + ref)
        # candidate and baseline interleaved: warm-up, then rounds of both sides' calls
        calls += (max(1, timing.warmup) + (rounds or timing.rounds) * (per + timing.rewarm)) \
            * (cand + ref)
    return evaluate + calls


def makespan(plan: Plan, seconds: dict[str, float], workers: int, timing_nodes: int = 1,
             train_speedup: float = 1.0) -> float:
    """List-scheduled finish time: compute steps on `workers`, measure steps one at a time on
    each of `timing_nodes`; a step starts when all it needs has finished. Compute steps run
    `train_speedup` times faster (GPU workers)."""
    dur = {s.key: seconds[s.key] / (train_speedup if s.kind != "measure" else 1.0)
           for s in plan.steps}
    # priority: the longest path from a step to the end of the plan
    rest: dict[str, float] = {}
    for s in reversed(plan.steps):
        after = [rest[d.key] for d in plan.steps if s.key in d.needs]
        rest[s.key] = dur[s.key] + max(after, default=0.0)
    finish: dict[str, float] = {}
    free = {"compute": [0.0] * max(1, workers), "measure": [0.0] * max(1, timing_nodes)}
    todo = list(plan.steps)
    while todo:
        ready = [s for s in todo if all(k in finish or k not in plan.by_key for k in s.needs)]
        s = max(ready, key=lambda st: rest[st.key])
        todo.remove(s)
        pool = free["measure" if s.kind == "measure" else "compute"]
        i = min(range(len(pool)), key=pool.__getitem__)
        start = max(pool[i], max((finish[k] for k in s.needs if k in finish), default=0.0))
        finish[s.key] = pool[i] = start + dur[s.key]
    return max(finish.values(), default=0.0)


def critical_path(plan: Plan, seconds: dict[str, float], train_speedup: float = 1.0) -> float:
    """The longest chain of dependent steps: no number of workers finishes sooner."""
    longest: dict[str, float] = {}
    for s in plan.steps:
        d = seconds[s.key] / (train_speedup if s.kind != "measure" else 1.0)
        longest[s.key] = d + max((longest[k] for k in s.needs if k in longest), default=0.0)
    return max(longest.values(), default=0.0)
