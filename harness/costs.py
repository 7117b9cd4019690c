"""What a plan will cost, and how long it takes on N workers: `harness plan`.

Per-step costs are measured on this machine at planning time, on the models themselves (the
suite's, and every student a distillation or scratch run trains, whose steps cost the student's
own training step plus the teacher's forward pass): one training step (forward + backward + SGD
update at the recipe's batch size), one inference call at each timed batch size and at the
training batch size, and one ONNX export. A step's estimate multiplies those by what the
suite's profile asks for (epochs x steps per epoch, evaluation batches, timing calls on both
interleaved sessions). A compress step is probed where it can be (`probe_compress`): its method
runs on an untrained copy of the model with synthetic data, each training loop it asks for (and
the runner's fine-tune after it) timed for a few steps on the network, loss, masks and
constraint it really trains, so a pruned network's cheaper step, QAT's fake-quant step (1.8x
ResNet-56's), a distillation's teacher forward and a method that fine-tunes several times are
each costed as they run; the model's own step stands in where a probe fails. A measure step's
calls are timed on its target itself (the exported network opened as the runner opens it),
where that target is installed: torch eager stands in only where it is not (it overstated ORT's
ResNet-56 calls 1.4x at batch 64, 3-4x at batch 1). The makespan of N CPU workers plus the
timing nodes is simulated with list scheduling over the plan's dependencies (longest remaining
path first), which also shows the critical path: a model's baseline must finish before anything
of that model can start, so past a few workers per model more workers stop helping. GPU workers
are an assumption, stated with the figure: training steps `gpu_speedup` times faster, measure
steps unchanged (they time the CPU runtimes).
"""

from __future__ import annotations

import copy
import dataclasses
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
PROBE_STEPS = 3  # optimiser steps a probe runs per training loop: the first warms up
# a compress step whose recipe trains fewer optimiser steps is not probed: the probe would
# cost a tenth of the step or more (voc-detection smoke: 8 min of probing for 2-step
# fine-tunes of Faster R-CNN, against 2.6 min without)
PROBE_MIN_STEPS = 10 * PROBE_STEPS


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
    # scoring n outputs against their labels (`fixed + per_item x n`): nothing for top-1;
    # decoding, NMS and mAP for a detector, which took 2 of a quick pass's 3.6 s on YOLOv2-tiny
    score_fixed_s: float = 0.0
    score_item_s: float = 0.0
    # sizing the exported file (its bytes and zlib level-9 bytes, `metrics.file_sizes`): 0.1 s
    # for ResNet-56, 1.6 s for a dense ResNet-18; a sparse network's zeros make it much slower
    size_s: float = 0.0
    # target -> batch size -> opening a session of the exported network (measured where its
    # calls are short enough for a measurement to reopen sessions every round)
    open_s: dict[str, dict[int, float]] = field(default_factory=dict)

    def call_s(self, target: str | None, batch: int) -> float:
        """One inference call on `target` (torch eager where it could not be timed)."""
        return self.runtime_s.get(target or "", {}).get(batch, self.forward_s[batch])

    def score_s(self, n: int) -> float:
        return self.score_fixed_s + self.score_item_s * n


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
    from harness.metrics import file_sizes
    from harness.train import optimizer

    model = runner._fresh(name)
    shape = tuple(runner.dataset.input_shape)
    batch = runner.profile.train.batch_size
    opt = optimizer(list(model.parameters()), runner.profile.train)  # the recipe's own
    # the task's own loss on synthetic labels: a detector's target assignment (and a two-stage
    # detector's proposal sampling) is part of its step
    x, y = _synthetic(batch, shape, runner.dataset.num_classes, runner.task == "detect").tensors

    def train_step() -> None:
        model.train()
        opt.zero_grad()
        runner.loss(model, x, y).backward()
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
        t0 = time.perf_counter()
        file_sizes(path)
        size = time.perf_counter() - t0
        runtime = {t: _runtime_calls(runner, t, model, path, shape) for t in runner.targets}
    scored = _cached_baseline(runner, name, model) if runner.task == "detect" else model
    fixed, item = _scoring(runner, scored, shape, max(runner.profile.timing.batch_sizes))
    return ModelCosts(step, fwd, export, {t: c for t, (c, _) in runtime.items() if c},
                      train_fwd, fixed, item, size,
                      {t: o for t, (_, o) in runtime.items() if o})


