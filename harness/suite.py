"""Suite files: what to train, which methods and configs to sweep, how to time.

A suite is a TOML file: shipped ones live in `benchmarks/suites/`, plugins add more through the
`harness.suites` entry-point group (the entry point names a TOML path or a function returning
one), and `--suite` also takes a path to a user's own file. Every key is checked: a typo is a
one-line error naming the valid keys.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import importlib.resources
import itertools
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from harness import search
from harness.errors import UsageError, unknown
from harness.recommend import Budgets
from harness.registry import DATASETS, METHODS, MODELS
from harness.search import Space
from harness.timing import SAFE_CHUNK, TimingConfig
from harness.recipe import Recipe
from harness.typecheck import check, check_fields, hints, kind, show, table

PROFILES = ("smoke", "quick", "full")
SUITE_KEYS = {"name", "description", "dataset", "dataset_options", "models", "model_options",
              "methods", "profiles", "targets", "seed", "budgets"}
PROFILE_KEYS = {"train", "finetune", "eval_samples", "timing"}
TIMING_KEYS = {"batch_sizes", "iterations", "warmup", "rounds", "threads", "max_seconds",
               "min_seconds", "spinning", "precision", "min_rounds", "rewarm"}
METHOD_KEYS = {"name", "grid", "config", "models", "search"}


@dataclass(frozen=True)
class Timing:
    batch_sizes: tuple[int, ...] = (1, 64)
    iterations: int = 1024
    warmup: int = 32
    rounds: int = 16
    threads: int = 2
    max_seconds: float | None = None  # cap per interleaved measurement (not for scored runs)
    min_seconds: float | None = None  # floor per session (scored runs: >= 1 s, see quality.py)
    # ORT's intra-op threads spin while waiting for work: faster on an idle machine, much
    # slower when other processes want the cores (measured: README "Threads and spinning")
    spinning: bool = False
    # stop a pair early once its speedup CI is within +-precision, after min_rounds rounds
    # (unscored profiles only: see timing.TimingConfig)
    precision: float | None = None
    min_rounds: int | None = None
    # untimed calls opening each interleaved chunk: chunks of few short calls understate a
    # speedup (the first calls after a switch are slow; README "Switching bias"). 0 = none.
    rewarm: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.spinning, bool):
            raise ValueError(f"spinning must be true or false, not {self.spinning!r}")

    def config(self) -> TimingConfig:
        return TimingConfig(self.iterations, self.warmup, self.rounds, self.max_seconds,
                            self.min_seconds, self.precision, self.min_rounds, self.rewarm)

    def key(self) -> str:
        """This timing as cell keys hold it: the dataclass's repr, where `rewarm` (added
        later) appears only when set, so the keys of results stored before it stay valid."""
        shown = [f for f in fields(self) if f.name != "rewarm" or self.rewarm]
        return (f"{type(self).__qualname__}("
                + ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in shown) + ")")

    def short_chunks(self) -> str | None:
        """Why this timing's chunks are too short to trust at small batches, or None.

        Measured (`python -m harness.benchmarks.switching`, ORT, batch 1): chunks of 1 / 4
        timed calls read ResNet-18's 4.14x as -28% / -17% and LeNet-5's 2.47x as -12% / -5%;
        13 calls were within 2%, as was any chunk with 4 untimed calls before it. At batch 32
        even 1-call chunks were within 2%."""
        per = -(-self.iterations // self.rounds)
        if self.rewarm or per >= SAFE_CHUNK or min(self.batch_sizes) >= 32:
            return None
        return (f"{per} timed call{'s' if per > 1 else ''} per chunk (iterations "
                f"{self.iterations} / rounds {self.rounds}) understate speedups at small "
                f"batches by up to 5-28% (README \"Switching bias\"); give iterations >= "
                f"{SAFE_CHUNK * self.rounds} or rewarm = 4")


@dataclass(frozen=True)
class Profile:
    name: str
    train: Recipe
    finetune: Recipe
    eval_samples: int | None
    timing: Timing


@dataclass(frozen=True)
class MethodRun:
    """One method with one configuration of the grid."""

    method: str
    config: dict[str, Any] = field(default_factory=dict)
    models: tuple[str, ...] | None = None  # only for these models (e.g. Li's plans per depth)

    def applies_to(self, model: str) -> bool:
        return self.models is None or model in self.models

    @property
    def label(self) -> str:
        if not self.config:
            return self.method
        vals = ",".join(f"{k}={v}" for k, v in sorted(self.config.items()))
        return f"{self.method}[{vals}]"


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    dataset: str
    models: tuple[str, ...]
    runs: tuple[MethodRun, ...]
    profiles: dict[str, Profile]
    targets: tuple[str, ...] = ("onnxruntime-cpu",)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    # per model: extra builder arguments (e.g. a checkpoint path, a detector's training knobs)
    model_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 0
    path: str = ""
    # what `harness recommend` and the report's verdict panel hold configurations to
    # (None: not declared, the defaults of harness.recommend.Budgets apply)
    budgets: Budgets | None = None
    # what `harness tune` may vary: one space per [[methods]] entry with a `search` table
    search: tuple[Space, ...] = ()

    def profile(self, name: str) -> Profile:
        if name not in self.profiles:
            raise unknown("profile", name, self.profiles)
        return self.profiles[name]


def builtin_suites() -> dict[str, Path]:
    """name -> path of every shipped and plugin suite file (plugins cannot shadow shipped ones)."""
    out: dict[str, Path] = {}
    root = importlib.resources.files("harness.benchmarks.suites")
    for entry in root.iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name[: -len(".toml")]] = Path(str(entry))
    for ep in importlib.metadata.entry_points(group="harness.suites"):
        obj = ep.load()
        path = Path(obj() if callable(obj) else obj)
        if ep.name in out:
            raise UsageError(f"duplicate suite name '{ep.name}' (plugin {ep.value})")
        out[ep.name] = path
    return out


def find(name_or_path: str) -> Path:
    suites = builtin_suites()
    if name_or_path in suites:
        return suites[name_or_path]
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            raise UsageError(f"suite file '{p}' does not exist")
        return p
    raise unknown("suite", name_or_path, suites)


def _check_keys(d: dict[str, Any], valid: set[str], where: str) -> None:
    bad = sorted(set(d) - valid)
    if bad:
        raise UsageError(f"{where}: unknown key '{bad[0]}' (valid: {', '.join(sorted(valid))})")


def _names(value: Any, key: str, where: str, *, empty: bool = False) -> tuple[str, ...]:
    """A list of names (models, targets): strings, none twice, non-empty unless `empty`."""
    check(value, list[str], key, where)
    if not value and not empty:
        raise UsageError(f"{where}: {key!r} must list at least one name")
    twice = sorted({v for v in value if value.count(v) > 1})
    if twice:
        raise UsageError(f"{where}: {key!r} lists {show(twice[0])} twice")
    return tuple(value)


def _expand(entry: Any, where: str, models: tuple[str, ...] | None = None
            ) -> tuple[list[MethodRun], Space | None]:
    """An entry's grid runs (for `harness run`) and its search space (for `harness tune`).
    An entry with `search` and no `grid` is for the tuner only. Its `models` must be among
    the suite's `models` (else the entry would run on nothing, silently)."""
    entry = table(entry, where, "a table (a [[methods]] entry with a name)")
    _check_keys(entry, METHOD_KEYS, where)
    if "name" not in entry:
        raise UsageError(f"{where}: missing key 'name'")
    check(entry["name"], str, "name", where)
    method = METHODS.get(entry["name"])
    only = _names(entry["models"], "models", where) if "models" in entry else None
    for m in only or ():
        MODELS.get(m)
        if models is not None and m not in models:
            raise UsageError(f"{where}: models names '{m}', which is not one of the suite's "
                             f"models (choose from: {', '.join(models)})")
    fixed = dict(table(entry.get("config", {}), f"{where}.config"))
    grid = dict(table(entry.get("grid", {}), f"{where}.grid"))
    fields = {f.name for f in dataclasses.fields(method.Config)}
    for key in (*fixed, *grid):
        if key not in fields:
            raise UsageError(f"{where}: method '{entry['name']}' has no option {key!r} "
                             f"(valid: {', '.join(sorted(fields)) or 'none'})")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UsageError(f"{where}: grid {key!r} must be a non-empty list, not "
                             f"{show(values)} ({kind(values)})")
    known = hints(method.Config)
    for key, value in fixed.items():
        if key in known:
            check(value, known[key], key, where)
    for key, values in grid.items():
        for value in values if key in known else ():
            check(value, known[key], key, f"{where} grid")
    space = None
    if "search" in entry:
        space = _space(entry["name"], entry["search"], fixed, only, fields, where)
        if not grid:
            return [], space
    runs = []
    keys = list(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        cfg = {**fixed, **dict(zip(keys, combo, strict=True))}
        try:
            method.Config(**cfg)
        except Exception as exc:  # a Config's own checks: any failure is a bad config
            raise UsageError(f"{where}: bad config {show(cfg, 200)} for '{entry['name']}': "
                             f"{exc}") from None
        runs.append(MethodRun(entry["name"], cfg, only))
    return runs, space


def _space(method: str, raw: Any, fixed: dict[str, Any], only: tuple[str, ...] | None,
           fields: set[str], where: str) -> Space:
    """A `search` table checked now: every range end and choice builds a valid config (so a
    bad corner is a line at load time, not a failed trial an hour in)."""
    dims = search.parse(raw, method, fields - set(fixed), where)
    space = Space(method, dims, tuple(sorted(fixed.items())), only)
    for point in search.corners(dims):
        run = space.run(point)
        try:
            METHODS.get(run.method).Config(**run.config)
        except UsageError as exc:
            raise UsageError(f"{where}: search point {show(point, 200)}: {exc}") from None
        except Exception as exc:
            raise UsageError(f"{where}: search point {show(point, 200)} is no valid config for "
                             f"'{method}': {exc}") from None
    return space


DISTILLERS = ("kd", "fitnets")


def with_scratch_controls(runs: list[MethodRun]) -> list[MethodRun]:
    """Every distilled student is reported next to the same student trained from scratch on the
    same budget: add that `scratch` run (once) before the first run that needs it."""
    out: list[MethodRun] = []
    for run in runs:
        if run.method in DISTILLERS:
            cfg = METHODS.get(run.method).Config(**run.config)
            control = {"student": cfg.student}
            if cfg.epochs is not None:
                control["epochs"] = cfg.epochs
            scratch = MethodRun("scratch", control, run.models)
            if scratch not in out and scratch not in runs:
                out.append(scratch)
        out.append(run)
    return out


def _profile(name: str, d: Any, where: str) -> Profile:
    d = table(d, where)
    _check_keys(d, PROFILE_KEYS, where)
    timing = dict(table(d.get("timing", {}), f"{where}.timing"))
    _check_keys(timing, TIMING_KEYS, f"{where}.timing")
    check_fields(Timing, timing, f"{where}.timing")
    if "batch_sizes" in timing:
        timing["batch_sizes"] = tuple(timing["batch_sizes"])
        if not timing["batch_sizes"] or min(timing["batch_sizes"]) < 1:
            raise UsageError(f"{where}.timing: batch_sizes must be positive integers, not "
                             f"{show(list(timing['batch_sizes']))}")
    if timing.get("threads", 1) < 1:
        raise UsageError(f"{where}.timing: threads must be >= 1, not {timing['threads']}")
    try:
        t = Timing(**timing)
        t.config()
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}.timing: {exc}") from None
    eval_samples = d.get("eval_samples")
    if eval_samples is not None:
        check(eval_samples, int, "eval_samples", where)
        if eval_samples < 1:
            raise UsageError(f"{where}: eval_samples must be >= 1, not {eval_samples}")
    return Profile(
        name=name,
        train=Recipe.from_dict(d.get("train", {}), f"{where}.train"),
        finetune=Recipe.from_dict(d.get("finetune", {}), f"{where}.finetune"),
        eval_samples=eval_samples,
        timing=t,
    )


