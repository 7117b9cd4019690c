"""`harness plan`'s estimates: the makespan and critical path of a plan on N workers plus
timing nodes, measure steps costed by calls on their own runtime, and the command itself."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import DEFAULT_METHODS, run_cli, tiny_suite
from harness import costs
from harness.timing import REOPEN_BELOW_MS
from harness import suite as suites
from harness.api import Compressed, Context
from harness.registry import METHODS
from harness.plan import Plan, Step
from harness.runner import RunOptions, Runner
from harness.suite import MethodRun


def _plan() -> tuple[Plan, dict[str, float]]:
    """One baseline (10 s), three compressions (5 s each) after it, and a measurement (1 s)
    of each compression after it."""
    steps = [Step("baseline", "m", "b", MethodRun("baseline"))]
    secs = {"b": 10.0}
    for i in range(3):
        run = MethodRun("l1-filter", {"ratio": i / 10})
        steps.append(Step("compress", "m", f"c{i}", run, needs=("b",)))
        steps.append(Step("measure", "m", f"t{i}", run, "onnxruntime-cpu", needs=("b", f"c{i}")))
        secs[f"c{i}"], secs[f"t{i}"] = 5.0, 1.0
    return Plan(tuple(steps), (), {s.key: s for s in steps}), secs


def test_makespan_and_critical_path_of_a_known_plan() -> None:
    plan, secs = _plan()
    # one worker: 10 + 3 x 5 of compute; the last measurement waits for the last compression
    assert costs.makespan(plan, secs, 1) == pytest.approx(26.0)
    # four workers: the compressions run together (15 s), then the one timing node takes the
    # three measurements in turn: 18 s, past the critical path of 16 s
    assert costs.makespan(plan, secs, 4) == pytest.approx(18.0)
    assert costs.critical_path(plan, secs) == pytest.approx(16.0)
    # a second timing node takes two measurements at once
    assert costs.makespan(plan, secs, 4, timing_nodes=2) == pytest.approx(17.0)
    # GPU workers: compute 5x faster (2 s + 1 s), measurements unchanged (they time CPU runtimes)
    assert costs.makespan(plan, secs, 4, train_speedup=5.0) == pytest.approx(6.0)
    assert costs.critical_path(plan, secs, 5.0) == pytest.approx(4.0)


@pytest.fixture()
def runner(tmp_path: Path) -> Runner:
    s = suites.load(str(tiny_suite(tmp_path, models='["lenet-5"]')))
    return Runner(RunOptions(suite=s, profile="smoke", targets=["onnxruntime-cpu"],
                             store=tmp_path / "r.db", cache_dir=tmp_path / "cache"))


def test_a_measure_step_is_costed_by_calls_on_its_own_runtime(runner: Runner) -> None:
    run = MethodRun("l1-filter", {"ratio": 0.5})
    on_ort = Step("measure", "lenet-5", "k1", run, "onnxruntime-cpu")
    on_ov = Step("measure", "lenet-5", "k2", run, "openvino-cpu")
    base = Step("baseline", "lenet-5", "b", MethodRun("baseline"))
    torch_calls, ort_calls = {1: 0.01, 8: 0.05}, {1: 0.002, 8: 0.01}
    c = costs.ModelCosts(0.1, torch_calls, 0.2, {"onnxruntime-cpu": ort_calls})
    as_if_torch_were_ort = costs.ModelCosts(0.1, ort_calls, 0.2)
    est = costs.step_seconds(runner, on_ort, {"lenet-5": c})
    assert est == pytest.approx(costs.step_seconds(runner, on_ort,
                                                   {"lenet-5": as_if_torch_were_ort}))
    # a target that could not be timed: torch's call stands in
    assert costs.step_seconds(runner, on_ov, {"lenet-5": c}) == pytest.approx(
        costs.step_seconds(runner, on_ov, {"lenet-5": costs.ModelCosts(0.1, torch_calls, 0.2)}))
    assert costs.step_seconds(runner, on_ov, {"lenet-5": c}) > est
    # training steps and their torch-side accuracy passes do not use the runtime's calls
    assert costs.step_seconds(runner, base, {"lenet-5": c}) == pytest.approx(
        costs.step_seconds(runner, base, {"lenet-5": costs.ModelCosts(0.1, torch_calls, 0.2)}))


def test_a_distillation_is_costed_by_its_students_step_and_the_teachers_forward(
        runner: Runner) -> None:
    """kd / fitnets train the student on the baseline's recipe, each step one student update
    plus one teacher forward; scratch is the student alone; an `epochs` override counts; a
    student that was not measured falls back to 1.3 teacher steps. Session 8: costing them by
    the teacher's step put the quick sweep's students at 87-113 s where they took 33-59 s."""
    teacher = costs.ModelCosts(1.0, {1: 0.01, 8: 0.05}, 0.2, teacher_forward_s=0.4)
    student = costs.ModelCosts(0.1, {1: 0.001, 8: 0.005}, 0.2)
    both = {"lenet-5": teacher, "lenet-300-100": student}
    prof = runner.profile
    steps = prof.train.epochs * -(-costs.train_size(runner, prof.train) // prof.train.batch_size)
    evals = 2 * -(-prof.eval_samples // 8)  # top-1 before and after, on the student

    def compress(method: str, **cfg: object) -> Step:
        return Step("compress", "lenet-5", method, MethodRun(method, {"student": "lenet-300-100",
                                                                      **cfg}))
    assert costs.step_seconds(runner, compress("kd"), both) == pytest.approx(
        steps * (0.1 + 0.4) + evals * 0.005 + 0.2)
    assert costs.step_seconds(runner, compress("scratch"), both) == pytest.approx(
        steps * 0.1 + evals * 0.005 + 0.2)
    assert costs.step_seconds(runner, compress("fitnets", epochs=1), both) == pytest.approx(
        1 * steps / prof.train.epochs * 0.5 + evals * 0.005 + 0.2)
    assert costs.step_seconds(runner, compress("kd"), {"lenet-5": teacher}) == pytest.approx(
        steps * 1.3 + evals * 0.05 + 0.2)
    plan = Plan((compress("kd"), compress("scratch"), Step("compress", "lenet-5", "l1",
                                                           MethodRun("l1-filter"))), (), {})
    assert costs.models_to_measure(["lenet-5"], plan) == ["lenet-5", "lenet-300-100"]


def test_measure_model_times_the_exported_network_on_the_runs_targets(runner: Runner) -> None:
    c = costs.measure_model(runner, "lenet-5")
    assert set(c.runtime_s) == {"onnxruntime-cpu"}
    assert set(c.runtime_s["onnxruntime-cpu"]) == {1, 8}
    assert all(0 < v < 1.0 for v in c.runtime_s["onnxruntime-cpu"].values())
    assert c.call_s("onnxruntime-cpu", 8) == c.runtime_s["onnxruntime-cpu"][8]
    assert c.call_s("openvino-cpu", 8) == c.forward_s[8]
    short = {b for b, v in c.runtime_s["onnxruntime-cpu"].items() if v * 1e3 < REOPEN_BELOW_MS}
    assert set(c.open_s.get("onnxruntime-cpu", {})) == short


def test_opening_a_session_is_timed_where_a_measurement_would_reopen_it(
        runner: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every call counted short (LeNet-5's are about at the threshold): each batch size's
    open is timed, on the runtime only."""
    monkeypatch.setattr(costs, "reopens", lambda target, cfg, call_s: True)
    c = costs.measure_model(runner, "lenet-5")
    assert set(c.open_s) == {"onnxruntime-cpu"} and set(c.open_s["onnxruntime-cpu"]) == {1, 8}
    assert all(0 < v < 5.0 for v in c.open_s["onnxruntime-cpu"].values())