def _cached_baseline(runner: Any, name: str, model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with the weights of `name`'s trained baseline where the cache holds a
    verified one (read only), else `model`: a detector's scoring depends on its weights (an
    untrained YOLOv2-tiny keeps nearly every box above the decoder's threshold, 3.5 s per 1000
    images against about 2 s trained)."""
    from harness import cache, modeldata
    from harness.runner import WEIGHTS

    entry = cache.verified(runner.baseline_folder(name))
    if entry is None:
        return model
    try:
        return modeldata.load_state(copy.deepcopy(model), entry.read_bytes(WEIGHTS)).eval()
    except Exception:  # noqa: BLE001 - an estimate: the untrained weights stand in
        return model


def _scoring(runner: Any, model: torch.nn.Module, shape: tuple[int, ...], batch: int
             ) -> tuple[float, float]:
    """(fixed, per item) seconds of the task's scorer on outputs of `model`: one batch of
    synthetic inputs scored as it is and tiled 4x, a line through the two."""
    from harness.scoring import ClassifyScorer, DetectScorer

    detect = runner.task == "detect"
    x, y = _synthetic(batch, shape, runner.dataset.num_classes, detect).tensors
    with torch.inference_mode():
        out = model.eval()(x).float().numpy()
    scorer = DetectScorer(model, runner.dataset.num_classes) if detect else ClassifyScorer()
    labels = y.numpy()
    one = _best_time(lambda: scorer.score(out, labels), 2)
    four = _best_time(lambda: scorer.score(np.concatenate([out] * 4),
                                           np.concatenate([labels] * 4)), 2)
    item = max(0.0, (four - one) / (3 * batch))
    return max(0.0, one - item * batch), item


@dataclass(frozen=True)
class Probe:
    """What a compress step's method did on an untrained copy of its model: the training loops
    it runs (seconds of one optimiser step on what it trains, and that loop's steps in the real
    run), one inference call at the evaluation batch size of each network it evaluated itself,
    and of the network it leaves, which the runner scores `passes` times (before and after its
    fine-tune; once where nothing was fine-tuned or the method gave its one-shot score), and
    sizing that network's export (zlib level 9 takes 10x longer on a sparse network's zeros:
    20 s for a ResNet-18 at half sparsity against 1.6 s dense; 0 where INT8 toolchains make
    the artifacts instead)."""

    trainings: tuple[tuple[float, int], ...]
    evaluations: tuple[float, ...]
    forward_s: float
    passes: int = 2
    size_s: float = 0.0

    def seconds(self, eval_batches: int, score_s: float = 0.0) -> float:
        """The step's seconds, each evaluation pass `eval_batches` calls and one scoring."""
        calls = [*self.evaluations, *[self.forward_s] * self.passes]
        return (sum(s * n for s, n in self.trainings)
                + sum(eval_batches * f + score_s for f in calls) + self.size_s)


SYNTHETIC_OBJECTS = 3  # boxes in each synthetic detection image (the datasets have 1-42)


def _synthetic(n: int, shape: tuple[int, ...], classes: int, detect: bool = False) -> Any:
    """`n` random inputs and labels: what a probe trains on (planning needs no data). For a
    detector, labels are the datasets' padded (n, objects, 6) rows of class, pixel box and
    difficult flag: `SYNTHETIC_OBJECTS` random boxes each, at least an eighth of the image."""
    from torch.utils.data import TensorDataset

    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *shape, generator=g)
    if not detect:
        return TensorDataset(x, torch.randint(0, classes, (n,), generator=g))
    h, w = shape[-2:]
    size = torch.tensor([w, h, w, h], dtype=torch.float32)
    corner = torch.rand(n, SYNTHETIC_OBJECTS, 2, generator=g) * 0.5
    extent = 0.125 + torch.rand(n, SYNTHETIC_OBJECTS, 2, generator=g) * 0.375
    boxes = torch.cat([corner, corner + extent], dim=2) * size
    label = torch.randint(0, classes, (n, SYNTHETIC_OBJECTS, 1), generator=g).float()
    return TensorDataset(x, torch.cat([label, boxes, torch.zeros(n, SYNTHETIC_OBJECTS, 1)], 2))


