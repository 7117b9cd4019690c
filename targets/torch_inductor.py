"""`torch-inductor`: the module compiled by torch.compile (Inductor, default mode, static shapes)
on the CPU.

Compilation is part of `prepare`: a session is handed back only after the calls that trigger
compilation, and their seconds are reported apart (`runtime_info`, stored per batch size in the
row's `runtime_settings`), so neither the first-call time nor any timed sample pays for it.
Compiled graphs are cached per process, per module, thread count and batch size: the runner
prepares the same baseline module for several cells and batch sizes, and Inductor's compile
(seconds to minutes) would otherwise dominate a sweep.

INT8: the torch path to INT8 Inductor kernels is PT2E quantization (`prepare_pt2e` with the
`X86InductorQuantizer`); torch 2.14 no longer ships it (it moved to torchao, not a dependency
here), so this target runs fp32 only and `int8_unsupported()` says why; the INT8 methods
record that reason for this target, and the cell's error carries it.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import time
from collections import OrderedDict
from typing import Any, ClassVar

import numpy as np
import torch

from harness.api import Artifact
from harness.registry import TARGETS
from harness.targets._common import dist_version

WARMUP_CALLS = 2  # calls after the compiling one: a guard failure would recompile here, not later
RECOMPILE_LIMIT = 256  # compiled graphs per forward code object (Dynamo's default is 8)

# id(module) -> (module, {(threads, batch): (compiled callable, compile seconds)}), the most
# recently prepared modules last. Bounded rather than weak: a compiled module holds its module,
# so a weak key would never be released; a sweep prepares a baseline and one cell at a time.
CACHED_MODULES = 4
_COMPILED: OrderedDict[int, tuple[torch.nn.Module, dict[tuple[int, int], tuple[Any, float]]]]
_COMPILED = OrderedDict()


def _graphs(module: torch.nn.Module) -> dict[tuple[int, int], tuple[Any, float]]:
    """The compiled graphs of `module` (identity, not equality), kept in a small LRU."""
    entry = _COMPILED.get(id(module))
    if entry is None or entry[0] is not module:
        entry = (module, {})
        _COMPILED[id(module)] = entry
    _COMPILED.move_to_end(id(module))
    while len(_COMPILED) > CACHED_MODULES:
        _COMPILED.popitem(last=False)
    return entry[1]


def int8_unsupported() -> str | None:
    """Why this target cannot run INT8 here (None if a PT2E x86 Inductor path exists)."""
    if (importlib.util.find_spec("torch.ao.quantization.quantize_pt2e") is None
            and importlib.util.find_spec("torchao") is None):
        return (f"torch-inductor runs fp32 only: torch {dist_version('torch')} has no PT2E "
                "quantization (torch.ao.quantization.quantize_pt2e moved to torchao, which is "
                "not installed)")
    return ("torch-inductor runs fp32 only: PT2E x86 Inductor INT8 is not wired into this "
            "harness yet")


def cxx() -> str | None:
    """The C++ compiler Inductor's CPU backend builds its kernels with (None if missing)."""
    from torch._inductor import cpp_builder

    try:
        name = cpp_builder.get_cpp_compiler()
    except Exception:  # its search raises when no compiler is found
        return None
    return shutil.which(name) and name


def _raise_recompile_limit() -> None:
    """Dynamo keeps one list of compiled graphs per code object, shared by every instance of a
    class (all of a sweep's pruned LeNet5s, at each batch size); past its limit (8) it would
    silently run eager. The limit is raised, and reaching it made an error. Set for the
    process, not patched around the compile: Dynamo's guards include its config, so a patch
    would recompile on the first call after it (into first_call_ms)."""
    cfg = torch._dynamo.config
    cfg.recompile_limit = max(cfg.recompile_limit, RECOMPILE_LIMIT)
    cfg.accumulated_recompile_limit = max(cfg.accumulated_recompile_limit, 4 * RECOMPILE_LIMIT)
    cfg.fail_on_recompile_limit_hit = True


