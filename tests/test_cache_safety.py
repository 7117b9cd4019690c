"""The cache runs no code and heals itself (issue 10, items 1, 2 and 7's cache corruption).

One small sweep (LeNet-5 on tiny MNIST-like data: weight-level, l1-filter, low-rank, int8-ptq)
fills a cache; every test works on its own copy of it, damages it (a pickle payload planted in
each kind of file, with the entry's hashes forged so the file verifies; a truncated baseline; a
garbled ONNX and OpenVINO IR) and runs the sweep again into a fresh store: nothing executes, the
damaged entries are rebuilt with one log line each, and every cell ends ok. Then: `--force`
retrains a valid baseline, and every method's cached model rebuilds bit for bit.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import hold_entry, write_mnist_like
from harness import cache, modeldata
from harness import suite as suites
from harness.runner import Events, RunOptions, Runner
from harness.slug import slug
from harness.suite import MethodRun

TARGETS = ["torch-cpu", "onnxruntime-cpu", "openvino-cpu"]
Filled = tuple[Path, Path, Path, int]  # work dir (suite.toml), data dir, cache dir, cells per run

SUITE = """
name = "cache-safety"
dataset = "mnist"
models = ["lenet-5"]

[[methods]]
name = "weight-level"
grid = { sparsity = [0.5] }

[[methods]]
name = "l1-filter"
grid = { ratio = [0.5] }

[[methods]]
name = "low-rank"

[[methods]]
name = "int8-ptq"
config = { calibration = 32 }

[profiles.smoke]
train = { epochs = 1, lr = 0.05, batch_size = 64 }
finetune = { epochs = 0.25, lr = 0.01, batch_size = 64 }
eval_samples = 64
timing = { batch_sizes = [1, 8], iterations = 6, warmup = 1, rounds = 2, threads = 1 }
"""


class Payload:
    """Unpickling this creates `marker`: what a planted cache file would do if it ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str, str]]:
        return (open, (self.marker, "w"))


def torch_payload(marker: Path) -> bytes:
    buf = io.BytesIO()
    torch.save(Payload(marker), buf)
    return buf.getvalue()


def calls_on_load(blob: bytes) -> tuple[str, str] | None:
    """The (module, name) a torch.save archive's pickle calls when loaded (read with
    pickletools, never unpickled), after checking torch's restricted loader refuses it."""
    import pickletools
    import zipfile

    with pytest.raises(Exception, match="(?i)weights.only|unsupported global"):
        torch.load(io.BytesIO(blob), weights_only=True)
    with zipfile.ZipFile(io.BytesIO(blob)) as z:
        data = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    strings: list[str] = []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            return tuple(arg.split(" ", 1))  # type: ignore[return-value]
        if op.name == "STACK_GLOBAL":
            return strings[-2], strings[-1]
        if isinstance(arg, str):
            strings.append(arg)
    return None


def test_a_planted_cifar_batch_is_refused_not_run(tmp_path: Path) -> None:
    """CIFAR's batch files are pickles: a planted one names a callable, and is refused."""
    import pickle

    from harness.benchmarks.datasets.cifar import FOLDER, TEST, CIFAR10
    from harness.errors import UsageError

    marker = tmp_path / "payload-ran"
    folder = tmp_path / FOLDER
    folder.mkdir()
    (folder / TEST[0]).write_bytes(pickle.dumps({"data": Payload(marker), "labels": [0]}))
    with pytest.raises(UsageError, match=f"is not a CIFAR-10 batch file: {open.__module__}.open "
                                         "is not part of a CIFAR batch"):
        CIFAR10(data_dir=tmp_path).test()
    assert not marker.exists()


def sweep(work: Path, data: Path, cache_dir: Path, store: str, force: bool = False,
          methods: tuple[str, ...] = ()) -> tuple[list[sqlite3.Row], list[str], list[str]]:
    """Run the suite in-process into a new store `cache_dir/../store`: (its cell rows, log
    lines, stage lines)."""
    db = cache_dir.parent / store
    assert not db.exists()
    logs: list[str] = []
    stages: list[str] = []
    opts = RunOptions(suite=suites.load(str(work / "suite.toml")), profile="smoke",
                      targets=TARGETS, store=db, cache_dir=cache_dir, data_dir=data,
                      force=force, methods=list(methods))
    Runner(opts, Events(log=logs.append, stage=stages.append)).run()
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT method, target, status, error FROM cells").fetchall()
    con.close()
    return rows, logs, stages


