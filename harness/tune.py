"""`harness tune`: a measured multi-objective search over the suite's `search` spaces.

Optuna's ask-and-tell loop drives the harness's own sweep: each trial asks Optuna for a point,
turns it into an ordinary method run (`harness.search`), and runs it through the same plan and
executor as `harness run` (compress, fine-tune, export, score on each runtime, time interleaved
with the baseline), so every trial is a stored cell with the usual key: a repeated point, or a
config the grid already ran, is read from the store, never re-measured. The objectives are, per
target, the accuracy on that runtime and the speedup at the study's batch size (optionally the
exported size), so one study holds the trade-offs of every target and the fronts can be
compared trial by trial (`harness.fronts`). The accuracy is read on the even-numbered
evaluation items only (`fronts.search_accuracy`): the odd-numbered ones stay held out from
every choice, and the fronts report a chosen trial's accuracy there.

Resumable after kill -9: the study lives in an Optuna journal file beside the store (an
append-only log, Optuna's file storage for exactly this), and a trial left RUNNING by a killed
process is settled on restart: told from the store when its cells were all stored (not redone),
otherwise failed and its point queued again (its compressed model is a cache hit). A trial whose
cells fail is told FAIL and recorded; the study goes on. One tuner per journal at a time (a
lock file; the kernel drops it when the process dies).

Optuna is imported only here, only when tuning (`pip install compressmark[tune]`).
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import faults
from harness.errors import UsageError
from harness.fronts import search_accuracy
from harness.search import Space
from harness.store import Store
from harness.suite import MethodRun

SAMPLERS = ("tpe", "nsga2", "random")
INTERRUPTED = "interrupted"  # study user attr: numbers of trials failed by a kill, re-queued


@dataclass(frozen=True)
class TuneOptions:
    model: str
    trials: int  # the study stops when it holds this many finished trials
    batch: int = 1  # the speedup objective's batch size
    sampler: str = "tpe"
    size: bool = False  # also minimise the exported size
    spaces: tuple[Space, ...] = ()


@dataclass
class TrialResult:
    number: int
    run: MethodRun | None  # None: the trial failed before its point was known
    state: str  # COMPLETE | FAIL
    values: list[float] | None = None
    error: str | None = None
    reused: bool = False  # every cell was already stored (a repeated point): nothing measured
    # target -> why its speedup at the objective's batch is noisy: the value was still told to
    # the sampler (it is what was measured), but fronts and recommend leave such points off
    noisy: dict[str, str] = field(default_factory=dict)


@dataclass
class TuneEvents:
    trial: Callable[[TrialResult], None] = lambda r: None
    log: Callable[[str], None] = lambda text: None


def journal_path(store: Path) -> Path:
    """The study's file, beside the store: results.db -> results.tune.journal."""
    return store.with_name(store.stem + ".tune.journal")


def objectives(targets: list[str], batch: int, size: bool) -> list[tuple[str, str]]:
    """(name, direction) of each objective, in the order Optuna is told them."""
    out = []
    for t in targets:
        out += [(f"{t} accuracy %", "maximize"), (f"{t} speedup b={batch}", "maximize")]
    if size:
        out.append(("size MB", "minimize"))
    return out


def study_name(runner: Any, opts: TuneOptions) -> str:
    """A study per (suite, profile, model, targets, batch, objectives, spaces): changing any
    of them starts another study in the same journal rather than mixing incomparable trials."""
    from harness.runner import digest

    spaces = [(s.method, [vars(d) for d in s.dims], s.fixed) for s in opts.spaces]
    key = digest({"spaces": spaces, "targets": runner.targets, "batch": opts.batch,
                  "size": opts.size, "profile": runner.o.profile, "model": opts.model})
    return f"{runner.o.suite.name}/{runner.o.profile}/{opts.model}/{key[:10]}"


