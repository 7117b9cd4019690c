"""Never unpickle: no code of the project may load a file in a way that runs what the file
says (a cache entry, a checkpoint or a dataset can come from anyone). Read from the sources'
syntax trees, so a new `torch.load(...)` without `weights_only=True`, a `pickle.load(s)`, an
`np.load(..., allow_pickle=True)` or `torch.export.load` fails here before it ships."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "methods", "targets", "reports", "benchmarks", "scripts", "tests")


def _sources() -> list[Path]:
    return sorted(p for d in PACKAGES if (ROOT / d).is_dir() for p in (ROOT / d).rglob("*.py"))


def _dotted(node: ast.AST) -> str:
    """'torch.export.load' for the attribute chain of a call's function ('' if not a chain)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def unsafe_loads(source: str) -> list[str]:
    """The calls in `source` that may unpickle, as 'line: reason'."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        kw = {k.arg: k.value for k in node.keywords}
        if name == "torch.load":
            flag = kw.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                out.append(f"{node.lineno}: torch.load without weights_only=True")
        elif name in ("pickle.load", "pickle.loads", "torch.export.load", "dill.load"):
            out.append(f"{node.lineno}: {name}")
        elif name in ("np.load", "numpy.load"):
            flag = kw.get("allow_pickle")
            if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                out.append(f"{node.lineno}: {name} with allow_pickle")
    return out


@pytest.mark.parametrize(("code", "bad"), [
    ("torch.load(p)", True),
    ("torch.load(p, weights_only=False)", True),
    ("torch.load(p, map_location='cpu', weights_only=True)", False),
    ("pickle.loads(b)", True),
    ("np.load(p, allow_pickle=True)", True),
    ("np.load(p)", False),
    ("torch.export.load(p)", True),
    ("_BatchUnpickler(f).load()", False),  # a restricted Unpickler's own method
])
def test_the_check_tells_safe_from_unsafe(code: str, bad: bool) -> None:
    assert bool(unsafe_loads(code)) is bad


def test_no_source_of_the_project_unpickles() -> None:
    files = _sources()
    assert len(files) > 50  # the packages were found
    found = [f"{p.relative_to(ROOT)}:{hit}" for p in files
             for hit in unsafe_loads(p.read_text(encoding="utf-8"))]
    assert not found, found