def all_ok(rows: list[sqlite3.Row], n: int) -> None:
    assert len(rows) == n, [dict(r) for r in rows]
    bad = [dict(r) for r in rows if r["status"] != "ok"]
    assert not bad, bad


def entry(cache_dir: Path, method: str) -> Path:
    kind = "baselines" if method == "baseline" else "compressed"
    prefix = "lenet-5-" if method == "baseline" else f"lenet-5-{method}-"
    (folder,) = [p for p in (cache_dir / kind).iterdir() if p.name.startswith(prefix)]
    return folder


def forge(folder: Path, name: str, content: bytes) -> None:
    """Replace one file of an entry and forge meta.json so that the file still verifies:
    only the file's format, not its hash, then stands between it and the loader."""
    (folder / name).write_bytes(content)
    meta = json.loads((folder / cache.META).read_text())
    meta["files"][name] = {"sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    (folder / cache.META).write_text(json.dumps(cache.seal(meta)))


def discarded(logs: list[str], folder: Path) -> list[str]:
    return [line for line in logs if line.startswith("cache: discarding")
            and folder.name in line]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Filled:
    """(work dir with suite.toml, data dir, a filled cache nobody may change, cells per run)."""
    work = tmp_path_factory.mktemp("cache-safety")
    data = work / "data"
    write_mnist_like(data / "MNIST" / "raw", n_train=256, n_test=64)
    (work / "suite.toml").write_text(SUITE)
    rows, _, _ = sweep(work, data, work / "cache", "first.db")
    all_ok(rows, 5 * len(TARGETS))
    return work, data, work / "cache", len(rows)


@pytest.fixture()
def fresh(pristine: Filled, tmp_path: Path) -> Filled:
    """A private copy of the filled cache."""
    work, data, cache_dir, n = pristine
    shutil.copytree(cache_dir, tmp_path / "cache")
    return work, data, tmp_path / "cache", n


def test_entries_hold_data_only(pristine: Filled) -> None:
    """No cache file is a pickle; every file of an entry is listed with its sha256."""
    _, _, cache_dir, _ = pristine
    folders = [p for kind in ("baselines", "compressed") for p in (cache_dir / kind).iterdir()]
    assert len(folders) == 5  # the baseline, and one per compressing method run (the
    # baseline row reuses the baseline entry: no copy of it is cached)
    for folder in folders:
        meta = json.loads((folder / cache.META).read_text())
        assert meta["format"] == cache.FORMAT
        assert set(meta["files"]) >= {"model.safetensors"}
        for name, info in meta["files"].items():
            assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == info["sha256"]
        assert not list(folder.rglob("*.pt")) and not list(folder.rglob("*.pkl"))
    int8 = entry(cache_dir, "int8-ptq")
    assert {"torch-cpu.int8.safetensors", "int8-nncf.xml", "int8-nncf.bin",
            "int8-qdq.onnx", "arch.json"} <= set(json.loads((int8 / cache.META).read_text())
                                                 ["files"])


def test_planted_payloads_never_run_and_the_cells_rebuild(fresh: Filled, tmp_path: Path) -> None:
    work, data, cache_dir, n = fresh
    marker = tmp_path / "payload-ran"
    blob = torch_payload(marker)
    # a live payload (it calls open() when loaded), shown without running it
    assert calls_on_load(blob) == (open.__module__, "open")
    planted = {  # one kind of file per entry, so that each kind is really read
        "baseline": "model.safetensors",  # the baseline checkpoint
        "weight-level": "model.safetensors",  # compressed weights
        "l1-filter": "arch.json",  # the architecture as data
        "int8-ptq": "torch-cpu.int8.safetensors",  # the torch.ao INT8 module
    }
    for method, name in planted.items():
        forge(entry(cache_dir, method), name, blob)
    (entry(cache_dir, "low-rank") / cache.META).write_bytes(blob)  # the metadata itself
    rows, logs, _ = sweep(work, data, cache_dir, "again.db")
    assert not marker.exists()
    all_ok(rows, n)
    for method in [*planted, "low-rank"]:
        folder = entry(cache_dir, method)
        assert len(discarded(logs, folder)) == 1, (method, logs)
        assert cache.read_entry(folder, logs.append) is not None  # rebuilt and valid again
    assert not marker.exists()


def test_a_truncated_baseline_heals(fresh: Filled) -> None:
    work, data, cache_dir, n = fresh
    ckpt = entry(cache_dir, "baseline") / "model.safetensors"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 3])
    rows, logs, stages = sweep(work, data, cache_dir, "again.db")
    all_ok(rows, n)
    assert len(discarded(logs, ckpt.parent)) == 1
    assert "lenet-5: training baseline" in stages
    assert not any(s.endswith(": compress") for s in stages)  # the others were still good