def _model_options(raw: Any, models: tuple[str, ...], where: str,
                   base: Path | None = None) -> dict[str, dict[str, Any]]:
    """`[model_options.<model>]` tables: each key must be an argument of that model's builder
    (the ones the harness sets itself, classes/channels/image size, are not options). A
    relative `checkpoint` is relative to the suite file's folder (`base`), so a suite and its
    weights move together; `train = false` (the checkpoint is the baseline) needs one."""
    import inspect

    if not isinstance(raw, dict):
        raise UsageError(f"{where}: model_options must be a table of tables, one per model")
    out = {}
    for model, opts in raw.items():
        if model not in models:
            raise UsageError(f"{where}: model_options for {model!r}, which is not among the "
                             f"suite's models (choose from: {', '.join(models)})")
        build = MODELS.get(model).build
        params = set(inspect.signature(build).parameters)
        valid = params - {"num_classes", "in_channels", "image_size"}
        if not isinstance(opts, dict):
            raise UsageError(f"{where}: model_options.{model} must be a table")
        _check_keys(opts, valid, f"{where} [model_options.{model}]")
        check_fields(build, opts, f"{where} [model_options.{model}]")
        if opts.get("train") is False and not opts.get("checkpoint"):
            raise UsageError(f"{where} [model_options.{model}]: train = false needs a "
                             "checkpoint (the baseline is then that checkpoint, untrained)")
        out[model] = dict(opts)
        if base is not None and isinstance(opts.get("checkpoint"), str) and opts["checkpoint"]:
            out[model]["checkpoint"] = str(base / Path(opts["checkpoint"]).expanduser())
    return out