def test_short_calls_cost_a_fresh_warmed_pair_of_sessions_every_round(runner: Runner) -> None:
    """Under timing.REOPEN_BELOW_MS a measure step opens and warms both sides again for every
    round after the first (timing.measure_pair); torch's targets never reopen."""
    run = MethodRun("l1-filter", {"ratio": 0.5})
    on_ort = Step("measure", "lenet-5", "k1", run, "onnxruntime-cpu")
    on_torch = Step("measure", "lenet-5", "k2", run, "torch-cpu")
    fast = {1: 0.00005, 8: 0.002}  # b=1 under REOPEN_BELOW_MS, b=8 over
    opened = costs.ModelCosts(0.1, fast, 0.2, {"onnxruntime-cpu": fast, "torch-cpu": fast},
                              open_s={"onnxruntime-cpu": {1: 0.01}, "torch-cpu": {1: 0.01}})
    unopened = dataclasses.replace(opened, open_s={})
    timing = runner.profile.timing
    assert timing.rounds > 1
    ort, torch_ = (costs.step_seconds(runner, on_ort, {"lenet-5": opened}),
                   costs.step_seconds(runner, on_torch, {"lenet-5": opened}))
    opens = (timing.rounds - 1) * 2 * 0.01
    warms = (timing.rounds - 1) * max(1, timing.warmup) * 2 * 0.00005
    assert ort == pytest.approx(torch_ + opens + warms)
    assert costs.step_seconds(runner, on_ort, {"lenet-5": unopened}) == pytest.approx(
        ort - opens)
    assert costs.step_seconds(runner, on_torch, {"lenet-5": unopened}) == pytest.approx(torch_)