@pytest.mark.parametrize("ir_file", ["int8-nncf.xml", "int8-nncf.bin"])
def test_garbled_onnx_and_openvino_ir_heal(fresh: Filled, ir_file: str) -> None:
    work, data, cache_dir, n = fresh
    onnx = entry(cache_dir, "weight-level") / "model.onnx"
    onnx.write_bytes(b"\x00garbage" * 64)
    ir = entry(cache_dir, "int8-ptq") / ir_file
    ir.write_bytes(bytes(reversed(ir.read_bytes())))  # same size, other bytes
    rows, logs, stages = sweep(work, data, cache_dir, "again.db")
    all_ok(rows, n)
    for folder in (onnx.parent, ir.parent):
        assert len(discarded(logs, folder)) == 1, logs
    assert sum(s.endswith(": compress") for s in stages) == 2


@pytest.mark.parametrize("method", ["baseline", "l1-filter", "int8-ptq"])
def test_every_kind_of_damaged_file_is_discarded_with_one_line(pristine: Filled, tmp_path: Path,
                                                               method: str) -> None:
    """Each file of an entry (weights, arch, ONNX, QDQ ONNX, IR .xml and .bin, INT8 tensors,
    meta.json) missing, truncated or flipped: read_entry discards the entry, one log line."""
    _, _, cache_dir, _ = pristine
    source = entry(cache_dir, method)
    names = sorted(json.loads((source / cache.META).read_text())["files"]) + [cache.META]
    damages = {"missing": lambda p: p.unlink(),
               "truncated": lambda p: p.write_bytes(p.read_bytes()[:-7]),
               "flipped": lambda p: p.write_bytes(bytes([p.read_bytes()[0] ^ 1])
                                                  + p.read_bytes()[1:])}
    for name in names:
        for how, damage in damages.items():
            folder = tmp_path / f"{how}-{slug(name)}" / source.name
            shutil.copytree(source, folder)
            damage(folder / name)
            logs: list[str] = []
            assert cache.read_entry(folder, logs.append) is None, (name, how)
            assert len(logs) == 1 and "discarding" in logs[0], (name, how, logs)
            assert not folder.exists()


def test_force_rebuilds_a_baseline_that_verifies(fresh: Filled) -> None:
    work, data, cache_dir, _ = fresh
    base = entry(cache_dir, "baseline")
    assert cache.read_entry(base, print) is not None
    (base / "sentinel").write_text("the old entry")  # gone once the entry is rebuilt
    rows, logs, stages = sweep(work, data, cache_dir, "forced.db", force=True,
                               methods=("weight-level",))
    all_ok(rows, 2 * len(TARGETS))
    assert "lenet-5: training baseline" in stages
    assert not any("cached" in line for line in logs)
    # the suite times 3 calls per chunk at batch 1: said once, before anything ran
    assert logs[0].startswith("timing of profile smoke: 3 timed calls per chunk (iterations 6 "
                              "/ rounds 2) understate speedups"), logs
    assert sum(line.startswith("timing of profile") for line in logs) == 1
    # weight-level only: the baseline row measures the baseline entry itself
    assert sum(s.endswith(": compress") for s in stages) == 1
    assert not (base / "sentinel").exists()
    assert cache.read_entry(base, print) is not None


# ---- every method's cached model comes back identical --------------------------------------