def _dataset_options(raw: Any, dataset: str, where: str,
                     base: Path | None = None) -> dict[str, Any]:
    """`dataset_options`: arguments of the dataset's constructor (not where its data lives, nor
    whether to download: those are the CLI's), each of the type it takes. Options the dataset
    names in `path_options` (e.g. imagefolder's `root`) are relative to the suite file's
    folder (`base`)."""
    import inspect

    opts = table(raw, f"{where}: dataset_options")
    cls = DATASETS.get(dataset)
    params = inspect.signature(cls).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        _check_keys(opts, set(params) - {"data_dir", "download"}, f"{where} [dataset_options]")
    check_fields(cls, opts, f"{where} [dataset_options]")
    out = dict(opts)
    for key in getattr(cls, "path_options", ()):
        if base is not None and isinstance(out.get(key), str) and out[key]:
            out[key] = str(base / Path(out[key]).expanduser())
    return out


def _budgets(raw: Any, where: str) -> Budgets:
    """`budgets = { max_accuracy_loss = 1.0, min_speedup = 2.0, max_size_mb = 1,
    max_latency_ms = 5, strict_accuracy = false }`: each key a number (accuracy loss in
    points), `strict_accuracy` a boolean (judge the accuracy budget by the loss's CI high
    end); a key left out keeps its default: 1 point of accuracy, no other limit, not strict."""
    opts = table(raw, f"{where}: budgets")
    _check_keys(opts, {f.name for f in dataclasses.fields(Budgets)}, f"{where} budgets")
    check_fields(Budgets, opts, f"{where} budgets")
    try:
        return Budgets(**opts)
    except ValueError as exc:
        raise UsageError(f"{where} budgets: {exc}") from None


