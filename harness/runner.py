"""The sweep: baseline -> method -> fine-tune -> export -> per target: accuracy, timing -> store.

A cell is (suite, model, method + config, target). Its key hashes everything that changes its
result; a finished key is skipped on re-run unless `force`. Trained baselines and compressed
models are cached on disk under the same kind of key, so a resumed sweep does not retrain.
A cell that raises is stored as failed with its error, and the sweep goes on.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import json
import shutil
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness import __version__, sysinfo
from harness.api import Artifact, Compressed, Context, TargetArtifact, build_model
from harness.errors import UsageError
from harness.export import to_onnx
from harness.metrics import byte_sizes, file_sizes, model_metrics
from harness.registry import DATASETS, METHODS, MODELS, TARGETS
from harness.store import Store
from harness.suite import MethodRun, Profile, Suite
from harness.timing import measure_pair, sig3
from harness.scoring import ClassifyScorer, DetectScorer
from harness.train import Recipe, eval_arrays, fit, predict_logits

TRAIN_CODE_VERSION = "1"  # bump when harness/train.py changes what a recipe produces


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


def _file_digest(path: str) -> str:
    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"model_options checkpoint '{path}' is not a file")
    st = p.stat()
    return _hash_file(str(p.resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _hash_file(path: str, size: int, mtime_ns: int) -> str:
    """sha256 of a file, hashed once per (path, size, mtime): every cell key asks for it."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Runner:
    def __init__(self, opts: RunOptions, events: Events | None = None) -> None:
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
        for m in opts.suite.models:
            if MODELS.get(m).task != self.task:
                raise UsageError(f"model '{m}' is a {MODELS.get(m).task} model but dataset "
                                 f"'{opts.suite.dataset}' is for {self.task}")
        if self.task == "detect" and (self.profile.train.augment or self.profile.finetune.augment):
            raise UsageError("augment = true flips and crops images but not boxes: it is for "
                             "classifiers only (set it false in the suite's detection profiles)")
        self.scorer: Any = ClassifyScorer()  # a detector's scorer comes with its baseline
        self.loss = DetectScorer.loss if self.task == "detect" else ClassifyScorer.loss
        if opts.device == "cuda" and not torch.cuda.is_available():
            raise UsageError("--device cuda: no CUDA device is available here (choose: cpu)")
        self.machine = sysinfo.machine()
        self.versions = sysinfo.versions()
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self._refs: dict[tuple[str, str, int], Any] = {}
        self._data: tuple[Any, Any] | None = None

    def load_data(self) -> tuple[Any, Any]:
        """(train, test) datasets; a missing dataset is a UsageError saying how to get it."""
        if self._data is None:
            self._data = (self.dataset.train(), self.dataset.test())
        return self._data

    # ---- planning ---------------------------------------------------------------------------

    def method_runs(self, model: str) -> list[MethodRun]:
        runs = [MethodRun("baseline")] + [r for r in self.o.suite.runs if r.applies_to(model)]
        if self.o.methods:
            runs = [r for r in runs if r.method == "baseline" or r.method in self.o.methods]
        return runs

    def total_cells(self) -> int:
        return sum(len(self.method_runs(m)) for m in self.o.suite.models) * len(self.targets)

    def _data_key(self) -> dict[str, Any]:
        return {"dataset": self.o.suite.dataset, "options": self.o.suite.dataset_options}

    def baseline_key(self, model: str) -> str:
        key = {"model": model, "data": self._data_key(), "recipe": self.profile.train,
               "seed": self.o.suite.seed, "train_code": TRAIN_CODE_VERSION,
               "device": self.o.device}
        options = self.o.suite.model_options.get(model)
        if options:  # a checkpoint counts by its content, not its path
            key["options"] = {k: _file_digest(v) if k == "checkpoint" else v
                              for k, v in options.items()}
        return digest(key)

    def compressed_key(self, model: str, run: MethodRun) -> str:
        method = METHODS.get(run.method)
        return digest({"baseline": self.baseline_key(model), "method": run.method,
                       "config": run.config, "version": method.version,
                       "finetune": self.profile.finetune, "harness": __version__,
                       "eval_samples": self.profile.eval_samples})  # the cached accuracies

    def cell_key(self, model: str, run: MethodRun, target: str) -> str:
        t = TARGETS.get(target)()
        return digest({"suite": self.o.suite.name, "compressed": self.compressed_key(model, run),
                       "target": target, "versions": t.versions(),
                       "timing": self.profile.timing, "threads": self.threads,
                       "eval_samples": self.profile.eval_samples, "cpu": self.machine["cpu"],
                       "harness": __version__})

    # ---- the sweep --------------------------------------------------------------------------

    def run(self) -> str:
        suite = self.o.suite
        train_ds, test_ds = self.load_data()
        store = Store(self.o.store)
        settings = {"profile": dataclasses.asdict(self.profile), "threads": self.threads,
                    "targets": self.targets, "skipped_targets": self.skipped,
                    "device": self.o.device}
        store.start_run(self.run_id, suite=suite.name, profile=self.o.profile,
                        harness_version=__version__, git_commit=sysinfo.git_commit(),
                        command=self.o.command, machine=self.machine, versions=self.versions,
                        settings=settings)
        try:
            for model_name in suite.models:
                self._model(store, model_name, train_ds, test_ds)
        finally:
            store.finish_run(self.run_id)
            store.close()
        return self.run_id

    def _model(self, store: Store, model_name: str, train_ds: Any, test_ds: Any) -> None:
        spec = MODELS.get(model_name)
        baseline: Prepared | None = None
        base_top1: float | None = None
        for run in self.method_runs(model_name):
            keys = {t: self.cell_key(model_name, run, t) for t in self.targets}
            todo = [t for t in self.targets if self.o.force or not store.finished(keys[t])]
            for t in self.targets:
                if t not in todo:
                    self.ev.cell(f"{model_name} {run.label} {t} (stored, skipped)")
            if not todo:
                continue
            started = time.perf_counter()
            try:
                if baseline is None:
                    self.ev.stage(f"{model_name}: baseline")
                    baseline, base_top1 = self._baseline(spec, train_ds, test_ds)
                prepared, accs = self._compress(spec, run, baseline, base_top1, train_ds, test_ds)
            except Exception as exc:  # the sweep goes on; the cells remember why
                err = _error(exc)
                for t in todo:
                    store.put_cell(self._cell_row(model_name, run, t, keys[t], status="failed",
                                                  error=err, started=started), [])
                    self.ev.cell(f"{model_name} {run.label} {t} FAILED: {err.splitlines()[0]}")
                continue
            for t in todo:
                started = time.perf_counter()
                try:
                    row, meas = self._measure(spec, t, prepared, baseline, test_ds)
                    cell = self._cell_row(model_name, run, t, keys[t], status="ok", error=None,
                                          started=started, prepared=prepared, baseline=baseline,
                                          accs=accs, **row)
                except Exception as exc:
                    cell = self._cell_row(model_name, run, t, keys[t], status="failed",
                                          error=_error(exc), started=started, prepared=prepared,
                                          baseline=baseline, accs=accs)
                    meas = []
                store.put_cell(cell, meas)
                status = "ok" if cell["status"] == "ok" else "FAILED: " + cell["error"].splitlines()[0]
                self.ev.cell(f"{model_name} {run.label} {t} {status}")

    def _cell_row(self, model: str, run: MethodRun, target: str, key: str, *, status: str,
                  error: str | None, started: float, prepared: Prepared | None = None,
                  baseline: Prepared | None = None, accs: dict[str, Any] | None = None,
                  **extra: Any) -> dict[str, Any]:
        row: dict[str, Any] = {
            "cell_key": key, "run_id": self.run_id, "suite": self.o.suite.name, "model": model,
            "method": run.method, "method_config": run.config, "target": target,
            "status": status, "error": error, "eval_samples": self.profile.eval_samples,
            "target_versions": TARGETS.get(target)().versions(),
        }
        if prepared is not None:
            m = prepared.metrics
            row.update({k: m[k] for k in ("params_total", "params_nonzero", "flops",
                                          "flops_effective", "size_bytes",
                                          "size_compressed_bytes", "layers")})
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

    def _trainer(self, recipe: Recipe) -> Callable[..., Any]:
        """ctx.finetune / ctx.train: `fit` with one of the suite's recipes, epochs overridable."""
        def train(model: torch.nn.Module, epochs: float | None = None,
                  masks: dict[str, torch.Tensor] | None = None, loss: Any = None,
                  extra_params: list[Any] | None = None,
                  constraint: Callable[[torch.nn.Module], None] | None = None) -> torch.nn.Module:
            r = dataclasses.replace(recipe, epochs=epochs) if epochs is not None else recipe
            return fit(model, self.dataset.train(), r, masks=masks, constraint=constraint,
                       loss_fn=loss or self.loss, device=self.o.device,
                       seed=self.o.suite.seed, progress=self.ev.train,
                       extra_params=extra_params)
        return train

    def _evaluate(self, model: torch.nn.Module, test_ds: Any) -> float:
        """The task's score (top-1, or mAP@0.5) of a torch model on the evaluation items."""
        out, labels = predict_logits(model, test_ds, self.profile.eval_samples,
                                     device=self.o.device)
        return self.scorer.score(out.numpy(), labels.numpy())[0]

    def _baseline(self, spec: Any, train_ds: Any, test_ds: Any) -> tuple[Prepared, float]:
        folder = self.o.cache_dir / "baselines" / f"{spec.name}-{self.baseline_key(spec.name)}"
        ckpt = folder / "model.pt"
        model = build_model(spec, self.dataset.num_classes, tuple(self.dataset.input_shape),
                            self.o.suite.model_options.get(spec.name))
        if ckpt.exists():
            model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
            self.ev.log(f"{spec.name}: cached baseline {ckpt}")
        else:
            self.ev.stage(f"{spec.name}: training baseline")
            fit(model, train_ds, self.profile.train, device=self.o.device, loss_fn=self.loss,
                seed=self.o.suite.seed, progress=self.ev.train)
            folder.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save(model.cpu().state_dict(), tmp)
            tmp.replace(ckpt)
        model = model.cpu().eval()
        if self.task == "detect":
            self.scorer = DetectScorer(model, self.dataset.num_classes)
        acc = self._evaluate(model, test_ds)
        prepared = self._finish(model.cpu(), folder, {}, {})
        return prepared, acc

    def _compress(self, spec: Any, run: MethodRun, baseline: Prepared, base_top1: float | None,
                  train_ds: Any, test_ds: Any) -> tuple[Prepared, dict[str, Any]]:
        method_cls = METHODS.get(run.method)
        key = self.compressed_key(spec.name, run)
        folder = self.o.cache_dir / "compressed" / f"{spec.name}-{run.method}-{key}"
        meta_path = folder / "meta.json"
        if meta_path.exists() and not self.o.force:
            meta = json.loads(meta_path.read_text())
            module = torch.load(folder / "model.pt", map_location="cpu", weights_only=False)
            onnx = folder / "model.onnx"
            arts = {t: _load_artifact(folder, a) for t, a in meta["artifacts"].items()}
            return Prepared(module.eval(), onnx if onnx.exists() else None, meta["metrics"],
                            arts), meta["accs"]
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)

        self.ev.stage(f"{spec.name} {run.label}: compress")
        model = copy.deepcopy(baseline.module)
        finetune = self._trainer(self.profile.finetune)
        ctx = Context(train_data=train_ds, test_data=test_ds,
                      num_classes=self.dataset.num_classes,
                      input_shape=tuple(self.dataset.input_shape), device=self.o.device,
                      teacher=copy.deepcopy(baseline.module), finetune=finetune,
                      train=self._trainer(self.profile.train),
                      train_epochs=self.profile.train.epochs,
                      evaluate=lambda m: self._evaluate(m, test_ds), log=self.ev.log,
                      seed=self.o.suite.seed, workdir=folder,
                      calibration=self.dataset.calibration)
        method = method_cls()
        comp: Compressed = method.apply(model, method_cls.Config(**run.config), ctx)
        module = comp.model
        accs: dict[str, Any] = {"top1_baseline": base_top1}
        module = module.cpu().eval()
        scored = comp.scored if comp.scored is not None else module
        accs["top1_pruned"] = self._evaluate(scored, test_ds)
        if comp.finetune and self.profile.finetune.epochs > 0:
            self.ev.stage(f"{spec.name} {run.label}: fine-tune")
            finetune(module, masks=comp.masks, constraint=comp.constraint)
            module = module.cpu().eval()
            scored = module
        accs["top1_retrained"] = self._evaluate(scored, test_ds)
        prepared = self._finish(module, folder, comp.artifacts, comp.info)
        torch.save(module, folder / "model.pt")
        arts = {t: _save_artifact(folder, t, a) for t, a in comp.artifacts.items()}
        meta_path.write_text(json.dumps({"metrics": prepared.metrics, "accs": accs,
                                         "artifacts": arts}, default=str))
        return prepared, accs

    def _finish(self, module: torch.nn.Module, folder: Path,
                artifacts: dict[str, TargetArtifact], info: dict[str, Any]) -> Prepared:
        """Export to ONNX (unless the method made every target's artifact itself) and measure
        the torch-side metrics."""
        shape = tuple(self.dataset.input_shape)
        self.ev.stage(f"export {folder.name}")
        onnx = None if artifacts else to_onnx(module, shape, folder / "model.onnx")
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

    def _reference(self, model: str, target: str, baseline: Prepared, batch: int) -> Any:
        key = (model, target, batch)
        if key not in self._refs:
            t = TARGETS.get(target)()
            art, _ = self._artifact(baseline, target)
            self._refs[key] = t.prepare(art, batch, self.threads, "fp32")
        return self._refs[key]

    def _measure(self, spec: Any, target_name: str, prepared: Prepared, baseline: Prepared,
                 test_ds: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        target = TARGETS.get(target_name)()
        art, row = self._artifact(prepared, target_name)
        timing = self.profile.timing
        x_all, y_all = eval_arrays(test_ds, self.profile.eval_samples)
        big = max(timing.batch_sizes)
        self.ev.stage(f"{spec.name} on {target_name}: accuracy")
        sess = target.prepare(art, big, self.threads, art.precision)
        row["precision"] = sess.precision
        row["metric"] = self.scorer.metric
        if getattr(target, "scores_accuracy", True):
            outputs = run_batched(sess, x_all, big)
            row["top1_target"], extras = self.scorer.score(outputs, y_all)
            row["postprocess_ms"] = self.scorer.postprocess_ms(outputs)
            if extras:
                row["info"] = {**row.get("info", prepared.metrics.get("info") or {}), **extras}
        meas = []
        for b in timing.batch_sizes:
            self.ev.stage(f"{spec.name} on {target_name}: timing b={b}")
            cand = sess if b == big else target.prepare(art, b, self.threads, art.precision)
            ref = self._reference(spec.name, target_name, baseline, b)
            x = _timing_input(x_all, b)
            ct, rt = measure_pair(cand, ref, x, timing.config())
            m = {"batch_size": b, **ct.summary(),
                 "ref_latency_p50_ms": sig3(rt.p50_ms),
                 "ref_throughput_ips": sig3(rt.throughput_ips)}
            if b == 1:
                m["speedup"] = sig3(rt.p50_ms / ct.p50_ms)
            else:
                m["speedup"] = sig3(ct.throughput_ips / rt.throughput_ips)
            meas.append(m)
        return row, meas


def _save_artifact(folder: Path, target: str, a: TargetArtifact) -> dict[str, Any]:
    """Cache a method's artifact beside the model; files are kept where the method wrote them."""
    module = None
    if a.module is not None:
        module = f"{target}.pt"
        torch.save(a.module, folder / module)
    path = str(Path(a.path).resolve().relative_to(folder.resolve())) if a.path else None
    return {"path": path, "module": module, "toolchain": a.toolchain, "precision": a.precision}


def _load_artifact(folder: Path, meta: dict[str, Any]) -> TargetArtifact:
    module = (torch.load(folder / meta["module"], map_location="cpu", weights_only=False)
              if meta["module"] else None)
    return TargetArtifact(path=folder / meta["path"] if meta["path"] else None, module=module,
                          toolchain=meta["toolchain"], precision=meta["precision"])


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


def _error(exc: BaseException) -> str:
    """`Type: message (at file:line)`, colour codes removed, whitespace collapsed, capped."""
    import re

    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
    if len(text) > 600:
        text = text[:300] + " ... " + text[-250:]
    return f"{type(exc).__name__}: {text}{where}"