METHOD_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("lenet-5", "baseline", {}),
    ("lenet-5", "weight-level", {"sparsity": 0.5}),
    ("lenet-5", "l1-filter", {"ratio": 0.5}),
    ("lenet-5", "fpgm", {"ratio": 0.3}),
    ("lenet-5", "low-rank", {"mode": "channel"}),
    ("lenet-5", "low-rank", {"mode": "spatial", "rank_ratio": 0.3}),
    ("lenet-5", "weight-sharing", {"bits": 3}),
    ("lenet-5", "kd", {"student": "lenet-300-100", "epochs": 0.2}),
    ("lenet-5", "fitnets", {"student": "lenet-5", "hint": "conv2", "epochs": 0.2}),
    ("lenet-5", "scratch", {"student": "lenet-300-100", "epochs": 0.2}),
    ("lenet-5", "int8-ptq", {"calibration": 32}),
    ("lenet-5", "qat", {"epochs": 0.2, "calibration": 32}),
    ("lenet-5", "pipeline", {"steps": ["l1-filter:ratio=0.5", "int8-ptq:calibration=16"]}),
    ("lenet-5", "pipeline", {"steps": ["kd:student=lenet-300-100,epochs=0.2", "low-rank"]}),
    ("resnet-8", "l1-filter", {"ratio": 0.5}),
    ("resnet-8", "low-rank", {}),
    ("resnet-8", "kd", {"student": "resnet-8", "epochs": 0.2}),
]


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A runner on tiny data and its trained baselines (trained once, on demand)."""
    work = tmp_path_factory.mktemp("rebuild")
    data = work / "data"
    write_mnist_like(data / "MNIST" / "raw", n_train=256, n_test=64)
    (work / "suite.toml").write_text(SUITE.replace('models = ["lenet-5"]',
                                                   'models = ["lenet-5", "resnet-8"]'))
    logs: list[str] = []
    runner = Runner(RunOptions(suite=suites.load(str(work / "suite.toml")), profile="smoke",
                               targets=["torch-cpu"], store=work / "s.db",
                               cache_dir=work / "cache", data_dir=data),
                    Events(log=logs.append))
    return {"runner": runner, "baselines": {}, "logs": logs}


def _outputs(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return module.eval()(x)


@pytest.mark.parametrize(("model", "method", "config"), METHOD_CASES,
                         ids=[f"{m}-{k}-{i}" for i, (m, k, _) in enumerate(METHOD_CASES)])
def test_the_rebuilt_model_equals_the_original(bench: dict[str, Any], model: str, method: str,
                                               config: dict[str, Any]) -> None:
    from harness.registry import MODELS

    runner: Runner = bench["runner"]
    train, test = runner.load_data()
    spec = MODELS.get(model)
    if model not in bench["baselines"]:
        bench["baselines"][model] = runner._baseline(spec, train, test)
    baseline, top1 = bench["baselines"][model]
    run = MethodRun(method, config)
    made, accs = runner._compress(spec, run, baseline, top1, train, test)
    folder = runner.o.cache_dir / "compressed" / slug(
        f"{model}-{method}-{runner.compressed_key(model, run)}")
    assert (folder / cache.META).exists(), bench["logs"][-3:]  # stored, not declined
    hit = runner._cached(spec, run, folder)
    assert hit is not None, bench["logs"][-3:]
    got, got_accs = hit
    assert got_accs == json.loads(json.dumps(accs))
    shape = tuple(runner.dataset.input_shape)
    assert modeldata.differences(made.module, got.module, shape) is None
    x, _ = next(iter(torch.utils.data.DataLoader(test, batch_size=16)))
    assert torch.equal(_outputs(made.module, x), _outputs(got.module, x))
    assert set(got.artifacts) == set(made.artifacts)
    for target, art in made.artifacts.items():
        back = got.artifacts[target]
        assert (back.path is None) == (art.path is None)
        if art.path is not None:
            assert Path(back.path).read_bytes() == Path(art.path).read_bytes()
        if art.module is not None:  # the torch.ao INT8 module, rebuilt from its tensors
            assert torch.equal(_outputs(art.module, x), _outputs(back.module, x)), target
    assert (got.onnx_path is None) == (made.onnx_path is None)


def test_structure_changes_refuse_what_they_cannot_express() -> None:
    class Custom(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    base = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    changed = torch.nn.Sequential(torch.nn.Linear(4, 2), Custom())
    with pytest.raises(modeldata.NotRebuildable, match="Custom"):
        modeldata.structure_changes(base, changed)
    with pytest.raises(modeldata.NotRebuildable, match="unknown module type"):
        modeldata.apply_changes(base, {"0": {"type": "os.system", "args": {}}})
    with pytest.raises(modeldata.NotRebuildable, match="arguments"):
        modeldata.apply_changes(base, {"0": {"type": "Linear", "args": {"in_features": 1}}})


# ---- names become paths only through slug() ----------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", "../../x", "/etc/passwd", "a/b", "a\\b", "",
                                  "résumé", "日本", "x" * 400, ".hidden", "nul\x00byte",
                                  "-rf", "a b", "C:\\x"])
def test_slug_neutralises_path_like_names(name: str, tmp_path: Path) -> None:
    s = slug(name)
    assert s and len(s) <= 96
    assert set(s) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    assert not s.startswith(".")
    assert (tmp_path / s).resolve().parent == tmp_path.resolve()
    assert slug(s) == s  # a slug is its own slug
    if s != name:
        assert s.endswith(hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8])


def test_slug_keeps_clean_names_and_separates_changed_ones() -> None:
    assert slug("lenet-5-weight-level-0123abcd") == "lenet-5-weight-level-0123abcd"
    assert slug("fashion-mnist_v1.2") == "fashion-mnist_v1.2"
    assert slug("a/b") != slug("a_b") and slug("a/b") != slug("a:b")


@pytest.mark.parametrize(("model", "method", "config"), [
    ("yolov2-tiny", "l1-filter", {"ratio": 0.5}),
    ("yolov2-tiny", "low-rank", {"layers": ("features.2.0", "features.4.0")}),  # small SVDs
    pytest.param("ssdlite-mobilenet-v3", "l1-filter", {"ratio": 0.5}, marks=pytest.mark.slow),
    pytest.param("fasterrcnn-mobilenet-v3-fpn", "fpgm", {"ratio": 0.3},
                 marks=pytest.mark.slow),
])
def test_detectors_rebuild_from_data(model: str, method: str, config: dict[str, Any]) -> None:
    """Filter pruning inside torchvision's blocks (depthwise groups, squeeze-excite, heads)
    and factorized detector convs come back bit for bit from JSON + safetensors; so does the
    torch.ao INT8 module of a pruned YOLO."""
    import copy

    import numpy as np

    from harness.api import Context, build_model
    from harness.methods._quant import torch_x86
    from harness.registry import METHODS, MODELS

    shape = (3, 64, 64) if model == "yolov2-tiny" else (1, 96, 96)
    spec = MODELS.get(model)
    cls = METHODS.get(method)
    comp = cls().apply(copy.deepcopy(build_model(spec, 3, shape)).eval(), cls.Config(**config),
                       Context(None, None, 3, shape))
    pruned = comp.model.eval()
    changes = modeldata.structure_changes(build_model(spec, 3, shape), pruned)
    assert changes  # the method did change the structure
    weights = modeldata.state_bytes(pruned)
    rebuilt = modeldata.apply_changes(build_model(spec, 3, shape), json.loads(json.dumps(changes)))
    modeldata.load_state(rebuilt, weights)
    assert modeldata.differences(pruned, rebuilt, shape) is None
    if model == "yolov2-tiny" and method == "l1-filter":
        calib = np.random.default_rng(0).standard_normal((8, *shape)).astype(np.float32)
        int8 = torch_x86(pruned, calib).module
        back = modeldata.load_state(modeldata.int8_template(rebuilt, shape),
                                    modeldata.state_bytes(int8))
        assert modeldata.differences(int8, back, shape) is None


def test_a_cache_entry_naming_a_model_by_reference_runs_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An architecture record may name a registered model or one the suite names; any other
    `module:callable` would be imported and called to "rebuild" it. A forged entry (valid
    hashes) naming a planted module, or a stdlib callable with a side effect, is a cache miss
    that imported and called nothing."""
    import sys

    from conftest import tiny_suite
    from harness.runner import ARCH, CACHE_LAYOUT, WEIGHTS

    planted = tmp_path / "mods"
    planted.mkdir()
    (planted / "planted_cache_mod.py").write_text(
        "import pathlib\npathlib.Path(__file__).with_name('IMPORTED').touch()\n"
        "def build(*a, **k):\n    pathlib.Path(__file__).with_name('CALLED').touch()\n")
    monkeypatch.syspath_prepend(str(planted))
    made = tmp_path / "made"
    made.mkdir()
    monkeypatch.setenv("TMPDIR", str(made))
    monkeypatch.setattr("tempfile.tempdir", None)
    logs: list[str] = []
    runner = Runner(RunOptions(suite=suites.load(str(tiny_suite(tmp_path))), profile="smoke",
                               targets=["null"], store=tmp_path / "s.db",
                               cache_dir=tmp_path / "cache"), Events(log=logs.append))
    spec = type("Spec", (), {"name": "lenet-300-100"})()
    for i, ref in enumerate(("planted_cache_mod:build", "tempfile:mkdtemp")):
        folder = tmp_path / "cache" / "compressed" / f"forged-{i}"
        cache.write_entry(folder, {"layout": CACHE_LAYOUT, "artifacts": {}, "onnx": False,
                                   "metrics": {}, "accs": {}},
                          {ARCH: json.dumps({"format": 1, "model": ref, "options": False,
                                             "changes": {}}).encode(), WEIGHTS: b"x"})
        assert runner._cached(spec, MethodRun("l1-filter", {"ratio": 0.5}), folder) is None
        assert "neither registered nor named by this suite" in logs[-1], logs
    assert "planted_cache_mod" not in sys.modules
    assert sorted(p.name for p in planted.iterdir()) == ["planted_cache_mod.py"]
    assert list(made.iterdir()) == []  # mkdtemp was never called
    # what the suite names (its models, a method's option such as a student) stays buildable
    assert runner._may_build("lenet-300-100") and runner._may_build("resnet-20")
    assert not runner._may_build("tempfile:mkdtemp")