def load(name_or_path: str) -> Suite:
    """Parse and validate a suite by registered name or file path. Anything wrong is a
    UsageError of one line (names and values from the file are quoted, never line breaks)."""
    try:
        return _load(name_or_path)
    except UsageError as exc:
        raise UsageError(" ".join(str(exc).split())) from None


def _read(path: Path) -> Any:
    """A suite file's TOML, or a UsageError of one line saying why it does not read."""
    try:
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"suite file '{path}' is not valid TOML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"suite file '{path}' cannot be read: {exc.strerror or exc}") from None


def declared_budgets(name_or_path: str) -> tuple[str, Budgets | None]:
    """(the suite's name, the budgets its file declares or None): only those two keys are
    read and checked, so a report or `recommend` needs neither the method registry nor torch
    to find a suite's budgets. A UsageError of one line where they do not read."""
    path = find(name_or_path)
    where = f"suite '{path.name}'"
    raw = table(_read(path), where)
    if not isinstance(raw.get("name"), str):
        raise UsageError(f"{where}: 'name' must be a string")
    return raw["name"], _budgets(raw["budgets"], where) if "budgets" in raw else None


def _load(name_or_path: str) -> Suite:
    path = find(name_or_path)
    raw = _read(path)
    where = f"suite '{path.name}'"
    _check_keys(raw, SUITE_KEYS, where)
    for key in ("name", "dataset", "models", "profiles"):
        if key not in raw:
            raise UsageError(f"{where}: missing key '{key}'")
    for key in ("name", "description", "dataset"):
        if key in raw:
            check(raw[key], str, key, where)
    if not raw["name"].strip():
        raise UsageError(f"{where}: 'name' must not be empty")
    DATASETS.get(raw["dataset"])
    models = _names(raw["models"], "models", where)
    for m in models:
        MODELS.get(m)
    targets = _names(raw.get("targets", ["onnxruntime-cpu"]), "targets", where)
    seed = raw.get("seed", 0)
    check(seed, int, "seed", where)
    if not 0 <= seed < 2**32:
        raise UsageError(f"{where}: 'seed' must be in [0, 2**32), not {seed}")
    dataset_options = _dataset_options(raw.get("dataset_options", {}), raw["dataset"], where,
                                       path.resolve().parent)
    model_options = _model_options(raw.get("model_options", {}), models, where,
                                   path.resolve().parent)
    profiles = {}
    for pname, pdata in table(raw["profiles"], f"{where}: profiles").items():
        if pname not in PROFILES:
            raise UsageError(f"{where}: unknown profile {pname!r} (choose from: "
                             f"{', '.join(PROFILES)})")
        profiles[pname] = _profile(pname, pdata, f"{where} [profiles.{pname}]")
    if not profiles:
        raise UsageError(f"{where}: 'profiles' is empty (define at least one of: "
                         f"{', '.join(PROFILES)})")
    entries = raw.get("methods", [])  # left out: baselines only
    check(entries, list, "methods", where)
    if "methods" in raw and not entries:  # an empty list is a mistake worth a line
        raise UsageError(f"{where}: 'methods' is an empty list: add [[methods]] tables, or "
                         "leave the key out to run baselines only")
    runs: list[MethodRun] = []
    spaces: list[Space] = []
    for i, entry in enumerate(entries):
        grid_runs, space = _expand(entry, f"{where} [[methods]] #{i + 1}", models)
        runs.extend(grid_runs)
        spaces += [space] if space is not None else []
    runs = with_scratch_controls(runs)
    return Suite(
        name=raw["name"],
        description=raw.get("description", ""),
        dataset=raw["dataset"],
        models=models,
        runs=tuple(runs),
        profiles=profiles,
        targets=targets,
        dataset_options=dataset_options,
        model_options=model_options,
        seed=seed,
        path=str(path),
        budgets=_budgets(raw["budgets"], where) if "budgets" in raw else None,
        search=tuple(spaces),
    )