def _loop_steps(runner: Any, recipe: Any, epochs: float | None) -> int:
    """The optimiser steps `fit` takes for `recipe` (epochs overridden) on the real data."""
    e = recipe.epochs if epochs is None else epochs
    return max(1, round(e * math.ceil(train_size(runner, recipe) / recipe.batch_size)))


def probe_compress(runner: Any, step: Step) -> Probe:
    """Run `step`'s method on an untrained copy of its model, on synthetic data, with probes
    in place of its training loops (`ctx.finetune`, `ctx.train`, then the runner's own
    fine-tune when the method asks for one): each times `PROBE_STEPS` steps of the real `fit`
    on the network, loss, masks, constraint and extra parameters the method hands it, and keeps
    the fastest after the first. INT8 toolchains of the run's targets are not run (the probe
    asks for none); a detector trains on synthetic boxes (`_synthetic`). Raises what the
    method raises (the caller falls back)."""
    from harness.api import Context
    from harness.registry import METHODS
    from harness.train import fit, predict_logits

    assert step.run is not None
    shape = tuple(runner.dataset.input_shape)
    classes = runner.dataset.num_classes
    detect = runner.task == "detect"
    prof = runner.profile
    big = max(prof.timing.batch_sizes)
    trainings: list[tuple[float, int]] = []
    evaluations: list[float] = []  # one call of each network the method evaluates

    def synthetic(n: int) -> Any:
        return _synthetic(n, shape, classes, detect)

    def trainer(recipe: Any) -> Any:
        def train(model: torch.nn.Module, epochs: float | None = None, masks: Any = None,
                  loss: Any = None, extra_params: Any = None, constraint: Any = None) -> Any:
            stamps: list[float] = []
            short = dataclasses.replace(recipe, epochs=1, train_samples=None, milestones=())
            fit(model, synthetic(PROBE_STEPS * recipe.batch_size), short, masks=masks,
                constraint=constraint, loss_fn=loss or runner.loss,
                device=runner.o.device, seed=runner.o.suite.seed, extra_params=extra_params,
                progress=lambda _: stamps.append(time.perf_counter()))
            step_s = min(b - a for a, b in zip(stamps, stamps[1:], strict=False))
            trainings.append((step_s, _loop_steps(runner, recipe, epochs)))
            return model.eval()
        return train

    def forward_s(model: torch.nn.Module) -> float:
        x = synthetic(big)
        return _best_time(lambda: predict_logits(model, x, None, big, runner.o.device), 2)

    def evaluate(model: torch.nn.Module) -> float:
        evaluations.append(forward_s(model))
        return 0.0

    with torch.random.fork_rng(devices=[]), tempfile.TemporaryDirectory() as tmp:
        model = runner._seeded(step.model)
        ctx = Context(train_data=synthetic(PROBE_STEPS * prof.train.batch_size),
                      test_data=synthetic(big), num_classes=classes, input_shape=shape,
                      device=runner.o.device, teacher=copy.deepcopy(model),
                      finetune=trainer(prof.finetune), train=trainer(prof.train),
                      train_epochs=prof.train.epochs, evaluate=evaluate, log=lambda _: None,
                      seed=runner.o.suite.seed, workdir=Path(tmp), targets=(),
                      calibration=synthetic)
        method = METHODS.get(step.run.method)
        comp = method().apply(model, method.Config(**step.run.config), ctx)
        trained = comp.finetune and prof.finetune.epochs > 0
        if trained:  # the runner's fine-tune
            trainer(prof.finetune)(comp.model, masks=comp.masks, constraint=comp.constraint)
        # as `Runner._compress` scores: top1_pruned unless the method gave it, top1_retrained
        # unless nothing was trained since
        one_shot = comp.top1_pruned is not None
        passes = (0 if one_shot else 1) + (1 if trained or one_shot else 0)
        net = comp.model.cpu().eval()
        size_s = 0.0 if _per_target(runner, step.run) else _sizing_s(net)
        return Probe(tuple(trainings), tuple(evaluations), forward_s(net), passes, size_s)