def test_a_name_reached_through_a_linked_folder_is_refused(tmp_path: Path) -> None:
    """`d/w.bin` where `d` links out of the entry: the hash matches the file outside, yet the
    entry is refused (a name is never followed out of the entry's folder)."""
    import os

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "w.bin").write_bytes(b"elsewhere")
    folder = tmp_path / "compressed" / "e"
    folder.mkdir(parents=True)
    os.symlink(outside, folder / "d")
    (folder / cache.META).write_text(json.dumps(cache.seal({"format": cache.FORMAT, "data": {},
                                                            "files": {"d/w.bin": {
        "sha256": hashlib.sha256(b"elsewhere").hexdigest(), "size": 9}}})))
    logs: list[str] = []
    assert cache.read_entry(folder, logs.append) is None
    assert "reached through a link" in logs[-1], logs
    assert cache.entry_files(folder) == []  # nor is it listed when an entry is written


def test_a_changed_digit_in_meta_json_is_a_bad_entry_not_a_wrong_number(pristine: Filled,
                                                                        tmp_path: Path) -> None:
    """meta.json's data (metrics, accuracies) goes straight into a row: a same-length edit
    that leaves valid JSON (top-1 1.0 -> 0.0, a count's first digit) is refused by the
    sha256 meta.json holds of itself, and the entry is discarded with one line."""
    _, _, cache_dir, _ = pristine
    folder = tmp_path / "e" / entry(cache_dir, "weight-level").name
    shutil.copytree(entry(cache_dir, "weight-level"), folder)
    text = (folder / cache.META).read_text()
    accs = json.loads(text)["data"]["accs"]
    key = next(k for k, v in accs.items() if isinstance(v, float))
    old = json.dumps({key: accs[key]})[1:-1]
    new = old[:-1] + ("7" if old[-1] != "7" else "8")  # one digit of the accuracy
    assert len(new) == len(old) and text.count(old) == 1
    (folder / cache.META).write_text(text.replace(old, new))
    json.loads((folder / cache.META).read_text())  # still valid JSON
    logs: list[str] = []
    assert cache.read_entry(folder, logs.append) is None
    assert len(logs) == 1 and "does not match its own sha256" in logs[0], logs
    assert not folder.exists()