@pytest.mark.slow
def test_harness_plan_prints_steps_costs_and_makespans(tmp_path: Path) -> None:
    """...and reads the store without changing it: an older schema stays as it is (a run
    would migrate it), no journal is left beside it."""
    import hashlib
    import sqlite3

    from harness.store import Store

    suite = tiny_suite(tmp_path, models='["lenet-5"]')
    db = tmp_path / "r.db"
    Store(db).close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    con.commit()
    con.close()
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    r = run_cli("plan", "--suite", str(suite), "--profile", "smoke", "--store",
                str(db), "--workers", "1", "--workers", "4", "--steps")
    assert r.returncode == 0, r.stderr[-2000:]
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("r.db")) == ["r.db"]
    out = " ".join(r.stdout.split())  # rich wraps long lines
    # each probed step says what it trains: the tiny recipe's half-epoch fine-tune of mnist
    assert re.search(r"compress lenet-5 l1-filter\[ratio=0.5\] \d\d:\d\d:\d\d trains "
                     r"469 x \d+ ms", out), out
    assert "tiny (smoke): 6 steps to run, 0 cells already stored" in out
    assert "baseline 1 steps (0 cached)" in out and "compress 2 steps (0 cached)" in out
    assert "measure 3 steps (0 cached)" in out
    assert "calls on onnxruntime-cpu: b=1" in out and "critical path:" in out
    assert "probing the training of 2 compress steps" in r.stderr and "not probed" not in r.stderr
    assert "1 workers + 1 timing node(s):" in out and "4 workers + 1 timing node(s):" in out
    assert "first check" not in out  # no early stop in this profile: one figure per kind


@pytest.mark.slow
@pytest.mark.parametrize("flags, said", [
    (["--workers", "4", "--workers", "0"], "--workers 0: a worker count is a whole number >= 1"),
    (["--workers", "-3"], "--workers -3"),
    (["--timing-nodes", "0"], "--timing-nodes 0: at least 1 node must time"),
    (["--gpu-speedup", "0"], "--gpu-speedup 0: a training speedup is a finite number > 0"),
    (["--gpu-speedup", "-1"], "--gpu-speedup -1"),
    (["--gpu-speedup", "nan"], "--gpu-speedup nan"),
])
def test_harness_plan_refuses_impossible_cluster_sizes_in_one_line(
        flags: list[str], said: str, tmp_path: Path) -> None:
    r = run_cli("plan", "--suite", "fashion-mnist-lenet", "--store", str(tmp_path / "r.db"),
                "--no-probe", *flags)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert said in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "r.db").exists()