def _per_target(runner: Any, run: Any) -> bool:
    """`Runner.per_target`, False for a config that does not parse (it fails at run time)."""
    try:
        return bool(runner.per_target(run))
    except Exception:  # noqa: BLE001 - an estimate
        return False


def _sizing_s(model: torch.nn.Module) -> float:
    """Seconds of `metrics.byte_sizes` on `model`'s weights, which are nearly all of its ONNX
    file: zlib's time depends on where the zeros are, so it is timed on the network itself."""
    from harness.metrics import byte_sizes

    data = b"".join(t.detach().cpu().contiguous().numpy().tobytes()
                    for t in model.state_dict().values()
                    if isinstance(t, torch.Tensor) and t.is_floating_point())
    t0 = time.perf_counter()
    byte_sizes(data)
    return time.perf_counter() - t0


def _recipe_steps(runner: Any, run: Any) -> int:
    """The optimiser steps a compress step's recipe trains: a student's, the baseline recipe
    with its epochs override; any other method's, one fine-tune."""
    student = student_of(run)
    recipe = runner.profile.train if student else runner.profile.finetune
    return _loop_steps(runner, recipe, student[1] if student else None)


def worth_probing(runner: Any, step: Step) -> bool:
    """Is `step` an uncached compress step whose recipe trains at least `PROBE_MIN_STEPS`
    optimiser steps?"""
    if step.kind != "compress" or step.cached:
        return False
    return _recipe_steps(runner, step.run) >= PROBE_MIN_STEPS


def probe_all(runner: Any, steps: Any) -> tuple[dict[str, Probe], list[str]]:
    """Probes of the steps among `steps` worth probing, by step key, and a line for each that
    could not be probed (its model's step stands in for it)."""
    from harness.runner import _error

    probes: dict[str, Probe] = {}
    failed: list[str] = []
    for st in steps:
        if not worth_probing(runner, st):
            continue
        try:
            probes[st.key] = probe_compress(runner, st)
        except Exception as exc:  # noqa: BLE001 - an estimate: the model's step stands in
            failed.append(f"{st.label} ({_error(exc)})")
    return probes, failed


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
                   shape: tuple[int, ...]) -> tuple[dict[int, float], dict[int, float]]:
    """One call per timed batch size of the exported network on `target_name`, opened as the
    runner opens a cell's session (threads, runtime settings), and, where that call is short
    enough for a measurement to reopen sessions every round (`reopens`), what opening one
    costs (the faster of two opens); ({}, {}) where it cannot be opened (the torch call then
    stands in)."""
    from harness.api import Artifact
    from harness.registry import TARGETS

    try:
        target = TARGETS.get(target_name)()
        with torch.inference_mode():
            out_shape = tuple(model(torch.zeros((1, *shape))).shape[1:])
        art = Artifact(path, model, shape, out_shape, "fp32")
        out, opens = {}, {}
        settings = runner._settings(target)

        def open_(b: int) -> tuple[Any, float]:
            t0 = time.perf_counter()
            sess = target.prepare(art, b, runner.threads, "fp32", **settings)
            return sess, time.perf_counter() - t0

        for b in runner.profile.timing.batch_sizes:
            sess, first = open_(b)
            x = np.random.default_rng(0).standard_normal((b, *shape)).astype(np.float32)
            out[b] = _best_time(lambda sess=sess, x=x: sess.run(x))
            if reopens(target, runner.profile.timing.config(), out[b]):
                opens[b] = min(first, open_(b)[1])
        return out, opens
    except Exception:  # noqa: BLE001 - an estimate: any runtime problem falls back to torch
        return {}, {}