def test_an_entry_folder_that_is_a_link_is_removed_never_followed(pristine: Filled,
                                                                  tmp_path: Path) -> None:
    """An entry's folder linked elsewhere: a valid entry behind the link, or a folder of
    someone's files, or nothing (dangling). Each is a miss whose link is removed; nothing
    behind it is read as an entry, deleted or written."""
    import os

    _, _, cache_dir, _ = pristine
    good = tmp_path / "good"
    shutil.copytree(entry(cache_dir, "weight-level"), good)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("x")
    (victim / cache.META).write_text("{}")
    for target in (good, victim, tmp_path / "nothing"):
        link = tmp_path / "compressed" / "e"
        link.parent.mkdir(exist_ok=True)
        os.symlink(target, link)
        logs: list[str] = []
        assert cache.read_entry(link, logs.append) is None
        assert len(logs) == 1 and "folder is a link" in logs[0], logs
        assert not link.exists() and not link.is_symlink()
        cache.discard(link)  # nothing left to remove: no error either
    assert sorted(p.name for p in victim.iterdir()) == [cache.META, "notes.txt"]
    assert cache.read_entry(good, print) is not None  # the linked entry itself is untouched


@pytest.mark.parametrize("plant", ["nested", "folder"])
def test_a_planted_meta_json_is_a_miss_never_a_crash(tmp_path: Path, plant: str) -> None:
    """meta.json nested 200,000 lists deep (json's RecursionError), or a folder in its
    place: the entry is discarded with one line, and the next write makes a good one."""
    folder = tmp_path / "compressed" / "e"
    folder.mkdir(parents=True)
    (folder / "w.bin").write_bytes(b"w")
    if plant == "nested":
        (folder / cache.META).write_text("[" * 200_000)
    else:
        (folder / cache.META).mkdir()
        (folder / cache.META / "x").write_text("x")
    logs: list[str] = []
    assert cache.read_entry(folder, logs.append) is None
    assert len(logs) == 1 and "discarding" in logs[0], logs
    assert not folder.exists()
    cache.write_entry(folder, {"k": 1}, {"w.bin": b"w"})
    assert cache.read_entry(folder, logs.append).data == {"k": 1}