class InductorSession:
    """A compiled module at one batch size. `runtime_info` is what preparing it cost."""

    precision = "fp32"

    def __init__(self, compiled: Any, compile_s: float, reused: bool) -> None:
        self.compiled = compiled
        self.runtime_info = {"compile_s": round(compile_s, 3), "compile_reused": reused}

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            out = self.compiled(torch.from_numpy(batch))
        return [t.numpy() for t in (out if isinstance(out, tuple | list) else [out])]


@TARGETS.register()
class TorchInductor:
    """torch.compile (Inductor C++ kernels, static shapes) on the CPU; compile timed apart; fp32."""

    name: ClassVar[str] = "torch-inductor"
    scores_accuracy: ClassVar[bool] = True
    session_threads: ClassVar[bool] = False  # the process's pool; and a compile per round

    def available(self) -> str | None:
        """Cheap (`harness list` asks every target): is a C++ compiler on PATH where Inductor
        looks ($CXX, else g++). `prepare` makes the full checks (Dynamo's platform support,
        Inductor's own compiler search) before compiling."""
        if shutil.which(os.environ.get("CXX") or "g++") is None:
            return "no C++ compiler for Inductor's CPU kernels (apt-get install g++, or set CXX)"
        return None

    @staticmethod
    @functools.cache
    def _unusable() -> str | None:
        """Once per process: the checks that import Dynamo and Inductor (seconds)."""
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return "torch.compile is not supported on this Python/platform"
        if cxx() is None:
            return "Inductor finds no C++ compiler for its CPU kernels (apt-get install g++)"
        return None

    def versions(self) -> dict[str, str]:
        """torch, Inductor's CPU code generator (`cpp`: C++ kernels built by the compiler
        named next; `triton` would not use it) and that compiler's version."""
        import torch._inductor.config as inductor_config

        compiler = cxx()
        version = "missing"
        if compiler:
            from torch._inductor import cpp_builder

            try:
                first_line = cpp_builder._compiler_version_first_line  # type: ignore[attr-defined]
                version = first_line(compiler)
            except Exception:
                version = compiler
        return {"torch": dist_version("torch"),
                "inductor_cpu_backend": str(inductor_config.cpu_backend),
                "inductor_cxx": str(version)}

    def prepare(self, artifact: Artifact, batch: int, threads: int,
                precision: str) -> InductorSession:
        if artifact.module is None:
            raise ValueError("torch-inductor needs the nn.Module; this artifact has only a file")
        if precision != "fp32":
            raise ValueError(f"{int8_unsupported()} (asked for {precision})")
        why = self.available() or self._unusable()
        if why:
            raise ValueError(f"torch-inductor is unavailable: {why}")
        torch.set_num_threads(threads)  # Inductor's OpenMP kernels take it at compile time
        module = artifact.module.eval()
        graphs = _graphs(module)
        key = (threads, batch)
        if key in graphs:
            compiled, seconds = graphs[key]
            return InductorSession(compiled, seconds, reused=True)
        # one compiled callable per module: another batch size adds a graph to its cache
        compiled = next((c for c, _ in graphs.values()), None)
        if compiled is None:
            compiled = torch.compile(module, backend="inductor", dynamic=False)
        _raise_recompile_limit()
        # through the session's own run(): the guards Dynamo installs (e.g. inference tensors
        # from numpy under inference_mode) are exactly those of the timed calls
        sess = InductorSession(compiled, 0.0, reused=False)
        x = np.zeros((batch, *artifact.input_shape), np.float32)
        t0 = time.perf_counter()
        for _ in range(1 + WARMUP_CALLS):
            sess.run(x)
        seconds = time.perf_counter() - t0
        graphs[key] = (compiled, seconds)
        return InductorSession(compiled, seconds, reused=False)