def reopens(target: Any, cfg: Any, call_s: float) -> bool:
    """Would a measurement on `target` with calls of `call_s` open fresh sessions every round
    (`timing.measure_pair`, as the runner asks it)?"""
    from harness.api import session_threads

    return session_threads(target) and cfg.reopens(call_s)


def train_size(runner: Any, recipe: Any) -> int:
    if recipe.train_samples:
        return int(recipe.train_samples)
    name = runner.o.suite.dataset
    if name in KNOWN_TRAIN_SIZES:
        return KNOWN_TRAIN_SIZES[name]
    return len(runner.dataset.train())


def step_seconds(runner: Any, step: Step, costs: dict[str, ModelCosts],
                 rounds: int | None = None, probes: dict[str, Probe] | None = None) -> float:
    """The estimated seconds of one step on one CPU worker (0 when it is a cache hit). A
    measure step is costed at the profile's full rounds, or at `rounds` (e.g. its early stop's
    first check, for the lower end of a profile with a `precision`). A compress step with a
    probe in `probes` (by step key) is costed by it; else by its model's (or student's) step."""
    c = costs[step.model]
    prof = runner.profile
    eval_n = prof.eval_samples or 10000
    big = max(prof.timing.batch_sizes)
    evaluate = math.ceil(eval_n / big) * c.forward_s[big] + c.score_s(eval_n)
    if step.kind == "baseline":
        made = evaluate + c.export_s + c.size_s  # a cached baseline is exported again too
        if step.cached:
            return made
        return _loop_steps(runner, prof.train, None) * c.train_step_s + made
    student = student_of(step.run)
    # the network the step trains or times: a measured student, else the suite's model
    own = costs.get(student[0], c) if student else c
    if step.kind == "compress":
        if step.cached:
            return 0.0
        method = step.run.method if step.run else ""
        # the export of the network it leaves; INT8's: the fp32 input, then its quantizers
        export = 2 * c.export_s if method in INT8_METHODS else own.export_s
        probe = (probes or {}).get(step.key)
        if probe is not None:  # the probe timed the sizing on the network itself
            return probe.seconds(math.ceil(eval_n / big), c.score_s(eval_n)) + export
        # sizing the export: INT8 toolchains' artifacts are sized per target instead
        extra = export + (0.0 if _per_target(runner, step.run) else own.size_s)
        steps = _recipe_steps(runner, step.run)
        per_step = own.train_step_s
        if student and method != "scratch":  # the teacher's forward pass on every batch
            per_step += c.teacher_forward_s if own is not c else 0.3 * c.train_step_s
        return (steps * per_step + extra
                + 2 * (math.ceil(eval_n / big) * own.forward_s[big] + c.score_s(eval_n)))
    timing = prof.timing
    cfg = timing.config()
    calls = 0.0
    # accuracy on the runtime: its calls, then the same scoring
    evaluate = math.ceil(eval_n / big) * own.call_s(step.target, big) + c.score_s(eval_n)
    target = _target(step.target)
    for b in timing.batch_sizes:
        cand, ref = own.call_s(step.target, b), c.call_s(step.target, b)
        per = calls_per_round(cfg, min(cand, ref), cand + ref)
        # candidate and baseline interleaved: warm-up, then rounds of both sides' calls
        calls += (max(1, timing.warmup) + (rounds or timing.rounds) * (per + timing.rewarm)) \
            * (cand + ref)
        if target is not None and reopens(target, cfg, min(cand, ref)):
            # short calls: every round after the first opens and warms a fresh pair
            opens = own.open_s.get(step.target or "", {}).get(b, 0.0) \
                + c.open_s.get(step.target or "", {}).get(b, 0.0)
            calls += ((rounds or timing.rounds) - 1) * (opens + max(1, timing.warmup)
                                                        * (cand + ref))
    return evaluate + calls


def _target(name: str | None) -> Any:
    """The registered target `name` (None where there is none to ask)."""
    from harness.registry import TARGETS

    try:
        return TARGETS.get(name)() if name else None
    except Exception:  # noqa: BLE001 - an estimate: an unknown target reopens nothing
        return None


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