def test_a_garbled_export_sidecar_means_export_again(tmp_path: Path) -> None:
    """A stored export's sha256 sidecar with a byte that is not UTF-8 is damaged like a
    wrong hash: both files are removed and the caller exports again (it used to raise
    UnicodeDecodeError in every cell of the model, run after run)."""
    from harness import export

    kept = tmp_path / "x.onnx"
    kept.write_bytes(b"onnx")
    side = kept.with_suffix(".sha256")
    side.write_text(hashlib.sha256(b"onnx").hexdigest())
    assert export._verified(kept)
    side.write_bytes(b"\xff" + side.read_bytes()[1:])
    assert not export._verified(kept)
    assert not kept.exists() and not side.exists()


def test_the_baseline_key_holds_what_the_images_are(tmp_path: Path) -> None:
    """Another copy of the data (here 256 training images where the other copy has 512: a
    subset) keys another baseline, so a cached one trained on different images is never
    reused; the same files at another path key alike (a Ray node's own copy)."""
    from conftest import tiny_suite

    def key(data: Path) -> str:
        return Runner(RunOptions(suite=suites.load(str(tiny_suite(tmp_path))), profile="smoke",
                                 targets=["null"], store=tmp_path / "s.db",
                                 cache_dir=tmp_path / "cache", data_dir=data)
                      ).baseline_key("lenet-300-100")

    write_mnist_like(tmp_path / "a" / "MNIST" / "raw")
    write_mnist_like(tmp_path / "subset" / "MNIST" / "raw", n_train=256)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    assert key(tmp_path / "a") == key(tmp_path / "copy")
    assert key(tmp_path / "a") != key(tmp_path / "subset")