def _require_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UsageError("harness tune needs Optuna: pip install 'compressmark[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _sampler(optuna: Any, name: str, seed: int, trials: int) -> Any:
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(20, trials)))
    # multi-objective TPE: random for the first third (at least 4, at most 10), then modelled
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(4, min(10, trials // 3)))


class Tuner:
    def __init__(self, runner: Any, opts: TuneOptions, events: TuneEvents | None = None) -> None:
        if opts.sampler not in SAMPLERS:
            raise UsageError(f"unknown sampler '{opts.sampler}' (choose from: "
                             f"{', '.join(SAMPLERS)})")
        if opts.trials < 1:
            raise UsageError(f"--trials must be >= 1, not {opts.trials}")
        if not opts.spaces:
            raise UsageError(f"suite {runner.o.suite.name} declares no search space for "
                             f"{opts.model}: add search = {{ ratio = [0.1, 0.8] }} to a "
                             "[[methods]] entry")
        batches = runner.profile.timing.batch_sizes
        if opts.batch not in batches:
            raise UsageError(f"--batch {opts.batch} is not timed by profile "
                             f"{runner.o.profile} (choose from: "
                             f"{', '.join(map(str, batches))})")
        self.runner = runner
        self.o = opts
        self.ev = events or TuneEvents()
        self.path = journal_path(runner.o.store)
        self.name = study_name(runner, opts)
        self.directions = [d for _, d in objectives(runner.targets, opts.batch, opts.size)]

    # ---- a point <-> Optuna's parameters ------------------------------------------------------

    def _key(self, i: int, dim: str) -> str:
        return dim if len(self.o.spaces) == 1 else f"{i}.{dim}"

    def _labels(self) -> list[str]:
        return [f"{i}: {s.label}" for i, s in enumerate(self.o.spaces)]

    def suggest(self, trial: Any) -> MethodRun:
        """Ask the trial for a point of one space (which space is itself a choice when the
        suite declares several) and return its ordinary run."""
        i = 0
        if len(self.o.spaces) > 1:
            i = self._labels().index(trial.suggest_categorical("space", self._labels()))
        space = self.o.spaces[i]
        point = {}
        for d in space.dims:
            key = self._key(i, d.name)
            if d.choices is not None:
                point[d.name] = trial.suggest_categorical(key, list(d.choices))
            elif d.integer:
                point[d.name] = trial.suggest_int(key, int(d.low), int(d.high),  # type: ignore[arg-type]
                                                  step=int(d.step or 1), log=d.log)
            else:
                v = trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)
                point[d.name] = _round(v, d.low, d.high)
        return space.run(point)

    def _from_params(self, params: dict[str, Any]) -> MethodRun | None:
        """The run a stored trial's parameters describe; None where it died before all of
        them were suggested."""
        i = 0
        if len(self.o.spaces) > 1:
            if params.get("space") not in self._labels():
                return None
            i = self._labels().index(params["space"])
        space = self.o.spaces[i]
        point = {}
        for d in space.dims:
            key = self._key(i, d.name)
            if key not in params:
                return None
            v = params[key]
            point[d.name] = _round(v, d.low, d.high) if isinstance(v, float) else v
        return space.run(point)

    # ---- a trial's numbers come from its stored cells ----------------------------------------

    def cell_keys(self, run: MethodRun) -> dict[str, str]:
        return {t: self.runner.cell_key(self.o.model, run, t) for t in self.runner.targets}

    def values(self, store: Store, run: MethodRun
               ) -> tuple[list[float] | None, str | None, dict[str, str]]:
        """The objective values of a run from its current stored cells, or (None, why); and,
        per target, the quality reason of a speedup row among them that is not clean (its value
        is still what the sampler is told, but fronts and recommend leave such points off)."""
        vals: list[float] = []
        noisy: dict[str, str] = {}
        size: float | None = None
        for target, key in self.cell_keys(run).items():
            rows = store.cell(key)
            if not rows:
                return None, f"no stored cell on {target}", noisy
            if rows[0]["status"] != "ok":
                first = (rows[0].get("error") or "failed").splitlines() or ["failed"]
                return None, f"{target}: {first[0]}", noisy
            row = next((r for r in rows if r.get("batch_size") == self.o.batch), None)
            if row is None or row.get("speedup") is None:
                return None, f"{target}: no speedup at batch {self.o.batch}", noisy
            acc = search_accuracy(row)
            if acc is None:
                return None, f"{target}: no accuracy", noisy
            vals += [100.0 * float(acc), float(row["speedup"])]
            if row.get("quality") not in (None, "clean"):
                noisy[target] = row.get("quality_reason") or str(row.get("quality"))
            if row.get("size_bytes") is not None:
                size = row["size_bytes"] / 1e6 if size is None else max(size, row["size_bytes"] / 1e6)
        if self.o.size:
            if size is None:
                return None, "no exported size", noisy
            vals.append(size)
        return vals, None, noisy

    # ---- the loop --------------------------------------------------------------------------

    def run(self, executor: Any = None) -> list[TrialResult]:
        """Run trials until the study holds `trials` finished ones; the trials run now."""
        optuna = _require_optuna()
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
        from optuna.trial import TrialState

        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = _lock(self.path)
        try:
            storage = JournalStorage(JournalFileBackend(str(self.path)))
            study = optuna.create_study(study_name=self.name, storage=storage,
                                        directions=self.directions, load_if_exists=True)
            seed = self.runner.o.suite.seed + len(study.trials)  # a resumed study draws anew
            study.sampler = _sampler(optuna, self.o.sampler, seed, self.o.trials)
            study.set_user_attr("objectives", [n for n, _ in objectives(
                self.runner.targets, self.o.batch, self.o.size)])
            done: list[TrialResult] = []
            store = Store(self.runner.o.store)
            try:
                with self.runner.session(executor) as sweep:
                    # after the executor started: on Ray, cell keys name the timing nodes
                    self._settle(study, store, TrialState)
                    while self._finished(study, TrialState) < self.o.trials:
                        done.append(self._trial(study, store, sweep))
                        self.ev.trial(done[-1])
                self._record_all(study, store, TrialState)
            finally:
                store.close()
            return done
        finally:
            os.close(lock)

    def _finished(self, study: Any, TrialState: Any) -> int:
        interrupted = set(study.user_attrs.get(INTERRUPTED, []))
        return sum(1 for t in study.get_trials(deepcopy=False)
                   if t.state == TrialState.COMPLETE
                   or (t.state == TrialState.FAIL and t.number not in interrupted))

    def _trial(self, study: Any, store: Store, sweep: Callable[..., None]) -> TrialResult:
        trial = study.ask()
        run: MethodRun | None = None
        try:
            run = self.suggest(trial)
            reused = all(store.finished(k) for k in self.cell_keys(run).values())
            sweep([run])
            values, why, noisy = self.values(store, run)
        except Exception as exc:  # the study goes on; the trial says why
            study.tell(trial, state=_fail())
            result = TrialResult(trial.number, run, "FAIL", error=f"{type(exc).__name__}: {exc}")
            self._record(study, store, trial.number, result)
            return result
        faults.checkpoint("tune-tell")  # fault tests: killed with the cells stored, untold
        if values is None:
            study.tell(trial, state=_fail())
            result = TrialResult(trial.number, run, "FAIL", error=why)
        else:
            study.tell(trial, values)
            result = TrialResult(trial.number, run, "COMPLETE", values, reused=reused,
                                 noisy=noisy)
        self._record(study, store, trial.number, result)
        return result

    def _settle(self, study: Any, store: Store, TrialState: Any) -> None:
        """Trials a killed tuner left RUNNING: told from the store when their cells were all
        stored; otherwise failed (marked interrupted, so they do not count) and queued again."""
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            run = self._from_params(t.params)
            values = self.values(store, run)[0] if run is not None else None
            if values is not None:
                study.tell(t.number, values)
                self.ev.log(f"trial {t.number}: killed after its cells were stored; "
                            "told from the store, not re-run")
                continue
            study.set_user_attr(INTERRUPTED, sorted({*study.user_attrs.get(INTERRUPTED, []),
                                                     t.number}))
            study.tell(t.number, state=_fail())
            if run is not None:
                study.enqueue_trial(dict(t.params))
                self.ev.log(f"trial {t.number}: killed before its cells were stored; queued "
                            "again (its compressed model is cached)")
        self._record_all(study, store, TrialState)

    def _record_all(self, study: Any, store: Store, TrialState: Any) -> None:
        """Finished trials the trials table lacks or shows in another state (a kill between
        tell and record; a trial since marked interrupted) are written again."""
        have = {t["trial"]: t["state"] for t in store.trials() if t["study"] == self.name}
        interrupted = set(study.user_attrs.get(INTERRUPTED, []))
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            state = "COMPLETE" if t.state == TrialState.COMPLETE else "FAIL"
            if have.get(t.number) == ("INTERRUPTED" if t.number in interrupted else state):
                continue
            self._record(study, store, t.number, TrialResult(
                t.number, self._from_params(t.params), state,
                list(t.values) if t.values else None))

    def _record(self, study: Any, store: Store, number: int, r: TrialResult) -> None:
        interrupted = number in study.user_attrs.get(INTERRUPTED, [])
        store.put_trial({
            "study": self.name, "trial": number, "suite": self.runner.o.suite.name,
            "model": self.o.model, "method": r.run.method if r.run else None,
            "method_config": r.run.config if r.run else None,
            "params": study.get_trials(deepcopy=False)[number].params,
            "targets": self.runner.targets, "batch_size": self.o.batch,
            "state": "INTERRUPTED" if interrupted else r.state,
            "objective_values": r.values, "error": r.error,
            "cell_keys": self.cell_keys(r.run) if r.run else {},
        })


def _round(v: float, low: float | None = None, high: float | None = None) -> float:
    """4 significant digits: a ratio of 0.4841694527 and one of 0.4842 are the same network
    to within a filter, and a readable, repeatable key lets a repeated point hit the store
    (a `step` in the search table makes the grid explicit). Kept inside the searched range: a
    draw of 0.99996 from [0.1, 0.99999] rounds to 1.0, which the range forbids (a ratio of 1.0
    prunes every filter)."""
    r = float(f"{v:.4g}")
    if low is not None and r < low:
        return float(low)
    if high is not None and r > high:
        return float(high)
    return r


def _fail() -> Any:
    from optuna.trial import TrialState

    return TrialState.FAIL


def _lock(journal: Path) -> int:
    """An exclusive lock on `<journal>.tuner.lock` (Optuna's own is `<journal>.lock`), or one line saying another tuner holds it."""
    fd = os.open(f"{journal}.tuner.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"another `harness tune` is running on {journal}; wait for it or "
                         "pass another --store") from None
    return fd
