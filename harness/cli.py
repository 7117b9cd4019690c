"""`harness`: list, run, plan, tune, recommend, report, export, compare.

Exit codes people can script: 0 when every cell of a run is ok, 1 when any cell failed (after
the whole sweep and the report, with a summary line), 2 for bad input: an unknown name, a
malformed suite, missing data, or a store that cannot be used (one line on stderr each).
Names from suite files and stores are text, never paths: a report folder is named through
`harness.slug`. `report`, `export` and `compare` open the store read-only.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from harness.errors import UsageError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="CompressMark: which compression method makes my network fastest on my runtime, "
    "and what does it cost in accuracy?",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)

DEFAULT_STORE = Path(".harness/results.db")


class Kind(str, Enum):
    methods = "methods"
    targets = "targets"
    suites = "suites"
    models = "models"
    datasets = "datasets"


class ExportFormat(str, Enum):
    csv = "csv"
    json = "json"


def fail(message: str) -> None:
    err.print(f"error: {' '.join(message.split())}", markup=False, highlight=False,
              soft_wrap=True)
    raise typer.Exit(2)


def _writable(path: Path | None, option: str, folder: bool) -> None:
    """Refuse an output path that cannot be written, in one line, before any work: a folder
    (`folder`) or a file whose parent folder is made here if missing. None (the option left
    out, its default folder used) is not checked."""
    if path is None:
        return
    where = path if folder else path.parent
    if not folder and path.is_dir():
        fail(f"{option} {path} is a folder, not a file (name a file, e.g. {path / 'out.html'})")
    if folder and path.exists() and not path.is_dir():
        fail(f"{option} {path} is a file, not a folder (name a folder)")
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"{option} {path}: cannot make folder {where} ({exc.strerror or exc})")
    if not os.access(where, os.W_OK):
        fail(f"{option} {path}: folder {where} is not writable")


def _probe_store(store: Path) -> None:
    """A --store that a run could not write, refused before the runner, the runtimes and the
    data load (`Store.probe`; the write itself, a lock included, is tried again before any
    training)."""
    from harness.store import Store

    Store.probe(store)


@app.command("list")
def list_(
    kind: Annotated[Kind | None, typer.Argument(help="What to list (default: everything).")] = None,
) -> None:
    """List registered methods, targets, suites, models and datasets with one-line descriptions."""
    from harness.registry import DATASETS, METHODS, MODELS, TARGETS, describe
    from harness.suite import builtin_suites

    kinds = [kind] if kind else list(Kind)
    for k in kinds:
        console.print(f"[bold]{k.value}[/bold]")
        if k is Kind.suites:
            import tomllib

            for name, path in sorted(builtin_suites().items()):
                try:
                    desc = tomllib.loads(path.read_text()).get("description", "")
                except (OSError, tomllib.TOMLDecodeError) as exc:
                    desc = f"(unreadable: {exc})"
                console.print(f"  {name:<24} {desc}", markup=False, highlight=False, soft_wrap=True)
            continue
        reg = {Kind.methods: METHODS, Kind.targets: TARGETS, Kind.models: MODELS,
               Kind.datasets: DATASETS}[k]
        for name, obj in reg.items():
            line = f"  {name:<24} {describe(obj)}"
            if k is Kind.targets:
                reason = obj().available()
                if reason:
                    line += f"  [unavailable: {reason}]"
            console.print(line, markup=False, highlight=False, soft_wrap=True)


# options `run` and `tune` share: declared once
Executor = Annotated[str, typer.Option(help="local (this process) or ray (a Ray cluster; pip "
                                            "install compressmark[ray]).")]
RayAddress = Annotated[str | None, typer.Option(help="With --executor ray: auto, or HOST:PORT "
                                                     "of the head node.")]
RayArtifacts = Annotated[str, typer.Option(help="With --executor ray: how models move between "
                                                "nodes: auto, shared (one cache directory "
                                                "every node sees) or object-store.")]
Device = Annotated[str, typer.Option(help="Training device: cpu or cuda.")]
Targets = Annotated[list[str] | None, typer.Option(help="Target runtime; repeat for several "
                                                        "(default: the suite's).")]
ReportDir = Annotated[Path | None, typer.Option(help="Report folder (default: "
                                                     "reports/<suite>/).")]
CacheDir = Annotated[Path | None, typer.Option(help="Checkpoints and exported models "
                                                    "(default: beside the store).")]
DataDir = Annotated[Path | None, typer.Option(help="Where datasets live.")]
Threads = Annotated[int | None, typer.Option(help="Threads for every runtime (default: the "
                                                  "suite's).")]


def _executor(executor: str, ray_address: str | None, ray_artifacts: str, device: str) -> Any:
    """The executor the options name (None: local), after checking them and the training
    device (Ray asks for a GPU per compute step with cuda): bad ones are one line and exit 2."""
    from harness.executors.ray import ARTIFACTS  # the module imports ray only when it runs

    if device not in ("cpu", "cuda"):
        fail(f"unknown device '{device}' (choose from: cpu, cuda)")
    if executor not in ("local", "ray"):
        fail(f"unknown executor '{executor}' (choose from: local, ray)")
    if ray_address is not None and executor != "ray":
        fail("--ray-address needs --executor ray")
    if ray_artifacts not in ARTIFACTS:
        fail(f"unknown --ray-artifacts '{ray_artifacts}' (choose from: {', '.join(ARTIFACTS)})")
    if executor != "ray":
        return None
    from harness.executors.ray import RayExecutor

    return RayExecutor(ray_address, artifacts=ray_artifacts)


@app.command()
def run(
    suite: Annotated[str, typer.Option(help="Suite name (see `harness list suites`) or path "
                                            "to a suite TOML file.")],
    target: Targets = None,
    profile: Annotated[str, typer.Option(help="smoke (seconds), quick (minutes) or full "
                                              "(the papers' recipes).")] = "quick",
    store: Annotated[Path, typer.Option(help="SQLite result store.")] = DEFAULT_STORE,
    report_dir: ReportDir = None,
    device: Device = "cpu",
    threads: Threads = None,
    force: Annotated[bool, typer.Option(help="Redo cells already stored.")] = False,
    data_dir: DataDir = None,
    download: Annotated[bool, typer.Option(help="Let torchvision download missing data.")] = False,
    method: Annotated[list[str] | None, typer.Option(help="Only these methods (repeatable).")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only these models of the suite "
                                                         "(repeatable).")] = None,
    cache_dir: CacheDir = None,
    executor: Executor = "local",
    ray_address: RayAddress = None,
    ray_artifacts: RayArtifacts = "auto",
) -> None:
    """Run a suite: train/load baselines, compress, fine-tune, export, score and time, report."""
    from harness.suite import PROFILES

    if profile not in PROFILES:
        fail(f"unknown profile '{profile}' (choose from: {', '.join(PROFILES)})")
    if threads is not None and threads < 1:
        fail("--threads must be >= 1")
    _writable(report_dir, "--report-dir", folder=True)  # now, not after the sweep
    ex = _executor(executor, ray_address, ray_artifacts, device)
    s = _load_suite(suite, model)
    _probe_store(store)
    # the runner, the runtimes and the data load only now (the suite's registries loaded
    # torch): the checks above answer a typo in an option or a suite's name at once
    from harness.reports.table import print_table
    from harness.runner import RunOptions, Runner

    opts = RunOptions(
        suite=s, profile=profile, targets=list(target or s.targets), store=store,
        cache_dir=cache_dir or store.parent / "cache", data_dir=data_dir, download=download,
        device=device, threads=threads, force=force, methods=list(method or []),
        command=" ".join(["harness", *sys.argv[1:]]),
    )
    runner = Runner(opts, check_device=ex is None)  # on Ray, the cluster's nodes train
    for name, reason in runner.skipped.items():
        err.print(f"skipping target {name}: {reason}", markup=False, highlight=False)
    if not runner.targets:
        fail("no usable target: " + "; ".join(f"{k}: {v}" for k, v in runner.skipped.items()))
    runner.load_data()
    from harness.reports.html import render
    from harness.slug import slug
    from harness.store import Store

    Store(store).close()  # a store that cannot be written is one line now, not after training
    with _progress() as progress:
        runner.ev = _events(progress, runner.total_cells())
        run_id = runner.run(ex)
    st = Store(store, readonly=True)
    rows, stored = _latest_rows(st, s.name, run_id, _planned(runner))
    print_table(console, rows, stored)
    out = render(st, s.name, report_dir or Path("reports") / slug(s.name))
    this_run = st.rows(run_id=run_id)
    st.close()
    console.print(f"run {run_id}: stored in {store}, report {out}", markup=False,
                  highlight=False)
    if _summary(this_run, len(stored)):
        raise typer.Exit(1)


def _planned(runner) -> list[str]:  # type: ignore[no-untyped-def]
    """The cell keys of every cell this run covers, in sweep order (model, method, target)."""
    return [runner.cell_key(m, r, t) for m in runner.o.suite.models
            for r in runner.method_runs(m) for t in runner.targets]


def _latest_rows(st, suite: str, run_id: str, planned: list[str]  # type: ignore[no-untyped-def]
                 ) -> tuple[list[dict[str, object]], set[str]]:
    """(rows, stored keys): for every planned cell, this run's rows; for a cell this run skipped,
    the newest ok rows an earlier run stored (what the skip relied on), marked as stored."""
    want = dict.fromkeys(planned)
    groups: dict[str, dict[str, list[dict[str, object]]]] = {}
    for r in st.rows(suite=suite, latest=False):
        if r["cell_key"] in want:
            groups.setdefault(r["cell_key"], {}).setdefault(r["run_id"], []).append(r)
    rows: list[dict[str, object]] = []
    stored: set[str] = set()
    for key in want:
        runs = groups.get(key)
        if not runs:
            continue
        if run_id in runs:
            rows += runs[run_id]
            continue
        ok = [g for g in runs.values() if g[0]["status"] == "ok"]
        rows += (ok or list(runs.values()))[-1]
        stored.add(key)
    return rows, stored


def _summary(rows: list[dict[str, object]], stored: int) -> int:
    """Print "N ok, M failed" for this run's cells and each failure's first line; the number
    of failed cells."""
    status: dict[object, dict[str, object]] = {}
    for r in rows:
        status.setdefault(r["cell_key"], r)
    failed = [r for r in status.values() if r["status"] != "ok"]
    line = f"{len(status) - len(failed)} ok, {len(failed)} failed"
    if stored:
        line += f" ({stored} more stored by earlier runs, skipped)"
    console.print(line, markup=False, highlight=False)
    from harness.reports.table import method_label

    for r in failed:
        first = (str(r["error"] or "failed").splitlines() or ["failed"])[0]
        console.print(f"FAILED {r['target']} {r['model']} {method_label(r)}: {first}",
                      markup=False, highlight=False, soft_wrap=True)
    return len(failed)


@app.command()
def plan(
    suite: Annotated[str, typer.Option(help="Suite name or path to a suite TOML file.")],
    profile: Annotated[str, typer.Option(help="smoke, quick or full.")] = "quick",
    target: Annotated[list[str] | None, typer.Option(help="Target runtime; repeat for several "
                                                          "(default: the suite's).")] = None,
    store: Annotated[Path, typer.Option(help="SQLite result store (which cells are "
                                             "finished).")] = DEFAULT_STORE,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache (which steps are cached; "
                                                        "default: beside the store).")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets live.")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only these models.")] = None,
    workers: Annotated[list[int] | None, typer.Option(help="CPU worker counts to estimate "
                                                           "(default: 1 4 16 64).")] = None,
    timing_nodes: Annotated[int, typer.Option(help="Nodes that time (one measurement "
                                                   "each at a time).")] = 1,
    gpu_speedup: Annotated[float, typer.Option(help="Assumed training speedup of a GPU "
                                                    "worker over one CPU worker.")] = 20.0,
    steps: Annotated[bool, typer.Option(help="List every step.")] = False,
    probe: Annotated[bool, typer.Option(help="Run each compress step's method on an untrained "
                                             "copy, timing the training it asks for (else its "
                                             "model's step stands in).")] = True,
) -> None:
    """Print the sweep's steps (which are cached), their measured-cost estimate, and the
    makespan on N workers with the critical path."""
    from harness import plan as plans
    from harness.quality import MAX_OTHER_CPU
    from harness.suite import PROFILES
    from harness.timing import Window

    if profile not in PROFILES:
        fail(f"unknown profile '{profile}' (choose from: {', '.join(PROFILES)})")
    bad = [n for n in workers or [] if n < 1]
    if bad:
        fail(f"--workers {bad[0]}: a worker count is a whole number >= 1")
    if timing_nodes < 1:
        fail(f"--timing-nodes {timing_nodes}: at least 1 node must time (a sweep has no other)")
    if not gpu_speedup > 0 or gpu_speedup == float("inf"):
        fail(f"--gpu-speedup {gpu_speedup:g}: a training speedup is a finite number > 0 "
             "(e.g. 20: a GPU worker trains 20x as fast as one CPU worker)")
    s = _load_suite(suite, model)
    _probe_store(store)
    from harness import costs  # the runner loads only now: the checks above answer at once
    from harness.runner import RunOptions, Runner

    opts = RunOptions(suite=s, profile=profile, targets=list(target or s.targets), store=store,
                      cache_dir=cache_dir or store.parent / "cache", data_dir=data_dir)
    runner = Runner(opts)
    st = _finished_cells(store)
    p = plans.build(runner, st)
    st.close()
    names = costs.models_to_measure(s.models, p)  # the suite's and its students
    err.print(f"measuring per-step costs of {', '.join(names)} on this machine ...",
              markup=False, highlight=False)
    todo = [st for st in p.steps if costs.worth_probing(runner, st)] if probe else []
    short = sum(1 for st in p.steps if st.kind == "compress" and not st.cached) - len(todo)
    with Window() as window:
        per_model = {m: costs.measure_model(runner, m) for m in names}
        if todo:
            err.print(f"probing the training of {len(todo)} compress steps ...", markup=False,
                      highlight=False)
        if probe and short:
            err.print(f"{short} compress steps train fewer than {costs.PROBE_MIN_STEPS} "
                      "optimiser steps: not probed (the probe would cost a tenth of the step "
                      "or more), their model's step stands in", markup=False, highlight=False)
        probes, not_probed = costs.probe_all(runner, todo)
    if window.others_beyond_doubt() > MAX_OTHER_CPU:  # best of 5 cannot undo a loaded machine
        err.print(f"warning: other processes used {window.other_cpu:.1f} of {window.cores} "
                  "cores while the per-step costs were measured: they, and every estimate "
                  "below, may read several times too high; run `harness plan` on an idle "
                  "machine", markup=False, highlight=False)
    for why in not_probed:
        err.print(f"note: not probed, its model's training step stands in: {why}",
                  markup=False, highlight=False)
    secs = {st.key: costs.step_seconds(runner, st, per_model, probes=probes) for st in p.steps}
    kinds: dict[str, list[float]] = {}
    for st in p.steps:
        kinds.setdefault(st.kind, []).append(secs[st.key])
    console.print(f"{s.name} ({profile}): {len(p.steps)} steps to run, "
                  f"{len(p.skipped)} cells already stored", markup=False, highlight=False)
    first = runner.profile.timing.config().first_check  # an early stop may end pairs there
    for kind in plans.KINDS:
        v = kinds.get(kind, [])
        cached = sum(1 for st in p.steps if st.kind == kind and st.cached)
        low = ""
        if kind == "measure" and first is not None and first < runner.profile.timing.rounds:
            least = sum(costs.step_seconds(runner, st, per_model, rounds=first, probes=probes)
                        for st in p.steps if st.kind == kind)
            low = f" ({_hms(least)} if every pair stops at its first check, round {first})"
        console.print(f"  {kind:<9} {len(v):>4} steps ({cached} cached)  "
                      f"{_hms(sum(v))} estimated{low}", markup=False, highlight=False)
    for m, c in per_model.items():
        fw = ", ".join(f"b={b} {1e3 * t:.2f} ms" for b, t in c.forward_s.items())
        console.print(f"  measured {m}: train step {1e3 * c.train_step_s:.1f} ms, forward {fw},"
                      f" export {c.export_s:.1f} s", markup=False, highlight=False)
        for t in runner.targets:
            rt = c.runtime_s.get(t)
            said = (", ".join(f"b={b} {1e3 * v:.2f} ms" for b, v in rt.items()) if rt
                    else "not timed (torch's forward stands in)")
            console.print(f"    calls on {t}: {said}", markup=False, highlight=False)
    if steps:
        for st in p.steps:
            pr = probes.get(st.key)
            how = ("" if pr is None else "  trains " + (" + ".join(
                f"{n} x {1e3 * t:.0f} ms" for t, n in pr.trainings) or "nothing"))
            console.print(f"  {st.label:<60} {'cached' if st.cached else '':<7} "
                          f"{_hms(secs[st.key])}{how}", markup=False, highlight=False)
    console.print(f"local executor (one process): {_hms(sum(secs.values()))}", markup=False,
                  highlight=False)
    console.print(f"critical path: {_hms(costs.critical_path(p, secs))} on CPU, "
                  f"{_hms(costs.critical_path(p, secs, gpu_speedup))} with GPU workers",
                  markup=False, highlight=False)
    for n in workers or [1, 4, 16, 64]:
        cpu = costs.makespan(p, secs, n, timing_nodes)
        gpu = costs.makespan(p, secs, n, timing_nodes, gpu_speedup)
        console.print(f"  {n:>3} workers + {timing_nodes} timing node(s): {_hms(cpu)} CPU, "
                      f"{_hms(gpu)} GPU (assumed {gpu_speedup:g}x training)", markup=False,
                      highlight=False)


def _load_suite(name: str, models: list[str] | None) -> Any:
    """The suite, restricted to `models` when given (each must be one of its models)."""
    from harness import suite as suites

    s = suites.load(name)
    if models:
        bad = [m for m in models if m not in s.models]
        if bad:
            fail(f"model '{bad[0]}' is not in suite {s.name} (choose from: {', '.join(s.models)})")
        s = dataclasses.replace(s, models=tuple(models))
    return s


class _EmptyStore:
    def finished(self, cell_key: str) -> bool:
        return False

    def close(self) -> None:
        pass


def _finished_cells(store: Path) -> Any:
    """Where `plan` reads which cells are finished: the store opened read-only (planning
    never creates, migrates or locks it), or no cells where it has none yet (missing, or
    an empty file a run would fill)."""
    from harness.store import Store

    if not store.is_file():
        return _EmptyStore()
    try:
        return Store(store, readonly=True)
    except UsageError:
        Store.probe(store)  # one line for a store a run could not use either
        return _EmptyStore()


def _hms(seconds: float) -> str:
    seconds = int(round(seconds))
    d, rem = divmod(seconds, 86400)
    h, rem = divmod(rem, 3600)
    m, sec = divmod(rem, 60)
    return (f"{d}d " if d else "") + f"{h:02d}:{m:02d}:{sec:02d}"


def _progress():  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.progress import TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=err)


def _events(p, total: int):  # type: ignore[no-untyped-def]
    """Runner events driving two rich bars: cells done, and the training in progress."""
    from harness.runner import Events

    cells = p.add_task("cells", total=total)
    training = p.add_task("  training", total=1.0, visible=False)

    def cell(label: str) -> None:
        p.advance(cells)
        p.console.print(f"  {label}", markup=False, highlight=False)
        p.update(training, visible=False)

    def stage(text: str) -> None:
        p.update(cells, description=text[:60])

    def train(frac: float) -> None:
        p.update(training, completed=frac, visible=frac < 1.0)

    def log(text: str) -> None:  # cache heals, re-measured noisy windows: worth a line
        p.console.print(f"    {text}", markup=False, highlight=False, style="dim")

    return Events(cell=cell, stage=stage, train=train, log=log)


@app.command()
def report(
    store: Annotated[Path, typer.Option(help="SQLite result store.")] = DEFAULT_STORE,
    suite: Annotated[str | None, typer.Option(help="Suite to render (default: every suite "
                                                   "in the store).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: reports/<suite>/, "
                                                  "the name made path-safe).")] = None,
) -> None:
    """Re-render the HTML report and plots from the store alone (read-only)."""
    from harness.reports.html import render
    from harness.slug import slug
    from harness.store import Store

    _writable(out, "--out", folder=True)
    st = Store(store, readonly=True)
    suites = _suites(st, store, suite)
    for name in [suite] if suite else suites:
        dest = out if (out and suite) else (out or Path("reports")) / slug(name)
        path = render(st, name, dest)
        console.print(f"{name}: {path}", markup=False, highlight=False)
    st.close()


@app.command()
def compare(
    run_a: Annotated[str, typer.Argument(help="Reference run id (see the report header).")],
    run_b: Annotated[str, typer.Argument(help="Run id compared against it.")],
    store: Annotated[Path, typer.Option(help="SQLite result store.")] = DEFAULT_STORE,
    store_b: Annotated[Path | None, typer.Option(
        "--store-b", help="The store holding RUN_B, when it is not --store (results made on "
                          "another machine).")] = None,
    out: Annotated[Path | None, typer.Option(help="HTML file (default: "
                                                  "reports/compare-A-B.html).")] = None,
) -> None:
    """Compare two runs cell by cell: latency/throughput ratios and top-1 differences."""
    from rich.table import Table
    from rich.text import Text

    from harness.reports.compare import compare as compare_runs
    from harness.reports.compare import render_html
    from harness.store import Store

    from harness.slug import slug

    _writable(out, "--out", folder=False)
    st = Store(store, readonly=True)
    _suites(st, store, None)
    st_b = None
    try:
        if store_b is not None:
            st_b = Store(store_b, readonly=True)
            _suites(st_b, store_b, None)
        rows, warnings = compare_runs(st, run_a, run_b, st_b)
    finally:
        st.close()
        if st_b is not None:
            st_b.close()
    for w in warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)
    table = Table(title=f"{run_b} / {run_a}")
    cols = ("model", "method", "target", "batch_size", "latency_ratio", "change",
            "time_ratio_ci", "speedup_a", "speedup_b", "speedup_change", "top1_diff_points",
            "top1_diff_ci", "top1_change")
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*(Text("" if r[c] is None else str(r[c])) for c in cols))
    console.print(table)
    path = render_html(rows, warnings, run_a, run_b,
                       out or Path("reports") / f"compare-{slug(run_a)}-{slug(run_b)}.html")
    console.print(f"{len(rows)} matching measurements; {path}", markup=False, highlight=False)


@app.command()
def export(
    format: Annotated[ExportFormat, typer.Option(help="csv or json.")],
    store: Annotated[Path, typer.Option(help="SQLite result store.")] = DEFAULT_STORE,
    suite: Annotated[str | None, typer.Option(help="Only this suite.")] = None,
    out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    all_runs: Annotated[bool, typer.Option("--all", help="Every stored row, not only the newest "
                                                         "per cell.")] = False,
    samples: Annotated[bool, typer.Option("--samples", help="The raw per-call timing samples "
                                                            "(one row per call) instead of the "
                                                            "summaries.")] = False,
) -> None:
    """Tidy rows, one per (cell, target, batch size), as CSV or JSON; or the raw samples."""
    from harness.reports.tidy import SAMPLE_COLUMNS, samples_rows, to_csv, to_json, tidy_rows
    from harness.store import Store

    _writable(out, "--out", folder=False)
    st = Store(store, readonly=True)
    _suites(st, store, suite)
    if samples:
        keep = {(r["cell_key"], r["run_id"]) for r in st.rows(suite=suite, latest=not all_runs)}
        raw = [s for s in st.samples(suite=suite) if (s["cell_key"], s["run_id"]) in keep]
        rows = samples_rows(raw)
        columns = SAMPLE_COLUMNS
    else:
        rows = tidy_rows(st.rows(suite=suite, latest=not all_runs))
        from harness.reports.tidy import COLUMNS as columns
    st.close()
    text = to_csv(rows, columns) if format is ExportFormat.csv else to_json(rows)
    if out:
        out.write_text(text)
    else:
        sys.stdout.write(text)


class Objective(str, Enum):
    fastest = "fastest"
    smallest = "smallest"
    most_accurate = "most-accurate"


class AnswerFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def tune(
    suite: Annotated[str, typer.Option(help="Suite name or path; its [[methods]] `search` "
                                            "tables are the space.")],
    target: Targets = None,
    trials: Annotated[int, typer.Option(help="Finished trials the study should hold (a "
                                             "resumed study runs only the rest).")] = 20,
    model: Annotated[str | None, typer.Option(help="The suite's model to tune (needed when "
                                                   "it has several).")] = None,
    profile: Annotated[str, typer.Option(help="smoke, quick or full.")] = "quick",
    batch: Annotated[int, typer.Option(help="Batch size of the speedup objective.")] = 1,
    method: Annotated[list[str] | None, typer.Option(help="Only the search spaces of these "
                                                          "methods (repeatable).")] = None,
    sampler: Annotated[str, typer.Option(help="tpe (multi-objective TPE), nsga2 or "
                                              "random.")] = "tpe",
    size: Annotated[bool, typer.Option("--size/--no-size", help="Also minimise the exported "
                                                                 "size.")] = False,
    store: Annotated[Path, typer.Option(help="SQLite result store; the study's journal "
                                             "lives beside it.")] = DEFAULT_STORE,
    report_dir: ReportDir = None,
    cache_dir: CacheDir = None,
    data_dir: DataDir = None,
    threads: Threads = None,
    device: Device = "cpu",
    executor: Executor = "local",
    ray_address: RayAddress = None,
    ray_artifacts: RayArtifacts = "auto",
) -> None:
    """Search the suite's space for the best trade-offs on each target (Optuna, measured).

    Every trial is an ordinary stored cell; the study resumes after a kill; the report draws
    each target's front and marks where two targets' fronts disagree."""
    from harness import fronts
    from harness.reports.html import render
    from harness.slug import slug
    from harness.store import Store
    from harness.suite import PROFILES
    from harness.tune import SAMPLERS, TuneEvents, TuneOptions, Tuner, journal_path, objectives

    if profile not in PROFILES:
        fail(f"unknown profile '{profile}' (choose from: {', '.join(PROFILES)})")
    if sampler not in SAMPLERS:
        fail(f"unknown sampler '{sampler}' (choose from: {', '.join(SAMPLERS)})")
    if trials < 1:
        fail(f"--trials must be >= 1, not {trials}")
    if threads is not None and threads < 1:
        fail("--threads must be >= 1")
    _writable(report_dir, "--report-dir", folder=True)  # now, not after the trials
    ex = _executor(executor, ray_address, ray_artifacts, device)
    s = _load_suite(suite, [model] if model else None)
    if model is None:
        if len(s.models) > 1:
            fail(f"suite {s.name} has several models: pass --model (choose from: "
                 f"{', '.join(s.models)})")
        model = s.models[0]
    spaces = tuple(sp for sp in s.search if sp.applies_to(model)
                   and (not method or sp.method in method))
    if method:
        have = sorted({sp.method for sp in s.search if sp.applies_to(model)})
        bad = [m for m in method if m not in have]
        if bad:
            fail(f"method '{bad[0]}' has no search space for {model} in suite {s.name} "
                 f"(choose from: {', '.join(have) or 'none'})")
    _probe_store(store)
    from harness.runner import RunOptions, Runner  # the runner loads only now (see `run`)

    opts = RunOptions(suite=s, profile=profile, targets=list(target or s.targets), store=store,
                      cache_dir=cache_dir or store.parent / "cache", data_dir=data_dir,
                      device=device, threads=threads,
                      command=" ".join(["harness", *sys.argv[1:]]))
    runner = Runner(opts, check_device=ex is None)  # on Ray, the cluster's nodes train
    for name, reason in runner.skipped.items():
        err.print(f"skipping target {name}: {reason}", markup=False, highlight=False)
    if not runner.targets:
        fail("no usable target: " + "; ".join(f"{k}: {v}" for k, v in runner.skipped.items()))
    names = [n for n, _ in objectives(runner.targets, batch, size)]

    def said(r) -> None:  # type: ignore[no-untyped-def]
        what = fronts.trial_label(r.run.method, r.run.config) if r.run else "?"
        if r.state == "COMPLETE":
            vals = ", ".join(f"{n} {v:.3g}" for n, v in zip(names, r.values or [], strict=False))
            note = " (stored before: not re-measured)" if r.reused else ""
            note += "".join(f"; noisy on {t}: {why}" for t, why in r.noisy.items())
            console.print(f"trial {r.number}: {what}: {vals}{note}", markup=False,
                          highlight=False, soft_wrap=True)
        else:
            console.print(f"trial {r.number}: {what}: FAILED: {r.error}", markup=False,
                          highlight=False, soft_wrap=True)

    tuner = Tuner(runner, TuneOptions(model=model, trials=trials, batch=batch, sampler=sampler,
                                      size=size, spaces=spaces),
                  TuneEvents(trial=said, log=lambda t: err.print(t, markup=False,
                                                                 highlight=False)))
    runner.load_data()
    Store(store).close()  # a store that cannot be written is one line now, not after training
    console.print(f"study {tuner.name} in {journal_path(store)}: {trials} trials, objectives: "
                  f"{'; '.join(names)}", markup=False, highlight=False, soft_wrap=True)
    caveat = runner.timing_caveat()  # the runner's own log is quiet under tune
    if caveat:  # once the input is known good: bad input stays one line
        err.print(caveat, markup=False, highlight=False, soft_wrap=True)
    results = tuner.run(ex)
    st = Store(store, readonly=True)
    pts = fronts.points(st, s.name).get(tuner.name, [])
    for t, ps in fronts.by_target(pts).items():
        console.print(f"front on {t} (accuracy %, speedup b={batch}):", markup=False,
                      highlight=False)
        for p in fronts.front(ps):
            ci = (f" [{p.ci_low:.2f}, {p.ci_high:.2f}]" if p.ci_low is not None
                  and p.ci_high is not None else "")
            console.print(f"  trial {p.trial:>3} {p.label}: {p.accuracy_text()}  "
                          f"{p.speedup:.2f}{ci}x", markup=False, highlight=False,
                          soft_wrap=True)
        off = sorted({p.trial for p in ps if not p.clean})
        if off:  # a noisy point is not a worse one: say which were never on the front
            console.print(f"  left off as noisy, not judged worse (reasons in the report): trial"
                          f"{'s' if len(off) > 1 else ''} {', '.join(map(str, off))}",
                          markup=False, highlight=False, soft_wrap=True)
    for d in fronts.disagreements(pts):
        console.print("fronts disagree: " + d.describe(), markup=False, highlight=False,
                      soft_wrap=True)
    if any(p.held_out is not None for p in pts):
        console.print("note: the search scored each trial on the even-numbered evaluation "
                      "items only (`search`); `held out` is its top-1 on the odd-numbered "
                      "ones, which no choice of the search saw: read a chosen trial's accuracy "
                      "there (95% intervals in brackets)", markup=False, highlight=False,
                      soft_wrap=True)
    if any(p.held_out is None for p in pts):
        console.print("note: points without per-item results (mAP, or cells stored before "
                      "schema 6) were searched on all evaluation items, so their best "
                      "accuracies are optimistic by that selection; confirm a choice on images "
                      "the search never scored", markup=False, highlight=False, soft_wrap=True)
    out = render(st, s.name, report_dir or Path("reports") / slug(s.name))
    st.close()
    console.print(f"report {out}", markup=False, highlight=False)
    failed = [r for r in results if r.state != "COMPLETE"]
    if failed:  # as `run`: 1 when something this command ran failed (the study went on)
        console.print(f"{len(failed)} of {len(results)} trials failed", markup=False,
                      highlight=False)
        raise typer.Exit(1)


@app.command()
def recommend(
    target: Annotated[str, typer.Option(help="The target runtime to ship on.")],
    store: Annotated[Path, typer.Option(help="SQLite result store.")] = DEFAULT_STORE,
    suite: Annotated[str | None, typer.Option(help="Suite name or suite file (default: every "
                                                   "suite in the store); its `budgets` are "
                                                   "the defaults.")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only these models "
                                                         "(repeatable).")] = None,
    batch: Annotated[int, typer.Option(help="Batch size: 1 (latency) or the suite's larger "
                                            "one (throughput).")] = 1,
    max_accuracy_loss: Annotated[float | None, typer.Option(
        help="Most accuracy lost vs the baseline on the target, in points (default: the "
             "suite's budget, else 1).")] = None,
    min_speedup: Annotated[float | None, typer.Option(
        help="Least speedup, by the low end of its 95% CI.")] = None,
    max_size_mb: Annotated[float | None, typer.Option(help="Largest exported model file, MB "
                                                            "(10^6 bytes).")] = None,
    max_latency_ms: Annotated[float | None, typer.Option(
        help="Largest p50 time per call at --batch, ms.")] = None,
    strict_accuracy: Annotated[bool | None, typer.Option(
        "--strict-accuracy/--point-accuracy",
        help="Judge --max-accuracy-loss by the high end of the loss's 95% CI, as "
             "--min-speedup is judged by the low end of its CI (default: the suite's "
             "budget, else the loss itself).")] = None,
    objective: Annotated[Objective, typer.Option(
        help="fastest (highest speedup CI low), smallest (zlib-compressed model: INT8 and "
             "sparsity both count) or most-accurate.")
    ] = Objective.fastest,
    format: Annotated[AnswerFormat, typer.Option(help="text or json.")] = AnswerFormat.text,
) -> None:
    """Which configuration to ship: per model, the best one within budgets (read-only).

    Exit code 2 when nothing qualifies, with the closest misses and what each lacks."""
    import json

    from harness import recommend as rec
    from harness import suite as suites
    from harness.store import Store

    st = Store(store, readonly=True)
    held = _suites(st, store, None)
    names = held
    file_budgets: dict[str, rec.Budgets] = {}
    if suite is not None and suite not in held:
        if not Path(suite).is_file():
            fail(f"suite {suite!r} has no results in {store} (choose from: {', '.join(held)})")
        s = suites.load(suite)
        if s.name not in held:
            fail(f"suite {s.name!r} (from {suite}) has no results in {store} (choose from: "
                 f"{', '.join(held)})")
        file_budgets[s.name] = s.budgets or rec.Budgets()
        names = [s.name]
    elif suite is not None:
        names = [suite]
    runs = st.runs()
    rows = {name: st.rows(suite=name) for name in names}
    st.close()
    measured = [r for rs in rows.values() for r in rs
                if r["status"] == "ok" and r.get("speedup") is not None]
    targets = sorted({str(r["target"]) for r in measured})
    if target not in targets:
        fail(f"target {target!r} has no measurements in {store} (choose from: "
             f"{', '.join(targets) or 'none'})")
    on_target = [r for r in measured if r["target"] == target]
    held_models = sorted({str(r["model"]) for r in on_target})
    for m in model or []:
        if m not in held_models:
            fail(f"model {m!r} has no measurements on {target} (choose from: "
                 f"{', '.join(held_models)})")
    batches = sorted({int(r["batch_size"]) for r in on_target
                      if model is None or r["model"] in model})
    if batch not in batches:
        fail(f"batch size {batch} was not measured on {target} (choose from: "
             f"{', '.join(map(str, batches))})")
    flags = {"max_accuracy_loss": max_accuracy_loss, "min_speedup": min_speedup,
             "max_size_mb": max_size_mb, "max_latency_ms": max_latency_ms,
             "strict_accuracy": strict_accuracy}
    answers: list[rec.Answer] = []
    for name in names:
        base = file_budgets.get(name) or rec.suite_budgets(
            name, [r for r in runs if r["suite"] == name])[0]
        try:
            budgets = dataclasses.replace(base, **{k: v for k, v in flags.items()
                                                   if v is not None})
        except ValueError as exc:
            field, _, why = str(exc).partition(" ")
            fail(f"--{field.replace('_', '-')} {why}")
        answers += rec.recommend(rows[name], target, batch, budgets, objective.value, model)
    if format is AnswerFormat.json:
        sys.stdout.write(json.dumps([a.as_dict() for a in answers], indent=1) + "\n")
    else:
        sys.stdout.write(rec.render_text(answers))
    if not any(a.ok for a in answers):
        err.print(f"nothing qualifies on {target} at batch {batch} "
                  f"({answers[0].budgets.describe() if answers else 'no rows'}); "
                  "the closest misses are listed", markup=False, highlight=False,
                  soft_wrap=True)
        raise typer.Exit(2)


def _suites(st, store: Path, suite: str | None) -> list[str]:  # type: ignore[no-untyped-def]
    """The suites a store holds results for; an empty store, or a `suite` it does not hold, is
    one line naming what exists."""
    suites = sorted({str(r["suite"]) for r in st.runs()})
    if not suites:
        fail(f"store {store} holds no runs yet (run `harness run` first, or pass --store)")
    if suite is not None and suite not in suites:
        fail(f"suite {suite!r} has no results in {store} (choose from: {', '.join(suites)})")
    return suites


def main() -> None:
    """Console entry point: any usage error (ours or the CLI parser's) is one line, exit 2;
    so is a store that fails after it was opened (locked past the timeout, disk full)."""
    import sqlite3

    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        _one_line(str(exc))
    except sqlite3.Error as exc:
        from harness.store import TIMEOUT_ENV

        hint = (f" (another process held it too long; set {TIMEOUT_ENV} to wait longer)"
                if "locked" in str(exc) or "busy" in str(exc) else "")
        _one_line(f"result store: {exc}{hint}")
    except OSError as exc:  # a full disk, a vanished folder: one line, never a half row
        if exc.errno is None:
            raise
        where = f" ({exc.filename})" if exc.filename else ""
        err.print(f"error: {exc.strerror or exc}{where}; every cell stored before it is kept",
                  markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
    except Exception as exc:
        # click's / typer's own usage errors (typer >= 0.2x vendors click): exit_code 2
        if getattr(exc, "exit_code", None) == 2 and hasattr(exc, "format_message"):
            _one_line(exc.format_message())
        if type(exc).__name__ == "Abort":
            sys.exit(130)
        raise
    sys.exit(code if isinstance(code, int) else 0)


def _one_line(message: str) -> None:
    err.print(f"error: {' '.join(message.split())}", markup=False, highlight=False, soft_wrap=True)
    sys.exit(2)

if __name__ == "__main__":
    main()
