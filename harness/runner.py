"""The sweep: baseline -> method -> fine-tune -> export -> per target: accuracy, timing -> store.

A cell is (suite, model, method + config, target). Its key hashes everything that changes its
result; a finished key is skipped on re-run unless `force`. Trained baselines and compressed
models are cached on disk under the same kind of key, so a resumed sweep does not retrain;
cache entries are verified data, never pickles (harness/cache.py, harness/modeldata.py), and a
bad one is rebuilt, never reported as a failed cell.
A cell that raises is stored as failed with its error, and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import inspect
import json
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import __version__, accuracy_ci, cache, faults, modeldata, quality, stats, sysinfo
from harness.api import (Artifact, Compressed, Context, TargetArtifact, build_model,
                         session_threads)
from harness.errors import UsageError
from harness import export
from harness.export import to_onnx
from harness.metrics import byte_sizes, file_sizes, model_metrics
from harness.model_refs import RefSpec
from harness.registry import DATASETS, METHODS, MODELS, TARGETS
from harness.store import Store
from harness.suite import MethodRun, Profile, Suite
from harness.timing import first_call_ns, sig3
from harness.scoring import ClassifyScorer, DetectScorer
from harness.slug import slug
from harness.train import Recipe, eval_arrays, fit, predict_logits

# bump when a recipe would produce other weights (2: seeded init; 3: a last batch of one
# item joins the one before it, `epochs = 0` trains no step instead of one)
TRAIN_CODE_VERSION = "3"
# bump when what a measurement stores changes (2: paired CI, quality, floors, raw samples;
# 3: the early stop of `timing.precision`, one call per round under `max_seconds`; 4: calls
# shorter than timing.REOPEN_BELOW_MS timed on fresh sessions every round; 5: the reference
# warmed first, so each side's chunk follows the other's equally often). A new
# version re-measures stored cells once (their models stay cached); old rows stay readable.
MEASURE_VERSION = "5"


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunOptions:
    suite: Suite
    profile: str
    targets: list[str]
    store: Path
    cache_dir: Path
    data_dir: Path | None = None
    download: bool = False
    device: str = "cpu"
    threads: int | None = None
    force: bool = False
    methods: list[str] = field(default_factory=list)  # only these method names (empty = all)
    command: str = ""


@dataclass
class Events:
    """Progress callbacks; the CLI maps them to rich progress bars, tests leave them quiet."""

    cell: Callable[[str], None] = lambda label: None  # a cell (or skipped cell) finished
    stage: Callable[[str], None] = lambda text: None
    train: Callable[[float], None] = lambda frac: None
    log: Callable[[str], None] = lambda text: None


@dataclass(frozen=True)
class StepResult:
    """What a step hands back to the driver: plain data only (Ray serialises it). A measure
    step's cells are (cell row, measurements, raw samples); a compute step has none, or the
    one-line error that fails every cell needing it."""

    key: str
    cells: list[tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]] = field(
        default_factory=list)
    error: str | None = None


@dataclass
class Prepared:
    """A compressed model ready for targets: module, ONNX export, per-target artifacts the
    method made itself, and the torch-side metrics."""

    module: torch.nn.Module
    onnx_path: Path | None
    metrics: dict[str, Any]
    artifacts: dict[str, TargetArtifact] = field(default_factory=dict)


def check_targets(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """(usable names, {name: reason} for unusable ones). Unknown names are a UsageError."""
    usable, skipped = [], {}
    for name in names:
        reason = TARGETS.get(name)().available()
        if reason:
            skipped[name] = reason
        else:
            usable.append(name)
    return usable, skipped


def network_code(net: torch.nn.Module) -> str:
    """A digest of what a network is, beyond its name: its printed structure (layers, their
    sizes and activations) and the source of every module class outside torch itself (the
    user's `forward`s, torchvision's). A model by reference is the user's code, which can
    change under the same name; the baseline key holds this, so an edit retrains instead of
    loading the old network's weights into the new one. Classes whose source cannot be read
    count by their qualified name."""
    h = hashlib.sha256(repr(net).encode())
    seen: set[type] = set()
    for mod in net.modules():
        cls = type(mod)
        if cls in seen or cls.__module__.split(".")[0] == "torch":
            continue
        seen.add(cls)
        try:
            src = inspect.getsource(cls)
        except (OSError, TypeError):
            src = f"{cls.__module__}.{cls.__qualname__}"
        h.update(src.encode())
    return h.hexdigest()[:16]


def check_outputs(name: str, net: torch.nn.Module, num_classes: int,
                  input_shape: tuple[int, ...]) -> None:
    """A classifier must give one score per class: a network built for another class count
    trains on labels it cannot score (an IndexError deep in the loss) or reports top-1 of the
    wrong layer. Probed with one forward pass of two blank images; a network that returns no
    (N, K) tensor is left to fail, or not, where it is used."""
    was = net.training
    try:
        with torch.inference_mode():
            out = net.eval()(torch.zeros(2, *input_shape))
    except Exception as exc:  # the user's forward: one line, not a traceback
        raise UsageError(f"model '{name}' cannot run on images of shape {input_shape} "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})") from None
    finally:
        net.train(was)
    if isinstance(out, torch.Tensor) and out.dim() == 2 and out.shape[1] != num_classes:
        raise UsageError(f"model '{name}' outputs {out.shape[1]} scores per image but the "
                         f"dataset has {num_classes} classes: build it with num_classes "
                         f"(its builder is passed num_classes={num_classes} when it takes "
                         "that argument)")


def _file_digest(path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"model_options checkpoint '{path}' is not a file")
    st = p.stat()
    return _hash_file(str(p.resolve()), (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))


@functools.lru_cache(maxsize=16)
def _hash_file(path: str, stamp: tuple[int, int, int, int]) -> str:
    """sha256 of a file, hashed once per (path, inode, size, mtime, ctime): every cell key asks
    for it. The ctime is in the stamp because `touch -r` can restore a rewritten file's mtime
    (and its size can stay the same) but nothing a user runs can set the ctime back."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Runner:
    def __init__(self, opts: RunOptions, events: Events | None = None, *,
                 check_device: bool = True) -> None:
        """`check_device`: refuse `--device cuda` now where this process has no CUDA device
        (a local run). A Ray driver passes False (its cluster's nodes train, and the executor
        checks that one has a GPU), and so do Ray workers: a compute step on a node without one
        fails naming it (`_train_device`), and a measure step scores on the CPU there."""
        self.o = opts
        self.ev = events or Events()
        self.profile: Profile = opts.suite.profile(opts.profile)
        self.threads = opts.threads or self.profile.timing.threads
        self.targets, self.skipped = check_targets(opts.targets)
        for name in opts.methods:
            METHODS.get(name)
        self.dataset = DATASETS.get(opts.suite.dataset)(
            data_dir=opts.data_dir, download=opts.download, **opts.suite.dataset_options
        )
        self.task = getattr(self.dataset, "task", "classify")
        self._code: dict[str, str] = {}  # model by reference -> digest of its network's code
        for m in opts.suite.models:
            if MODELS.get(m).task != self.task:
                raise UsageError(f"model '{m}' is a {MODELS.get(m).task} model but dataset "
                                 f"'{opts.suite.dataset}' is for {self.task}")
            if not isinstance(MODELS.get(m), RefSpec):
                continue
            # a model by reference (harness/model_refs.py): build it once now, so a callable
            # that returns no nn.Module, an unusable checkpoint or a classifier with another
            # number of outputs than the dataset has classes is a line and exit 2 here; what
            # was built names the network's code in its baseline key (`network_code`)
            with torch.random.fork_rng(devices=[]):
                net = build_model(MODELS.get(m), self.dataset.num_classes,
                                  tuple(self.dataset.input_shape),
                                  opts.suite.model_options.get(m))
            if self.task == "classify":
                check_outputs(m, net, self.dataset.num_classes, tuple(self.dataset.input_shape))
            self._code[m] = network_code(net)
        if self.task == "detect" and (self.profile.train.augment or self.profile.finetune.augment):
            raise UsageError("augment = true flips and crops images but not boxes: it is for "
                             "classifiers only (set it false in the suite's detection profiles)")
        self.scorer: Any = ClassifyScorer()  # a detector's scorer comes with its baseline
        self.loss = DetectScorer.loss if self.task == "detect" else ClassifyScorer.loss
        if check_device and self._no_cuda():
            raise UsageError("--device cuda: no CUDA device is available here (choose: cpu)")
        self.machine = sysinfo.machine()
        self.versions = sysinfo.versions()
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self._refs: dict[tuple[str, str, int], Any] = {}
        self._open_store: Store | None = None  # the run's store while a session is open
        self._used: set[Path] = set()  # cache entries this runner held in use (cache.use)
        self.estimator = stats.ESTIMATOR
        export.use_store(opts.cache_dir / "exports")  # one export per distinct network
        self._baselines: dict[str, tuple[Prepared, float]] = {}
        self._last: tuple[Any, tuple[Prepared, dict[str, Any]]] | None = None
        # the facts of the machines that time cells (`timed_facts`): None is this process's
        # machine; a Ray run sets the timing nodes' answers (RayExecutor.start)
        self.timed_on: list[dict[str, Any]] | None = None
        # where this process times: recorded with every cell (a Ray worker adds its node id)
        self.node: dict[str, Any] = {"host": self.machine.get("hostname"),
                                     "cpu": self.machine.get("cpu"),
                                     "cores_usable": self.machine.get("cores_usable")}
        self._data: tuple[Any, Any] | None = None

    def load_data(self) -> tuple[Any, Any]:
        """(train, test) datasets; a missing dataset is a UsageError saying how to get it."""
        if self._data is None:
            self._data = (self.dataset.train(), self.dataset.test())
        return self._data

    # ---- planning ---------------------------------------------------------------------------

    def method_runs(self, model: str, only: list[MethodRun] | None = None) -> list[MethodRun]:
        """The runs of a model's cells: the baseline, then the suite's grid (or `only`)."""
        runs = [MethodRun("baseline")] + [r for r in (self.o.suite.runs if only is None
                                                      else only) if r.applies_to(model)]
        if self.o.methods and only is None:
            runs = [r for r in runs if r.method == "baseline" or r.method in self.o.methods]
        return runs

    def total_cells(self) -> int:
        return sum(len(self.method_runs(m)) for m in self.o.suite.models) * len(self.targets)

    def _data_key(self) -> dict[str, Any]:
        key = {"dataset": self.o.suite.dataset, "options": self.o.suite.dataset_options}
        fingerprint = getattr(self.dataset, "fingerprint", None)  # what the images are
        if fingerprint is not None:
            key["content"] = fingerprint()
        return key

    def baseline_key(self, model: str) -> str:
        key = {"model": model, "data": self._data_key(), "recipe": self.profile.train,
               "seed": self.o.suite.seed, "train_code": TRAIN_CODE_VERSION,
               "device": self.o.device}
        if model in self._code:  # the user's own code: editing it makes a new baseline
            key["code"] = self._code[model]
        options = self.o.suite.model_options.get(model)
        if options:  # a checkpoint counts by its content, not its path
            key["options"] = {k: _file_digest(v) if k == "checkpoint" else v
                              for k, v in options.items()}
        return digest(key)

    def per_target(self, run: MethodRun) -> bool:
        """Does the method make per-runtime artifacts (INT8), so that what it builds depends
        on the run's targets?"""
        from harness.methods.pipeline import parse_step

        names = [run.method]
        if run.method == "pipeline":
            names = [parse_step(s)[0] for s in METHODS.get("pipeline").Config(**run.config).steps]
        return any(getattr(METHODS.get(n), "per_target", False) for n in names)

    def compressed_key(self, model: str, run: MethodRun) -> str:
        method = METHODS.get(run.method)
        key = {"baseline": self.baseline_key(model), "method": run.method,
               "config": run.config, "version": method.version,
               "finetune": self.profile.finetune, "harness": __version__,
               "eval_samples": self.profile.eval_samples}  # the cached accuracies
        if self.per_target(run):  # INT8 toolchains run only for the run's targets
            key["toolchains"] = sorted(self.targets)
            if "onnxruntime-cpu" in self.targets and sysinfo.ort_reduce_range():
                key["ort_reduce_range"] = True  # 7-bit weights where the CPU lacks VNNI
        if run.method == "pipeline":  # a step's method that changed makes a new pipeline too
            from harness.methods.pipeline import parse_step

            key["step_versions"] = [METHODS.get(parse_step(st)[0]).version
                                    for st in method.Config(**run.config).steps]
        return digest(key)

    def baseline_folder(self, model: str) -> Path:
        return self.o.cache_dir / "baselines" / slug(f"{model}-{self.baseline_key(model)}")

    def compressed_folder(self, model: str, run: MethodRun) -> Path:
        key = self.compressed_key(model, run)
        return self.o.cache_dir / "compressed" / slug(f"{model}-{run.method}-{key}")

    def timed_facts(self, target: str) -> tuple[Any, Any]:
        """The CPU and `target`'s runtime versions that a cell's key names: where the cell is
        timed, so that a stored cell is reused only where it would be timed again. Locally,
        this machine. On Ray, the timing nodes (not the driver, which times nothing): one
        kind of machine is named as this machine would be; a mixed pool names every CPU and
        version set it has, since which node will time a cell is not known when its key is
        computed (a cell stored by another pool is then measured again, never reused)."""
        if self.timed_on is None:
            return self.machine["cpu"], TARGETS.get(target)().versions()
        cpus = sorted({str(f["cpu"]) for f in self.timed_on})
        versions = sorted({json.dumps(f["versions"][target], sort_keys=True)
                           for f in self.timed_on if target in f["versions"]})
        return (cpus[0] if len(cpus) == 1 else cpus,
                json.loads(versions[0]) if len(versions) == 1 else versions)

    def cell_key(self, model: str, run: MethodRun, target: str) -> str:
        cpu, versions = self.timed_facts(target)
        return digest({"suite": self.o.suite.name, "compressed": self.compressed_key(model, run),
                       "target": target, "versions": versions,
                       "timing": self.profile.timing.key(), "threads": self.threads,
                       "eval_samples": self.profile.eval_samples, "cpu": cpu,
                       "harness": __version__, "measure": MEASURE_VERSION,
                       "estimator": self.estimator})

    def timing_caveat(self) -> str | None:
        """The one line said before a sweep whose profile times chunks too short to trust
        (suite.Timing.short_chunks), or None."""
        short = self.profile.timing.short_chunks()
        return f"timing of profile {self.o.profile}: {short}" if short else None

    # ---- the sweep --------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The run's settings as stored in `runs.settings`."""
        return {"profile": dataclasses.asdict(self.profile), "threads": self.threads,
                "targets": self.targets, "skipped_targets": self.skipped,
                "device": self.o.device, "estimator": self.estimator,
                "confidence": stats.CONFIDENCE, "bootstrap_resamples": stats.BOOTSTRAP,
                "quality": {"max_other_cpu": quality.MAX_OTHER_CPU,
                            "max_steal": quality.MAX_STEAL,
                            "max_ci_half_width": quality.MAX_CI_HALF_WIDTH,
                            "retries": quality.RETRIES},
                "scoring_floors": {"calls": quality.MIN_SCORED_CALLS,
                                   "seconds": quality.MIN_SCORED_SECONDS,
                                   "rounds": quality.MIN_SCORED_ROUNDS}}

    def run(self, executor: Any = None) -> str:
        """Plan the sweep, let the executor run its steps, and store every cell it returns:
        this process is the store's only writer (one transaction per cell)."""
        with self.session(executor) as sweep:
            sweep()
        return self.run_id

    @contextlib.contextmanager
    def session(self, executor: Any = None) -> Iterator[Callable[..., None]]:
        """One stored run (`runs` row) around any number of sweeps: `sweep()` runs the
        suite's grid, `sweep([run, ...])` only those method runs (and the baselines they
        need), as `harness tune` does once per trial."""
        from harness.executors.local import LocalExecutor

        suite = self.o.suite
        executor = executor or LocalExecutor()
        if hasattr(executor, "start"):  # e.g. Ray: connect and settle how artifacts move
            executor.start(self)  # (a refusal here leaves the store as it was)
        store = Store(self.o.store)
        self._open_store = store  # `taken` asks it, in this (the driver's) process only
        settings = {**self.settings(), "executor": executor.describe()}
        store.start_run(self.run_id, suite=suite.name, profile=self.o.profile,
                        harness_version=__version__, git_commit=sysinfo.git_commit(),
                        command=self.o.command, machine=self.machine, versions=self.versions,
                        settings=settings)
        caveat = self.timing_caveat()
        if caveat:
            self.ev.log(caveat)
        try:
            yield functools.partial(self._sweep, store, executor)
        finally:
            self._open_store = None
            for folder in self._used:  # the sweep is over: no file of them is used any more
                cache.release(folder)
            self._used.clear()
            store.finish_run(self.run_id)
            store.close()

    def _sweep(self, store: Store, executor: Any, runs: list[MethodRun] | None = None) -> None:
        from harness import plan as plans

        plan = plans.build(self, store, runs)
        for model, run, t in plan.skipped:
            self.ev.cell(f"{model} {run.label} {t} (stored, skipped)")
        for result in executor.run(self, plan):
            for cell, meas, samples in result.cells:
                faults.checkpoint("store-write")
                store.put_cell(cell, meas, samples)
                status = ("ok" if cell["status"] == "ok"
                          else "FAILED: " + (cell["error"] or "").splitlines()[0])
                self.ev.cell(f"{cell['model']} {_label(cell)} {cell['target']} {status}")

    def taken(self, step: Any) -> bool:
        """Has another run stored this measure step's cell since the plan was made (two sweeps
        on one store)? The executors ask just before a measurement starts, in the driver, so
        the cell is neither measured nor stored twice; `--force` measures it again anyway."""
        if step.kind != "measure" or self.o.force or self._open_store is None:
            return False
        if not self._open_store.finished(step.key):
            return False
        self.ev.cell(f"{step.model} {step.run.label} {step.target} "
                     "(stored meanwhile by another run, skipped)")
        return True

    # ---- one step, in this process (the local executor calls this directly; the Ray
    # executor calls it in a worker, on a Runner built from the same options) --------------

    def execute(self, step: Any) -> StepResult:
        """Run one step; return its cells (measure) as plain data, or the error of a compute
        step (the driver then fails the cells that needed it). Never writes the store."""
        train_ds, test_ds = self.load_data()
        spec = MODELS.get(step.model)
        try:
            if step.kind == "baseline":
                self._ensure_baseline(spec, train_ds, test_ds, force=self.o.force)
                return StepResult(step.key)
            if step.kind == "compress":
                self._ensure_compressed(spec, step.run, train_ds, test_ds, force=self.o.force)
                return StepResult(step.key)
        except Exception as exc:  # the sweep goes on; the cells that needed it say why
            return StepResult(step.key, error=_error(exc))
        return StepResult(step.key, cells=[self._measure_cell(spec, step, train_ds, test_ds)])

    def failed_step(self, step: Any, error: str) -> StepResult:
        """What a step that could not run (or that a step it needs left undone) hands the
        driver: a measure step, its cell stored as failed with `error`; a compute step, the
        error, which fails the cells that need it."""
        if step.kind != "measure":
            return StepResult(step.key, error=error)
        row = self._cell_row(step.model, step.run, step.target, step.key, status="failed",
                             error=error, started=time.perf_counter())
        return StepResult(step.key, cells=[(row, [], [])])

    def _ensure_baseline(self, spec: Any, train_ds: Any, test_ds: Any, force: bool = False
                         ) -> tuple[Prepared, float]:
        if spec.name not in self._baselines:
            self.ev.stage(f"{spec.name}: baseline")
            folder = self.baseline_folder(spec.name)
            with self._in_use(folder, force), cache.building(folder, self.ev.log):
                self._baselines[spec.name] = self._baseline(spec, train_ds, test_ds,
                                                            force=force)
        return self._baselines[spec.name]

    @contextlib.contextmanager
    def _in_use(self, folder: Path, force: bool) -> Iterator[None]:
        """Hold the entry as used by this process (`cache.use`) from before it is read on;
        `--force` first takes it exclusively (`cache.claim`: no other sweep is timing from
        its files when it is deleted), then shares it like any reader, built or not."""
        if force:
            cache.claim(folder, self.ev.log)
        else:
            cache.use(folder, self.ev.log)
        self._used.add(folder)
        try:
            yield
        except BaseException:  # nothing of it is in memory: not in use here
            cache.release(folder)
            raise
        if force:
            cache.use(folder, self.ev.log)

    def forget(self, folder: Path) -> None:
        """The entry at `folder` was replaced under this process (Ray's object-store mode: a
        copy rebuilt on another node arrived, `executors.ray.unpack`): drop what of the older
        one is in memory, so the next step reads the new files."""
        for name in [m for m in self._baselines if self.baseline_folder(m) == folder]:
            del self._baselines[name]
        if self._last is not None and self._last[0][2] == folder:
            self._last = None
        self._used.discard(folder)

    def _ensure_compressed(self, spec: Any, run: MethodRun, train_ds: Any, test_ds: Any,
                           force: bool = False) -> tuple[Prepared, dict[str, Any]]:
        baseline, base_top1 = self._ensure_baseline(spec, train_ds, test_ds)
        if run.method == "baseline":
            return baseline, {"top1_baseline": base_top1, "top1_pruned": base_top1,
                              "top1_retrained": base_top1}
        key = (spec.name, self.compressed_key(spec.name, run))
        if self._last is None or self._last[0][:2] != key:
            if self._last is not None:  # one compressed model in memory at a time: the
                cache.release(self._last[0][2])  # last one's files are no longer used here
            self._last = None
            faults.checkpoint("compress")
            folder = self.compressed_folder(spec.name, run)
            with self._in_use(folder, force), cache.building(folder, self.ev.log):
                self._last = ((*key, folder), self._compress(spec, run, baseline, base_top1,
                                                              train_ds, test_ds, force=force))
        return self._last[1]

    def _measure_cell(self, spec: Any, step: Any, train_ds: Any, test_ds: Any
                      ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        started = time.perf_counter()
        run, t = step.run, step.target
        try:
            baseline, _ = self._ensure_baseline(spec, train_ds, test_ds)
            prepared, accs = self._ensure_compressed(spec, run, train_ds, test_ds)
        except Exception as exc:
            return self.failed_step(step, _error(exc)).cells[0]
        try:
            faults.checkpoint("measure")
            row, meas, samples = self._measure(spec, t, prepared, baseline, test_ds,
                                               aa=run.method == "baseline")
            cell = self._cell_row(spec.name, run, t, step.key, status="ok", error=None,
                                  started=started, prepared=prepared, baseline=baseline,
                                  accs=accs, **row)
        except Exception as exc:
            cell = self._cell_row(spec.name, run, t, step.key, status="failed",
                                  error=_error(exc), started=started, prepared=prepared,
                                  baseline=baseline, accs=accs)
            meas, samples = [], []
        cell["node"] = self.node
        return cell, meas, samples

    def _cell_row(self, model: str, run: MethodRun, target: str, key: str, *, status: str,
                  error: str | None, started: float, prepared: Prepared | None = None,
                  baseline: Prepared | None = None, accs: dict[str, Any] | None = None,
                  **extra: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "cell_key": key, "run_id": self.run_id, "suite": self.o.suite.name, "model": model,
            "method": run.method, "method_config": run.config, "target": target,
            "status": status, "error": error, "eval_samples": self.profile.eval_samples,
            "target_versions": TARGETS.get(target)().versions(),
            "baseline_key": self.baseline_key(model),  # the accuracy loss's reference
        }
        if prepared is not None:
            m = prepared.metrics
            row.update({k: m[k] for k in ("params_total", "params_nonzero", "flops",
                                          "flops_effective", "size_bytes",
                                          "size_compressed_bytes", "layers")})
            # MACs as Li et al. and Torch-Pruning count them (flop_counter counts 2 per MAC);
            # cached metrics from before the column are derived the same way
            row["macs"] = m.get("macs", m["flops"] // 2 if m.get("flops") else None)
            row["precision"] = "fp32"
            row["info"] = m.get("info", {})
            row.update(accs or {})
            if baseline is not None:
                b = baseline.metrics
                row["compression_ratio"] = sig3(b["params_total"] / max(1, m["params_nonzero"]))
                row["flops_ratio"] = sig3(b["flops"] / max(1, m["flops_effective"]))
        row.update(extra)
        row["duration_s"] = round(time.perf_counter() - started, 2)
        return row

    # ---- baseline and compression (cached on disk) ------------------------------------------

    def _trainer(self, recipe: Recipe, device: str) -> Callable[..., Any]:
        """ctx.finetune / ctx.train: `fit` with one of the suite's recipes, epochs overridable,
        on `device` (`_train_device`, checked once by the step that builds it)."""
        def train(model: torch.nn.Module, epochs: float | None = None,
                  masks: dict[str, torch.Tensor] | None = None, loss: Any = None,
                  extra_params: list[Any] | None = None,
                  constraint: Callable[[torch.nn.Module], None] | None = None) -> torch.nn.Module:
            r = dataclasses.replace(recipe, epochs=epochs) if epochs is not None else recipe
            return fit(model, self.dataset.train(), r, masks=masks, constraint=constraint,
                       loss_fn=loss or self.loss, device=device,
                       seed=self.o.suite.seed, progress=self.ev.train,
                       extra_params=extra_params)
        return train

    def _no_cuda(self) -> bool:
        """Does the run ask for cuda where this process has no CUDA device?"""
        return self.o.device == "cuda" and not torch.cuda.is_available()

    def _train_device(self, what: str) -> str:
        """The device this process trains on: the run's `--device`. Where it is cuda and this
        process sees no CUDA device (a Ray worker on a node without a GPU), the step fails
        naming the node, rather than training on the CPU under cache keys that say cuda."""
        if self._no_cuda():
            where = self.node.get("ray_node") or self.node.get("host")
            raise RuntimeError(f"{what} needs --device cuda, but this process on node {where} "
                               "sees no CUDA device (on Ray: a node started with --num-gpus "
                               "on a machine whose GPU torch can use)")
        return self.o.device

    def _eval_device(self) -> str:
        """Where accuracy passes run: the run's device where this process has it, else the
        CPU. A measure step of a cuda sweep runs on a timing node that may have no GPU: it
        re-scores the cached baseline there."""
        return "cpu" if self._no_cuda() else self.o.device

    def _evaluate(self, model: torch.nn.Module, test_ds: Any) -> float:
        """The task's score (top-1, or mAP@0.5) of a torch model on the evaluation items."""
        out, labels = predict_logits(model, test_ds, self.profile.eval_samples,
                                     device=self._eval_device())
        return self.scorer.score(out.numpy(), labels.numpy())[0]

    def _fresh(self, name: str, options: bool = True) -> torch.nn.Module:
        """A freshly built registry model sized for the dataset (with the suite's options for
        it unless `options` is False, as distillation builds its students)."""
        return build_model(MODELS.get(name), self.dataset.num_classes,
                           tuple(self.dataset.input_shape),
                           self.o.suite.model_options.get(name) if options else None)

    def _seeded(self, name: str) -> torch.nn.Module:
        """The baseline's initial weights from the suite's seed: a process that drew other
        random numbers first (a Ray worker, a resumed sweep) must start from the same ones."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.o.suite.seed)
            return self._fresh(name)

    def _baseline(self, spec: Any, train_ds: Any, test_ds: Any, force: bool = False
                  ) -> tuple[Prepared, float]:
        """The trained baseline: its weights come from a verified cache entry (safetensors) or
        are trained and stored; `--force` always retrains. ONNX export, metrics and accuracy
        are redone every run (the export is written atomically)."""
        folder = self.baseline_folder(spec.name)
        model = self._seeded(spec.name)
        # train = false (model_options): the checkpoint the model was built with is the baseline
        untrained = (self.o.suite.model_options.get(spec.name) or {}).get("train") is False
        entry = None if force or untrained else cache.read_entry(folder, self.ev.log)
        if entry is not None:
            try:
                modeldata.load_state(model, entry.read_bytes(WEIGHTS))
                self.ev.log(f"{spec.name}: cached baseline {folder}")
            except Exception as exc:  # a cache problem is a cache miss, never a failed cell
                cache.reject(folder, f"cannot load its weights ({_error(exc)})", self.ev.log)
                entry, model = None, self._seeded(spec.name)
        if untrained:
            self.ev.log(f"{spec.name}: baseline = its checkpoint as it is (train = false)")
        elif entry is None:
            device = self._train_device(f"{spec.name}: training its baseline")
            cache.discard(folder)
            self.ev.stage(f"{spec.name}: training baseline")
            faults.checkpoint("baseline-train")
            fit(model, train_ds, self.profile.train, device=device, loss_fn=self.loss,
                seed=self.o.suite.seed, progress=self.ev.train)
            try:
                cache.write_entry(folder, {"model": spec.name, "kind": "baseline"},
                                  {WEIGHTS: modeldata.state_bytes(model.cpu())}, include=[])
            except Exception as exc:
                self.ev.log(f"cache: could not store the {spec.name} baseline "
                            f"({_error(exc)}); it is retrained next run")
                cache.discard(folder)
        model = model.cpu().eval()
        if self.task == "detect":
            self.scorer = DetectScorer(model, self.dataset.num_classes)
        acc = self._evaluate(model, test_ds)
        folder.mkdir(parents=True, exist_ok=True)
        prepared = self._finish(model.cpu(), folder, {}, {})
        return prepared, acc

    def _compress(self, spec: Any, run: MethodRun, baseline: Prepared, base_top1: float | None,
                  train_ds: Any, test_ds: Any, force: bool = False
                  ) -> tuple[Prepared, dict[str, Any]]:
        method_cls = METHODS.get(run.method)
        folder = self.compressed_folder(spec.name, run)
        if not force:
            hit = self._cached(spec, run, folder)
            if hit is not None:
                return hit
        device = self._train_device(f"{spec.name} {run.label}: compress")
        cache.discard(folder)
        folder.mkdir(parents=True)

        self.ev.stage(f"{spec.name} {run.label}: compress")
        model = copy.deepcopy(baseline.module)
        finetune = self._trainer(self.profile.finetune, device)
        ctx = Context(train_data=train_ds, test_data=test_ds,
                      num_classes=self.dataset.num_classes,
                      input_shape=tuple(self.dataset.input_shape), device=device,
                      teacher=copy.deepcopy(baseline.module), finetune=finetune,
                      train=self._trainer(self.profile.train, device),
                      train_epochs=self.profile.train.epochs,
                      evaluate=lambda m: self._evaluate(m, test_ds), log=self.ev.log,
                      seed=self.o.suite.seed, workdir=folder,
                      calibration=self.dataset.calibration, targets=tuple(self.targets))
        method = method_cls()
        comp: Compressed = method.apply(model, method_cls.Config(**run.config), ctx)
        module = comp.model
        accs: dict[str, Any] = {"top1_baseline": base_top1}
        module = module.cpu().eval()
        scored = comp.scored if comp.scored is not None else module
        accs["top1_pruned"] = (comp.top1_pruned if comp.top1_pruned is not None  # one-shot
                               else self._evaluate(scored, test_ds))
        trained = comp.finetune and self.profile.finetune.epochs > 0
        if trained:
            self.ev.stage(f"{spec.name} {run.label}: fine-tune")
            faults.checkpoint("finetune")
            finetune(module, masks=comp.masks, constraint=comp.constraint)
            module = module.cpu().eval()
            scored = module
        # nothing trained and top1_pruned scored this very model: not evaluated again
        accs["top1_retrained"] = (accs["top1_pruned"] if not trained and comp.top1_pruned is None
                                  else self._evaluate(scored, test_ds))
        prepared = self._finish(module, folder, comp.artifacts, comp.info)
        self._store(spec, run, folder, prepared, accs, comp.info)
        return prepared, accs

    def _cached(self, spec: Any, run: MethodRun, folder: Path
                ) -> tuple[Prepared, dict[str, Any]] | None:
        """The compressed model of a verified cache entry, rebuilt from data; None (after one
        log line, with the entry discarded) when there is none or it cannot be used."""
        entry = cache.read_entry(folder, self.ev.log)
        if entry is None:
            return None
        try:
            data = entry.data
            if data.get("layout") != CACHE_LAYOUT:
                raise cache.CacheError("an entry of another layout")
            arch = json.loads(entry.read_bytes(ARCH))
            module = self._rebuild(arch, entry.read_bytes(WEIGHTS))
            shape = tuple(self.dataset.input_shape)
            arts = {t: _load_artifact(entry, a, module, shape)
                    for t, a in dict(data["artifacts"]).items()}
            onnx = entry.path(ONNX) if data.get("onnx") else None
            metrics, accs = dict(data["metrics"]), dict(data["accs"])
        except Exception as exc:  # a cache problem is a cache miss, never a failed cell
            cache.reject(folder, f"cannot rebuild its model ({_error(exc)})", self.ev.log)
            return None
        self.ev.log(f"{spec.name} {run.label}: cached compressed model {folder}")
        return Prepared(module.eval(), onnx, metrics, arts), accs

    def _store(self, spec: Any, run: MethodRun, folder: Path, prepared: Prepared,
               accs: dict[str, Any], info: dict[str, Any]) -> None:
        """Commit the compressed model as a cache entry: structure as JSON, weights (and a
        torch.ao INT8 module's tensors) as safetensors, every file hashed, meta.json last.
        Only what rebuilds identically is stored; anything else is logged and left uncached
        (the files stay: this run still uses them)."""
        try:
            files: dict[str, bytes] = {WEIGHTS: modeldata.state_bytes(prepared.module)}
            files[ARCH] = self._arch(spec, run, prepared.module, files[WEIGHTS], info)
            shape = tuple(self.dataset.input_shape)
            arts = {t: _save_artifact(folder, t, a, prepared.module, shape, files)
                    for t, a in prepared.artifacts.items()}
            cache.write_entry(folder, {"layout": CACHE_LAYOUT, "model": spec.name,
                                       "method": run.method, "config": run.config,
                                       "metrics": prepared.metrics, "accs": accs,
                                       "artifacts": arts, "onnx": prepared.onnx_path is not None},
                              files)
        except Exception as exc:
            (folder / cache.META).unlink(missing_ok=True)
            self.ev.log(f"cache: {spec.name} {run.label} not cached ({_error(exc)}); "
                        f"it is recomputed next run")

    def _students(self, run: MethodRun, info: dict[str, Any]) -> list[str]:
        """Registry models a method may have returned instead of the suite's model: the
        `student` of the run's config (or of each pipeline step's), defaults included."""
        from harness.methods.pipeline import parse_step

        steps: list[tuple[str, dict[str, Any]]] = [(run.method, run.config)]
        if run.method == "pipeline":
            steps = [parse_step(s) for s in METHODS.get("pipeline").Config(**run.config).steps]
        names = [info.get("student")]
        for name, config in steps:
            try:
                names.append(getattr(METHODS.get(name).Config(**config), "student", None))
            except Exception:  # not a method with a student
                continue
        return list(dict.fromkeys(n for n in names if isinstance(n, str) and n in MODELS))

    def _arch(self, spec: Any, run: MethodRun, module: torch.nn.Module, weights: bytes,
              info: dict[str, Any]) -> bytes:
        """The architecture as data (JSON): the registry model `module` was made from (the
        suite's model or a student; the one it differs least from) and what the method
        changed in it, checked by rebuilding from exactly these bytes (NotRebuildable if the
        model does not come back identical)."""
        shape = tuple(self.dataset.input_shape)
        found: list[tuple[int, bytes]] = []
        why = "no registry model to start from"
        for name, options in [(spec.name, True)] + [(s, False) for s in self._students(run, info)]:
            try:
                with torch.random.fork_rng(devices=[]):
                    changes = modeldata.structure_changes(self._fresh(name, options), module)
            except modeldata.NotRebuildable as exc:
                why = str(exc)
                continue
            found.append((len(changes), json.dumps({"format": 1, "model": name,
                                                    "options": options,
                                                    "changes": changes}).encode()))
        for _, text in sorted(found, key=lambda item: item[0]):
            try:
                rebuilt = self._rebuild(json.loads(text), weights)
                why = modeldata.differences(module, rebuilt, shape) or ""
            except modeldata.NotRebuildable as exc:
                why = str(exc)
            if not why:
                return text
        raise modeldata.NotRebuildable(f"the model cannot be rebuilt from data: {why}")

    def _may_build(self, name: str) -> bool:
        """May a cache file's architecture record name this model? A registered one, or a
        reference (`package.module:callable`) the suite itself names, as a model or a method's
        option (a student). Never any other reference: resolving one imports its module and
        calls it, so a cache file could otherwise run code of its choosing. (A student named
        only inside a pipeline step is not looked for: its entry is rebuilt, a cache miss.)"""
        if name in MODELS.names():  # registered: nothing is imported or called to know it
            return True
        named = set(self.o.suite.models)
        for run in self.o.suite.runs:
            named |= {v for v in run.config.values() if isinstance(v, str)}
        return name in named

    def _rebuild(self, arch: dict[str, Any], weights: bytes) -> torch.nn.Module:
        """A model from its architecture record and safetensors weights; the global RNG is
        left as it was (building a model initialises weights randomly)."""
        if not isinstance(arch, dict) or arch.get("format") != 1:
            raise modeldata.NotRebuildable("an architecture record of another format")
        name = arch.get("model")
        if not isinstance(name, str) or not self._may_build(name):
            raise modeldata.NotRebuildable(f"model {name!r} is neither registered nor named by "
                                           "this suite")
        with torch.random.fork_rng(devices=[]):
            base = self._fresh(name, bool(arch.get("options")))
        model = modeldata.apply_changes(base, arch.get("changes"))
        return modeldata.load_state(model, weights).eval()

    def _finish(self, module: torch.nn.Module, folder: Path,
                artifacts: dict[str, TargetArtifact], info: dict[str, Any]) -> Prepared:
        """Export to ONNX (unless the method made every target's artifact itself; written
        atomically) and measure the torch-side metrics."""
        shape = tuple(self.dataset.input_shape)
        self.ev.stage(f"export {folder.name}")
        onnx = None
        faults.checkpoint("export")
        if not artifacts:
            onnx = cache.write_with(folder / ONNX, lambda tmp: to_onnx(module, shape, tmp))
        metrics = model_metrics(module, shape)
        metrics["size_bytes"], metrics["size_compressed_bytes"] = file_sizes(onnx)
        metrics["info"] = info
        return Prepared(module, onnx, metrics, dict(artifacts))

    # ---- per target: accuracy on the runtime, then timing -----------------------------------

    def _artifact(self, prepared: Prepared, target: str) -> tuple[Artifact, dict[str, Any]]:
        """What `target` loads, and the row fields that depend on it (size, toolchain)."""
        shape = tuple(self.dataset.input_shape)
        with torch.inference_mode():
            out_shape = tuple(prepared.module(torch.zeros((1, *shape))).shape[1:])
        info = dict(prepared.metrics.get("info") or {})
        if not prepared.artifacts:
            return Artifact(prepared.onnx_path, prepared.module, shape, out_shape, "fp32"), {}
        if target not in prepared.artifacts:
            why = (info.get("skipped_toolchains") or {}).get(target)
            raise ValueError(f"this method made no artifact for {target} "
                             f"(it has: {', '.join(sorted(prepared.artifacts))})"
                             + (f": {why}" if why else ""))
        ta = prepared.artifacts[target]
        info["toolchain"] = ta.toolchain
        size, packed = artifact_sizes(ta)
        fields = {"info": info, "size_bytes": size, "size_compressed_bytes": packed}
        return Artifact(ta.path, ta.module, shape, out_shape, ta.precision), fields

    def _reference(self, model: str, target: str, baseline: Prepared, batch: int,
                   settings: dict[str, Any]) -> Any:
        key = (model, target, batch)
        if key not in self._refs:
            self._refs[key] = self._open_reference(target, baseline, batch, settings)
        return self._refs[key]

    def _open_reference(self, target: str, baseline: Prepared, batch: int,
                        settings: dict[str, Any]) -> Any:
        """A new session of the baseline on `target` (fp32, as every cell is timed against)."""
        art, _ = self._artifact(baseline, target)
        return TARGETS.get(target)().prepare(art, batch, self.threads, "fp32", **settings)

    def _settings(self, target: Any) -> dict[str, Any]:
        """The runtime settings a target takes beyond threads (e.g. ORT's spinning)."""
        knobs = getattr(target, "settings", ())
        return {"spinning": self.profile.timing.spinning} if "spinning" in knobs else {}

    def _measure(self, spec: Any, target_name: str, prepared: Prepared, baseline: Prepared,
                 test_ds: Any, aa: bool = False
                 ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
        """Accuracy on the runtime, then per batch size the interleaved timing against the
        baseline: (row fields, measurements, raw samples). A noisy window is re-measured up to
        `quality.RETRIES` times; the best attempt is kept with its verdict."""
        target = TARGETS.get(target_name)()
        art, row = self._artifact(prepared, target_name)
        settings = self._settings(target)
        row["runtime_settings"] = {"threads": self.threads, **settings}
        timing = self.profile.timing
        x_all, y_all = eval_arrays(test_ds, self.profile.eval_samples)
        big = max(timing.batch_sizes)
        self.ev.stage(f"{spec.name} on {target_name}: accuracy")

        def open_candidate(b: int) -> Any:
            return target.prepare(art, b, self.threads, art.precision, **settings)

        sess = open_candidate(big)
        _note_prepare(row, sess, big)
        first = {big: first_call_ns(sess, _timing_input(x_all, big))}
        row["precision"] = sess.precision
        row["metric"] = self.scorer.metric
        if getattr(target, "scores_accuracy", True):
            outputs = run_batched(sess, x_all, big)
            row["top1_target"], extras = self.scorer.score(outputs, y_all)
            if getattr(self.scorer, "correct", None) is not None:  # per item: the intervals
                row["items_correct"] = accuracy_ci.pack(self.scorer.correct(outputs, y_all))
            row["postprocess_ms"] = self.scorer.postprocess_ms(outputs)
            if extras:
                row["info"] = {**row.get("info", prepared.metrics.get("info") or {}), **extras}
        meas, samples = [], []
        for b in timing.batch_sizes:
            self.ev.stage(f"{spec.name} on {target_name}: timing b={b}")
            x = _timing_input(x_all, b)
            if b == big:
                cand = sess
            else:
                cand = open_candidate(b)
                _note_prepare(row, cand, b)
                first[b] = first_call_ns(cand, x)
            ref = self._reference(spec.name, target_name, baseline, b, settings)
            # a runtime whose sessions own their threads is timed on fresh sessions per round
            # where calls are short (timing.REOPEN_BELOW_MS); torch's threads are the process's
            reopen = None if not session_threads(target) else (
                lambda b=b: (open_candidate(b),
                             self._open_reference(target_name, baseline, b, settings)))
            verdict, sp, ct, rt, window, attempts = quality.measure_until_clean(
                cand, ref, x, timing.config(), self.estimator, aa=aa, reopen=reopen,
                log=lambda why, b=b: self.ev.log(f"{spec.name} on {target_name} b={b}: noisy "
                                                 f"({why}), re-measuring"))
            meas.append({"batch_size": b, **ct.summary(),
                         "ref_latency_p50_ms": sig3(rt.p50_ms),
                         "ref_throughput_ips": sig3(rt.throughput_ips),
                         "speedup": sig3(sp.value), "speedup_ci_low": sig3(sp.ci_low),
                         "speedup_ci_high": sig3(sp.ci_high), "quality": verdict.quality,
                         "quality_reason": verdict.reason, "scored": verdict.scored,
                         "unscored_reason": verdict.unscored_reason,
                         "first_call_ms": sig3(first[b] / 1e6) if b in first else None,
                         "window": {**window.as_dict(), "attempts": attempts,
                                    "rounds": len(ct.rounds),
                                    **({"sessions": ct.sessions} if ct.sessions > 1 else {}),
                                    **({"rewarm": timing.rewarm} if timing.rewarm else {}),
                                    "cv_candidate": round(stats.cv(ct.samples_ns), 4),
                                    "cv_reference": round(stats.cv(rt.samples_ns), 4)},
                         "attempts": attempts})
            for side, t in (("candidate", ct), ("reference", rt)):
                samples.append({"batch_size": b, "side": side, "rounds": t.rounds,
                                "samples_ns": t.samples_ns})
        return row, meas, samples


def _note_prepare(row: dict[str, Any], sess: Any, batch: int) -> None:
    """What preparing a session cost, when its target says (`sess.runtime_info`, e.g.
    torch-inductor's compile seconds): kept per batch size in the row's runtime_settings, apart
    from first_call_ms and the timed samples."""
    for key, value in (getattr(sess, "runtime_info", None) or {}).items():
        row["runtime_settings"].setdefault(key, {})[str(batch)] = value


# the files of a compressed-model cache entry (see harness/cache.py and harness/modeldata.py)
CACHE_LAYOUT = 1  # bump when what an entry holds changes: older entries are then rebuilt
WEIGHTS = "model.safetensors"
ARCH = "arch.json"
ONNX = "model.onnx"


def _save_artifact(folder: Path, target: str, a: TargetArtifact, fp32: torch.nn.Module,
                   shape: tuple[int, ...], files: dict[str, bytes]) -> dict[str, Any]:
    """Describe a method's artifact for the cache entry. Files stay where the method wrote
    them (inside the entry's folder; the entry hashes them). A module (torch.ao INT8) is
    stored as its tensors and rebuilt as torch.ao converts `fp32`; one that does not rebuild
    identically is not cached (modeldata.NotRebuildable)."""
    module = None
    if a.module is not None:
        module = f"{slug(target)}.int8.safetensors"
        files[module] = modeldata.state_bytes(a.module)
        rebuilt = modeldata.load_state(modeldata.int8_template(fp32, shape), files[module])
        why = modeldata.differences(a.module, rebuilt, shape)
        if why:
            raise modeldata.NotRebuildable(f"the {target} module does not rebuild: {why}")
    path = Path(a.path).resolve().relative_to(folder.resolve()).as_posix() if a.path else None
    return {"path": path, "module": module, "rebuild": "torch.ao-fx-x86" if module else None,
            "toolchain": a.toolchain, "precision": a.precision}


def _load_artifact(entry: cache.Entry, meta: dict[str, Any], fp32: torch.nn.Module,
                   shape: tuple[int, ...]) -> TargetArtifact:
    """A cached artifact: its file (listed and verified by the entry; an OpenVINO IR's .bin
    too) or its module, rebuilt from the entry's tensors."""
    path = entry.path(meta["path"]) if meta["path"] else None
    if path is not None and path.suffix == ".xml":
        entry.path(Path(meta["path"]).with_suffix(".bin").as_posix())
    module = None
    if meta["module"]:
        if meta.get("rebuild") != "torch.ao-fx-x86":
            raise cache.CacheError(f"unknown artifact rebuild {meta.get('rebuild')!r}")
        module = modeldata.load_state(modeldata.int8_template(fp32, shape),
                                      entry.read_bytes(meta["module"]))
    return TargetArtifact(path=path, module=module, toolchain=str(meta["toolchain"]),
                          precision=str(meta["precision"]))


def artifact_sizes(a: TargetArtifact) -> tuple[int | None, int | None]:
    """Bytes on disk (an OpenVINO IR counts its .xml and .bin) and zlib-compressed bytes."""
    if a.path is not None:
        files = [Path(a.path)]
        if files[0].suffix == ".xml":
            files.append(files[0].with_suffix(".bin"))
        sizes = [file_sizes(f) for f in files]
        return sum(s[0] or 0 for s in sizes), sum(s[1] or 0 for s in sizes)
    if a.module is not None:
        import io

        buf = io.BytesIO()
        torch.save(a.module, buf)
        return byte_sizes(buf.getvalue())
    return None, None


def run_batched(session: Any, x: np.ndarray, batch: int) -> np.ndarray:
    """First outputs of `session` over `x` in fixed-size batches (the last one zero-padded)."""
    outs = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        outs.append(np.asarray(session.run(np.ascontiguousarray(chunk))[0])[:n])
    return np.concatenate(outs)


def _timing_input(x_all: np.ndarray, batch: int) -> np.ndarray:
    reps = -(-batch // len(x_all))
    x = np.concatenate([x_all] * reps)[:batch] if reps > 1 else x_all[:batch]
    return np.ascontiguousarray(x, dtype=np.float32)


def _label(cell: dict[str, Any]) -> str:
    return MethodRun(cell["method"], dict(cell.get("method_config") or {})).label


def _error(exc: BaseException) -> str:
    """`Type: message (at file:line)`, colour codes removed, whitespace collapsed, capped."""
    import re

    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
    if len(text) > 600:
        text = text[:300] + " ... " + text[-250:]
    return f"{type(exc).__name__}: {text}{where}"
