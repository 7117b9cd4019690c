"""Machine and software facts recorded with every run (asv / pytest-benchmark style)."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

RUNTIMES = ("torch", "torchvision", "onnx", "onnxruntime", "openvino", "nncf", "torch-pruning",
            "numpy")
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512vnni", "avx512_bf16", "avx_vnni",
             "amx_bf16", "amx_int8", "amx_tile", "fma")


def versions() -> dict[str, str]:
    """Installed versions, read from package metadata: nothing is imported."""
    out = {"python": platform.python_version()}
    for dist in RUNTIMES:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def machine() -> dict[str, Any]:
    """The machine's facts (a fresh dict; read once per process: py-cpuinfo takes ~1 s)."""
    return dict(_machine())


@functools.lru_cache(maxsize=1)
def _machine() -> dict[str, Any]:
    import psutil

    try:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
    except Exception:  # py-cpuinfo can fail in odd sandboxes; the rest still stands
        info = {}
    flags = set(info.get("flags", []))
    return {
        "cpu": info.get("brand_raw") or platform.processor() or "unknown",
        "arch": platform.machine(),
        "isa": sorted(f for f in ISA_FLAGS if f in flags),
        "cores_physical": psutil.cpu_count(logical=False),
        "cores_logical": psutil.cpu_count(logical=True),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": platform.platform(),
        "hostname": platform.node(),
    }


def ort_reduce_range() -> bool:
    """Should ONNX Runtime's u8/s8 INT8 weights use 7 bits here? On x86 without VNNI its u8/s8
    kernels multiply with VPMADDUBSW, whose int16 pair sums saturate; onnxruntime's
    quantization docs recommend `reduce_range` there. Measured: an untrained MobileNetV3-Small
    quantized on an AVX2-only EPYC tracked fp32 at correlation 0.51 with 8-bit weights and
    above 0.6 with 7-bit ones (tests/test_generic_pruning.py). VNNI (and non-x86) machines keep
    8 bits."""
    m = _machine()
    if m["arch"] not in ("x86_64", "AMD64", "i386", "i686"):
        return False
    return not any("vnni" in f or f.startswith("amx") for f in m["isa"])


# the packages whose source makes the numbers (pyproject's package list, suites aside)
CODE_PACKAGES = ("harness", "harness.executors", "harness.methods", "harness.targets",
                 "harness.reports", "harness.benchmarks", "harness.benchmarks.models",
                 "harness.benchmarks.datasets")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of this installation's harness source (every .py of its packages): a Ray
    cluster whose nodes import other code than the driver would store rows made by that code
    under the driver's cell keys (which carry only the package version)."""
    import hashlib
    import importlib.util

    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        spec = importlib.util.find_spec(pkg)
        for loc in (spec.submodule_search_locations or []) if spec else []:
            for f in sorted(Path(loc).glob("*.py")):
                h.update(f"{pkg}/{f.name}\n".encode())
                h.update(f.read_bytes())
    return h.hexdigest()[:16]


def git_commit() -> str | None:
    """The commit of the checkout the harness runs from, with '+dirty' when it has changes."""
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("+dirty" if dirty else "") if sha else None
