"""`harness`: list, run, report, export. Bad input = one line on stderr and exit code 2."""

from __future__ import annotations

import dataclasses
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

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
    err.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(2)


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


@app.command()
def run(
    suite: Annotated[str, typer.Option(help="Suite name (see `harness list suites`) or path "
                                            "to a suite TOML file.")],
    target: Annotated[list[str] | None, typer.Option(help="Target runtime; repeat for several "
                                                          "(default: the suite's).")] = None,
    profile: Annotated[str, typer.Option(help="smoke (seconds), quick (minutes) or full "
                                              "(the papers' recipes).")] = "quick",
    store: Annotated[Path, typer.Option(help="SQLite result store.")] = DEFAULT_STORE,
    report_dir: Annotated[Path | None, typer.Option(help="Report folder (default: "
                                                         "reports/<suite>/).")] = None,
    device: Annotated[str, typer.Option(help="Training device: cpu or cuda.")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="Threads for every runtime (default: "
                                                      "the suite's).")] = None,
    force: Annotated[bool, typer.Option(help="Redo cells already stored.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Where datasets live.")] = None,
    download: Annotated[bool, typer.Option(help="Let torchvision download missing data.")] = False,
    method: Annotated[list[str] | None, typer.Option(help="Only these methods (repeatable).")] = None,
    model: Annotated[list[str] | None, typer.Option(help="Only these models of the suite "
                                                         "(repeatable).")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Checkpoints and exported models "
                                                        "(default: beside the store).")] = None,
) -> None:
    """Run a suite: train/load baselines, compress, fine-tune, export, score and time, report."""
    from harness import suite as suites
    from harness.reports.table import print_table
    from harness.runner import RunOptions, Runner
    from harness.suite import PROFILES

    if device not in ("cpu", "cuda"):
        fail(f"unknown device '{device}' (choose from: cpu, cuda)")
    if profile not in PROFILES:
        fail(f"unknown profile '{profile}' (choose from: {', '.join(PROFILES)})")
    if threads is not None and threads < 1:
        fail("--threads must be >= 1")
    s = suites.load(suite)
    if model:
        bad = [m for m in model if m not in s.models]
        if bad:
            fail(f"model '{bad[0]}' is not in suite {s.name} (choose from: {', '.join(s.models)})")
        s = dataclasses.replace(s, models=tuple(model))
    opts = RunOptions(
        suite=s, profile=profile, targets=list(target or s.targets), store=store,
        cache_dir=cache_dir or store.parent / "cache", data_dir=data_dir, download=download,
        device=device, threads=threads, force=force, methods=list(method or []),
        command=" ".join(["harness", *sys.argv[1:]]),
    )
    runner = Runner(opts)
    for name, reason in runner.skipped.items():
        err.print(f"skipping target {name}: {reason}", markup=False, highlight=False)
    if not runner.targets:
        fail("no usable target: " + "; ".join(f"{k}: {v}" for k, v in runner.skipped.items()))
    runner.load_data()
    with _progress() as progress:
        runner.ev = _events(progress, runner.total_cells())
        run_id = runner.run()
    from harness.reports.html import render
    from harness.store import Store

    st = Store(store)
    print_table(console, st.rows(run_id=run_id))
    out = render(st, s.name, report_dir or Path("reports") / s.name)
    st.close()
    console.print(f"run {run_id}: stored in {store}, report {out}", markup=False,
                  highlight=False)


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
    out: Annotated[Path | None, typer.Option(help="Output folder (default: reports/<suite>/).")] = None,
) -> None:
    """Re-render the HTML report and plots from the store alone."""
    from harness.reports.html import render
    from harness.store import Store

    if not store.exists():
        fail(f"no store at {store} (run `harness run` first, or pass --store)")
    st = Store(store)
    suites = sorted({r["suite"] for r in st.runs()})
    if suite is not None and suite not in suites:
        fail(f"suite '{suite}' has no results in {store} (choose from: {', '.join(suites) or 'none'})")
    for name in [suite] if suite else suites:
        dest = out if (out and suite) else (out or Path("reports")) / name
        path = render(st, name, dest)
        console.print(f"{name}: {path}", markup=False, highlight=False)
    st.close()


@app.command()
def compare(
    run_a: Annotated[str, typer.Argument(help="Reference run id (see the report header).")],
    run_b: Annotated[str, typer.Argument(help="Run id compared against it.")],
    store: Annotated[Path, typer.Option(help="SQLite result store.")] = DEFAULT_STORE,
    out: Annotated[Path | None, typer.Option(help="HTML file (default: "
                                                  "reports/compare-A-B.html).")] = None,
) -> None:
    """Compare two runs cell by cell: latency/throughput ratios and top-1 differences."""
    from rich.table import Table
    from rich.text import Text

    from harness.reports.compare import compare as compare_runs
    from harness.reports.compare import render_html
    from harness.store import Store

    if not store.exists():
        fail(f"no store at {store} (run `harness run` first, or pass --store)")
    st = Store(store)
    rows, warnings = compare_runs(st, run_a, run_b)
    st.close()
    for w in warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)
    table = Table(title=f"{run_b} / {run_a}")
    cols = ("model", "method", "target", "batch_size", "latency_ratio", "change",
            "time_ratio_ci", "speedup_a", "speedup_b", "speedup_change", "top1_diff_points")
    for c in cols:
        table.add_column(c)
    for r in rows:
        table.add_row(*(Text("" if r[c] is None else str(r[c])) for c in cols))
    console.print(table)
    path = render_html(rows, warnings, run_a, run_b,
                       out or Path("reports") / f"compare-{run_a}-{run_b}.html")
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

    if not store.exists():
        fail(f"no store at {store} (run `harness run` first, or pass --store)")
    st = Store(store)
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


def main() -> None:
    """Console entry point: any usage error (ours or the CLI parser's) is one line, exit 2."""
    try:
        code = app(standalone_mode=False)
    except UsageError as exc:
        _one_line(str(exc))
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