def test_harness_plan_gives_the_early_stops_lower_end(tmp_path: Path) -> None:
    suite = tiny_suite(tmp_path, models='["lenet-5"]')
    suite.write_text(suite.read_text().replace(
        "rounds = 6, threads = 1 }", "rounds = 8, threads = 1, precision = 0.02, min_rounds = 6 }"))
    r = run_cli("plan", "--suite", str(suite), "--profile", "smoke", "--store",
                str(tmp_path / "r.db"), "--workers", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    out = " ".join(r.stdout.split())
    assert "if every pair stops at its first check, round 6)" in out


def test_the_early_stops_lower_end_costs_fewer_rounds(runner: Runner) -> None:
    """At its first check a measure step has run that many rounds of both sides' calls:
    the full estimate less the rounds it did not run."""
    step = Step("measure", "lenet-5", "k", MethodRun("l1-filter", {"ratio": 0.5}),
                "onnxruntime-cpu")
    ort = {1: 0.002, 8: 0.01}
    c = {"lenet-5": costs.ModelCosts(0.1, {1: 0.01, 8: 0.05}, 0.2, {"onnxruntime-cpu": ort})}
    timing = runner.profile.timing
    full = costs.step_seconds(runner, step, c)
    one = costs.step_seconds(runner, step, c, rounds=1)
    per = {b: costs.calls_per_round(timing.config(), ort[b], 2 * ort[b]) for b in ort}
    skipped = sum((timing.rounds - 1) * per[b] * 2 * ort[b] for b in ort)
    assert timing.rounds > 1 and full - one == pytest.approx(skipped)


@pytest.mark.slow
def test_harness_plan_warns_when_other_processes_load_the_machine(tmp_path: Path) -> None:
    """Two processes spinning on this machine's cores while `harness plan` measures: its
    per-step costs read high, and it says so (session 7 measured a ResNet-110 step 20x too
    slow under such load)."""
    suite = tiny_suite(tmp_path, models='["lenet-5"]')
    spin = [subprocess.Popen([sys.executable, "-c", "import time\nt = time.time() + 120\n"
                              "while time.time() < t: pass"]) for _ in range(os.cpu_count() or 2)]
    try:
        r = run_cli("plan", "--suite", str(suite), "--profile", "smoke", "--store",
                    str(tmp_path / "r.db"), "--workers", "1")
    finally:
        for p in spin:
            p.kill()
            p.wait()
    assert r.returncode == 0, r.stderr[-2000:]
    err = " ".join(r.stderr.split())
    assert "warning: other processes used" in err and "run `harness plan` on an idle" in err


SLOW_STEP_S = 0.03  # what the test method's constraint adds to every step it trains


class TwiceWithASlowConstraint:
    """A method that fine-tunes inside apply (a quarter of the recipe), then asks the runner
    for its fine-tune, both with a constraint that sleeps 30 ms after every step."""

    name = "probe-test-twice"
    version = "1"

    @dataclass(frozen=True)
    class Config:
        pass

    def apply(self, model: Any, cfg: Config, ctx: Context) -> Compressed:
        def slow(_: Any) -> None:
            time.sleep(SLOW_STEP_S)
        assert ctx.finetune is not None
        ctx.finetune(model, epochs=0.25, constraint=slow)
        return Compressed(model=model, constraint=slow)


class Broken(TwiceWithASlowConstraint):
    """A method that fails before it trains anything."""

    name = "probe-test-broken"

    def apply(self, model: Any, cfg: Any, ctx: Context) -> Compressed:
        raise RuntimeError("this method cannot run here")


def _compress(run: MethodRun, model: str = "lenet-5") -> Step:
    return Step("compress", model, run.label, run, needs=("b",))


def test_a_probe_times_each_training_loop_a_method_asks_for(runner: Runner) -> None:
    """The probe runs the method on an untrained copy and times every loop it trains, on
    what it trains (here: a constraint that adds 30 ms to each step), the runner's own
    fine-tune included; a method that trains nothing (INT8 PTQ) costs no training; the
    estimate of the step is the probe's. Session 9 (ResNet-56 quick, ORT): probed steps read
    15-65 s where they took 15-60 s; without the probe QAT read 21 s (took 37 s) and INT8 PTQ
    21 s (took 2 s)."""
    if "probe-test-twice" not in METHODS:
        METHODS.register()(TwiceWithASlowConstraint)
    prof = runner.profile
    per_epoch = -(-costs.train_size(runner, prof.finetune) // prof.finetune.batch_size)
    rng = torch.get_rng_state()
    twice = costs.probe_compress(runner, _compress(MethodRun("probe-test-twice")))
    assert torch.equal(torch.get_rng_state(), rng)  # the plan's process draws nothing
    assert [n for _, n in twice.trainings] == [round(0.25 * per_epoch),
                                               round(prof.finetune.epochs * per_epoch)]
    assert all(s >= SLOW_STEP_S for s, _ in twice.trainings)
    pruned = costs.probe_compress(runner, _compress(MethodRun("l1-filter", {"ratio": 0.5})))
    assert [n for _, n in pruned.trainings] == [round(prof.finetune.epochs * per_epoch)]
    assert all(s < SLOW_STEP_S for s, _ in pruned.trainings)  # lenet-5: a few ms a step
    assert costs.probe_compress(runner, _compress(MethodRun("int8-ptq"))).trainings == ()
    c = {"lenet-5": costs.ModelCosts(0.1, {1: 0.01, 8: 0.05}, 0.2)}
    step = _compress(MethodRun("probe-test-twice"))
    batches = -(-prof.eval_samples // 8)
    assert costs.step_seconds(runner, step, c, probes={step.key: twice}) == pytest.approx(
        sum(s * n for s, n in twice.trainings) + 2 * batches * twice.forward_s + twice.size_s
        + 0.2)


def test_a_probe_sizes_the_network_the_method_leaves(runner: Runner,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Sizing an export (zlib level 9) is timed on the pruned network itself: zlib takes 10x
    longer on a sparse network's zeros (a ResNet-18 at half sparsity: 20 s against 1.6 s
    dense), which is what the probe read 12-14% low on weight-level fine-tunes in session 9.
    INT8 methods size their toolchains' artifacts per target, not an fp32 export."""
    from harness import metrics

    sized: list[np.ndarray] = []
    real = metrics.byte_sizes

    def spy(data: bytes) -> tuple[int, int]:
        sized.append(np.frombuffer(data, dtype=np.float32))
        return real(data)

    monkeypatch.setattr(metrics, "byte_sizes", spy)
    sparse = costs.probe_compress(runner, _compress(MethodRun("weight-level", {"sparsity": 0.9})))
    assert len(sized) == 1 and sparse.size_s > 0
    weights = sum(p.numel() for p in runner._fresh("lenet-5").parameters())
    assert (sized[0] == 0).sum() >= 0.9 * 0.9 * weights  # the conv/linear weights, 90% zeros
    assert costs.probe_compress(runner, _compress(MethodRun("int8-ptq"))).size_s == 0.0
    assert len(sized) == 1


def test_a_distillation_probe_trains_the_student_on_the_baseline_recipe(runner: Runner) -> None:
    """kd trains the student (not the suite's model) for the baseline recipe's steps, its
    loss running the teacher too."""
    prof = runner.profile
    per_epoch = -(-costs.train_size(runner, prof.train) // prof.train.batch_size)
    kd = costs.probe_compress(runner, _compress(MethodRun("kd", {"student": "lenet-300-100"})))
    assert [n for _, n in kd.trainings] == [round(prof.train.epochs * per_epoch)]


def test_a_step_that_cannot_be_probed_is_named_and_costed_by_its_models_step(
        runner: Runner) -> None:
    if "probe-test-broken" not in METHODS:
        METHODS.register()(Broken)
    broken, fine = _compress(MethodRun("probe-test-broken")), _compress(MethodRun("int8-ptq"))
    cached = Step("compress", "lenet-5", "c", MethodRun("qat"), cached=True)
    probes, failed = costs.probe_all(runner, [broken, fine, cached])
    assert set(probes) == {fine.key}  # a cached step is not probed
    # nor one whose fine-tune is shorter than the probe's worth (469 steps here)
    runner.profile = dataclasses.replace(runner.profile, finetune=dataclasses.replace(
        runner.profile.finetune, train_samples=64 * (costs.PROBE_MIN_STEPS - 1)))
    assert not costs.worth_probing(runner, fine) and costs.probe_all(runner, [fine]) == ({}, [])
    assert len(failed) == 1 and failed[0].startswith(
        "compress lenet-5 probe-test-broken (RuntimeError: this method cannot run here")
    c = {"lenet-5": costs.ModelCosts(0.1, {1: 0.01, 8: 0.05}, 0.2)}
    assert costs.step_seconds(runner, broken, c, probes=probes) == pytest.approx(
        costs.step_seconds(runner, broken, c))


def test_a_detector_is_probed_on_synthetic_boxes_and_its_scoring_is_costed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A detector trains through its own loss on padded boxes: the probe, and the model's own
    training step, give it synthetic ones (the step once squared the outputs instead, which
    left out the loss's target assignment). Its scoring (decoding, NMS, mAP) is costed once per
    evaluation pass: session 9 on fashion-det quick, it was 2 of the 3.6 s of each torch-side
    pass, which the estimate left out (220 s estimated against 291 s measured)."""
    from test_detection import VOC_SUITE

    path = tmp_path / "voc.toml"
    path.write_text(VOC_SUITE)
    r = Runner(RunOptions(suite=suites.load(str(path)), profile="smoke",
                          targets=["onnxruntime-cpu"], store=tmp_path / "r.db",
                          cache_dir=tmp_path / "cache"))
    compress = _compress(MethodRun("l1-filter", {"ratio": 0.5}), "yolov2-tiny")
    probe = costs.probe_compress(r, compress)
    assert len(probe.trainings) == 1 and probe.trainings[0][0] > 0 and probe.passes == 2
    assert costs.probe_compress(r, _compress(MethodRun("int8-ptq"), "yolov2-tiny")).passes == 1
    detector = type(r._fresh("yolov2-tiny"))
    real_loss = detector.detection_loss

    boxes: list[tuple[int, ...]] = []

    def slow_loss(self: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        boxes.append(tuple(y.shape))
        time.sleep(0.05)
        return real_loss(self, x, y)

    monkeypatch.setattr(detector, "detection_loss", slow_loss)
    c = costs.measure_model(r, "yolov2-tiny")
    batch = r.profile.train.batch_size
    assert boxes and set(boxes) == {(batch, costs.SYNTHETIC_OBJECTS, 6)}
    assert c.train_step_s >= 0.05 and c.score_item_s > 0
    unscored = {"yolov2-tiny": dataclasses.replace(c, score_fixed_s=0.0, score_item_s=0.0)}
    scored = {"yolov2-tiny": c}
    one = c.score_s(r.profile.eval_samples or 10000)
    base = Step("baseline", "yolov2-tiny", "b", MethodRun("baseline"))
    measure = Step("measure", "yolov2-tiny", "t", compress.run, "onnxruntime-cpu")
    for step, passes, probes in ((base, 1, None), (measure, 1, None), (compress, 2, None),
                                 (compress, 2, {compress.key: probe})):
        assert (costs.step_seconds(r, step, scored, probes=probes)
                - costs.step_seconds(r, step, unscored, probes=probes)) == pytest.approx(
            passes * one)


def test_a_detectors_scoring_is_timed_on_its_cached_trained_baseline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring depends on a detector's weights (untrained, YOLOv2-tiny keeps nearly every box:
    3.5 s per 1000 images against about 2 s trained), so the plan scores the cached trained
    baseline where the cache holds a verified one, and reads the cache without changing it: a
    corrupted entry stays where it is for the run to reject."""
    from test_detection import VOC_SUITE

    from harness import cache, modeldata
    from harness.runner import WEIGHTS

    path = tmp_path / "voc.toml"
    path.write_text(VOC_SUITE)
    r = Runner(RunOptions(suite=suites.load(str(path)), profile="smoke",
                          targets=["onnxruntime-cpu"], store=tmp_path / "r.db",
                          cache_dir=tmp_path / "cache"))
    scored: list[torch.nn.Module] = []
    real = costs._scoring
    monkeypatch.setattr(costs, "_scoring", lambda runner, model, *a: (scored.append(model),
                                                                      real(runner, model, *a))[1])
    costs.measure_model(r, "yolov2-tiny")  # nothing cached: the untrained model
    trained = r._seeded("yolov2-tiny")
    with torch.no_grad():
        trained.head.bias.fill_(-30.0)  # "trained": no box clears the decoder's threshold
    folder = r.baseline_folder("yolov2-tiny")
    cache.write_entry(folder, {"model": "yolov2-tiny", "kind": "baseline"},
                      {WEIGHTS: modeldata.state_bytes(trained)}, include=[])
    costs.measure_model(r, "yolov2-tiny")
    assert not torch.equal(scored[0].head.bias, trained.head.bias)
    assert torch.equal(scored[1].head.bias, trained.head.bias)
    weights = folder / WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-8] + b"corrupt!")
    costs.measure_model(r, "yolov2-tiny")
    assert not torch.equal(scored[2].head.bias, trained.head.bias)
    assert (folder / cache.META).is_file() and weights.read_bytes().endswith(b"corrupt!")


def test_a_cell_two_method_entries_name_is_planned_once(tmp_path: Path) -> None:
    """Two [[methods]] entries that both give lenet-5 l1-filter 0.5 make one compress step
    and one measure step per target, not two (the second measurement of the same cell key
    would overwrite the first in the store)."""
    from harness import plan as plans
    from harness.cli import _EmptyStore

    methods = DEFAULT_METHODS + '''
[[methods]]
name = "l1-filter"
grid = { ratio = [0.5, 0.75] }
models = ["lenet-5"]
'''
    s = suites.load(str(tiny_suite(tmp_path, models='["lenet-300-100", "lenet-5"]',
                                   methods=methods)))
    r = Runner(RunOptions(suite=s, profile="smoke", targets=["onnxruntime-cpu"],
                          store=tmp_path / "r.db", cache_dir=tmp_path / "cache"))
    p = plans.build(r, _EmptyStore())
    keys = [st.key for st in p.steps]
    assert len(keys) == len(set(keys))
    lenet5 = [st.run.label for st in p.steps if st.kind == "measure" and st.model == "lenet-5"]
    assert sorted(lenet5) == ["baseline", "l1-filter[ratio=0.5]", "l1-filter[ratio=0.75]",
                              "weight-level[sparsity=0.5]"]