def test_force_waits_for_an_entry_in_use_then_gives_up_in_one_line(tmp_path: Path) -> None:
    """Another process uses an entry (`cache.use`, a shared lock): `claim` (what `--force`
    takes before deleting it) waits, says so once, and after `wait_s` raises a CacheError
    naming the entry; once that process is gone it is taken at once."""
    import time

    folder = tmp_path / "compressed" / "e"
    cache.write_entry(folder, {"k": 1}, {"w.bin": b"w"})
    holder = hold_entry(folder)
    try:
        logs: list[str] = []
        t0 = time.monotonic()
        with pytest.raises(cache.CacheError, match="another sweep still uses compressed/e"):
            cache.claim(folder, logs.append, wait_s=0.5)
        assert 0.5 <= time.monotonic() - t0 < 5
        assert logs == ["cache: --force waits for another sweep using compressed/e"]
    finally:
        holder.kill()
        holder.wait()
    cache.claim(folder, logs.append, wait_s=5)  # the holder is gone: taken
    cache.use(folder, logs.append)  # and shared again by its claimant
    cache.release(folder)


def test_a_claim_that_waits_keeps_this_processs_own_hold(tmp_path: Path) -> None:
    """This process uses an entry and another process does too: a `claim` here that waits and
    gives up must leave this process's shared lock in place (with `flock`, Linux dropped it
    on the first failed try), so a third process's `--force` still waits for it after the
    other is gone; once this process lets go, the third takes it."""
    import subprocess
    import sys

    folder = tmp_path / "compressed" / "e"
    cache.write_entry(folder, {"k": 1}, {"w.bin": b"w"})
    code = ("import sys; from pathlib import Path; from harness import cache\n"
            "try:\n    cache.claim(Path(sys.argv[1]), print, wait_s=0.5)\n"
            "except cache.CacheError:\n    print('waited'); sys.exit(3)\nprint('taken')")

    def third_claims() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True,
                              text=True, timeout=60)

    cache.use(folder, print)
    holder = hold_entry(folder)
    try:
        with pytest.raises(cache.CacheError):
            cache.claim(folder, lambda _: None, wait_s=0.5)
    finally:
        holder.kill()
        holder.wait()
    try:
        res = third_claims()
        assert res.returncode == 3 and "waited" in res.stdout, res.stdout + res.stderr
    finally:
        cache.release(folder)
    res = third_claims()
    assert res.returncode == 0 and "taken" in res.stdout, res.stdout + res.stderr


def test_an_entry_named_by_two_paths_is_held_once(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A relative cache dir and a link to it name one entry: this process opens its in-use
    lock file once (a second descriptor, closed on release, would drop the first's locks),
    and letting go through either name lets go."""
    import os

    monkeypatch.chdir(tmp_path)
    folder = Path("cache") / "compressed" / "e"
    cache.write_entry(folder, {"k": 1}, {"w.bin": b"w"})
    os.symlink(tmp_path / "cache", tmp_path / "link")
    cache.use(folder, print)
    try:
        other = tmp_path / "link" / "compressed" / "e"
        assert cache.held(other)
        cache.use(other, print)
        assert cache._in_use(other) is cache._in_use(folder)
    finally:
        cache.release(tmp_path / "link" / "compressed" / "e")
    assert not cache.held(folder)


def test_a_replaced_entry_is_dropped_from_memory(tmp_path: Path) -> None:
    """Ray's object-store mode replaced an entry under a worker's Runner (`forget`): the
    baseline or compressed model it held from the older copy leaves memory, others stay."""
    from conftest import tiny_suite

    runner = Runner(RunOptions(suite=suites.load(str(tiny_suite(tmp_path))), profile="smoke",
                               targets=["null"], store=tmp_path / "s.db",
                               cache_dir=tmp_path / "cache", data_dir=tmp_path))
    base = runner.baseline_folder("lenet-300-100")
    other = runner.baseline_folder("lenet-5")
    runner._baselines = {"lenet-300-100": "old", "lenet-5": "kept"}  # type: ignore[dict-item]
    runner._last = (("lenet-5", "k", tmp_path / "cache" / "compressed" / "c"), "model")  # type: ignore[assignment]
    runner._used = {base, other}
    runner.forget(base)
    assert runner._baselines == {"lenet-5": "kept"} and runner._last is not None
    assert runner._used == {other}
    runner.forget(tmp_path / "cache" / "compressed" / "c")
    assert runner._last is None and runner._baselines == {"lenet-5": "kept"}
