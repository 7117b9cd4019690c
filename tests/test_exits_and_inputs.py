"""Exit codes people can script, names that are never paths, one line for every store problem,
and inputs checked where they are read (issue 10, items 3-6).

- `harness run` exits 0 when every cell is ok, 1 when any failed (after the sweep and the
  report, with "N ok, M failed" and each failure's first line), 2 for bad input.
- A suite name such as `../../../x` or `a/b`, from a suite file or from a store someone sent,
  becomes a folder name only through `harness.slug`: nothing is written outside the report
  folder and no folders nest.
- A store that is not SQLite, a directory, under a file, locked past the timeout, empty, of a
  newer schema, or asked for a suite/run it does not hold: one line, exit 2. `report`,
  `export` and `compare` never change the store file.
- `--data-dir DIR` means that folder only; suite values of the wrong type name the key, the
  type and the value; after a resume the table lists stored cells, marked.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from conftest import (DEFAULT_METHODS, FASHION_SYSTEM_DIR, harness_bin, have_fashion_mnist,
                      run_cli, tiny_suite)
from harness import suite as suites
from harness.errors import UsageError
from harness.slug import slug

FAILING = DEFAULT_METHODS.replace('grid = { ratio = [0.5] }', 'config = { layers = ["nope"] }')
EVIL = "../../../x"
OTHERS = ("a/b", "/abs/evil", "..")
Hostile = tuple[Path, Path, list[str], subprocess.CompletedProcess[str]]


def suite_file(path: Path, name: str, methods: str = DEFAULT_METHODS, **fmt: str) -> Path:
    """tiny_suite's text under a file name of our choosing, with any `name` (TOML-escaped)."""
    text = tiny_suite(path.parent, name="__tmp__", methods=methods, **fmt).read_text()
    (path.parent / "__tmp__.toml").unlink()
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    path.write_text(text.replace('name = "__tmp__"', f'name = "{escaped}"', 1))
    return path


def one_line_error(res: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a bad-input exit (asserting there is exactly one)."""
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    return lines[0]


def files_under(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---- one real sweep: a hostile suite name, a failing cell -----------------------------------


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Hostile:
    """A tiny sweep of a suite named `../../../x` whose l1-filter cell fails, run from
    work/a/b/c with the default report folder: `reports/../../../x` would be work/a/x."""
    work = tmp_path_factory.mktemp("hostile")
    cwd = work / "a" / "b" / "c"
    cwd.mkdir(parents=True)
    path = suite_file(work / "suite.toml", EVIL, methods=FAILING)
    args = ["run", "--suite", str(path), "--profile", "smoke", "--data-dir", str(data_dir),
            "--store", str(work / "r.db"), "--target", "onnxruntime-cpu"]
    res = run_cli(*args, cwd=cwd)
    return work, cwd, args, res


def test_a_failed_cell_exits_1_after_the_sweep_and_the_report(hostile: Hostile) -> None:
    work, cwd, _, res = hostile
    assert res.returncode == 1, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    out = res.stdout.splitlines()
    assert "2 ok, 1 failed" in out  # baseline + weight-level ok; the l1-filter cell failed
    failures = [ln for ln in out[out.index("2 ok, 1 failed"):] if ln.startswith("FAILED ")]
    assert len(failures) == 1 and "onnxruntime-cpu lenet-300-100 l1-filter" in failures[0]
    assert "no layer named nope" in failures[0]
    assert (cwd / "reports" / slug(EVIL) / "index.html").exists()  # the report came first


def test_a_hostile_suite_name_writes_nothing_outside_the_report_folder(hostile: Hostile) -> None:
    work, cwd, _, _ = hostile
    report = cwd / "reports" / slug(EVIL)
    assert slug(EVIL) != EVIL and "/" not in slug(EVIL)
    assert not (work / "a" / "x").exists() and not list(work.rglob("x"))
    assert [p for p in (cwd / "reports").iterdir()] == [report]
    assert all(p.is_file() for p in report.iterdir())  # no nested folders
    for f in files_under(work):
        assert f.parts[0] in ("r.db", "r.db-wal", "r.db-shm", "cache", "suite.toml") or \
            (work / f).parent == report, f
    page = (report / "index.html").read_text()
    assert EVIL in page  # shown as written (escaped by Jinja2: nothing to escape here)


def test_resume_lists_every_cell_with_stored_ones_marked_and_exits_0(hostile: Hostile) -> None:
    work, cwd, args, _ = hostile
    res = run_cli(*args, "--method", "weight-level", cwd=cwd)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 ok, 0 failed (2 more stored by earlier runs, skipped)" in res.stdout
    table = [ln for ln in res.stdout.splitlines() if "lenet-300-100" in ln]
    for method in ("baseline", "weight-level"):
        lines = [ln for ln in table if method in ln]
        assert lines and all("(stored)" in ln for ln in lines), table
    assert any("Top-1" in ln for ln in table) and not any("l1-filter" in ln for ln in table)


def test_report_of_a_store_holding_hostile_names(hostile: Hostile, tmp_path: Path) -> None:
    """Names arriving in a store someone sent: `report` writes each suite's folder under the
    chosen folder only, named by slug, and never changes the store."""
    work, _, _, _ = hostile
    db = tmp_path / "sent.db"
    shutil.copy(work / "r.db", db)
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    for i, name in enumerate(OTHERS):
        for table in ("runs", "cells", "measurements"):
            rows = [dict(r) for r in con.execute(f"SELECT * FROM {table}")]
            for r in rows:
                if "-copy" in r["run_id"]:
                    continue
                r["run_id"] += f"-copy{i}"
                if "suite" in r:
                    r["suite"] = name
                con.execute(f"INSERT INTO {table} ({', '.join(r)}) VALUES "
                            f"({', '.join('?' for _ in r)})", tuple(r.values()))
    con.commit()
    con.close()
    before = digest(db)
    cwd = tmp_path / "p" / "q" / "r"
    cwd.mkdir(parents=True)
    res = run_cli("report", "--store", str(db), cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert digest(db) == before  # read-only
    names = (EVIL, *OTHERS)
    folders = {cwd / "reports" / slug(name) for name in names}
    assert set((cwd / "reports").iterdir()) == folders
    for folder in folders:
        assert (folder / "index.html").exists() and all(p.is_file() for p in folder.iterdir())
    for f in files_under(tmp_path):  # nothing beside the store and the report folders
        assert f.name == "sent.db" and len(f.parts) == 1 or \
            (tmp_path / f).parent in folders, f
    out = tmp_path / "chosen"
    res = run_cli("report", "--store", str(db), "--out", str(out), cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(map(slug, names))
    res = run_cli("report", "--store", str(db), "--suite", "a/b", "--out", str(out / "one"),
                  cwd=cwd)
    assert res.returncode == 0 and (out / "one" / "index.html").exists(), res.stderr
    assert "a/b" in (out / "one" / "index.html").read_text()
    res = run_cli("compare", "r1", "r2", "--store", str(db), cwd=cwd)
    line = one_line_error(res)
    assert "unknown run 'r1' (choose from:" in line
    assert digest(db) == before


def test_read_commands_never_change_the_store(hostile: Hostile, tmp_path: Path) -> None:
    work, _, _, _ = hostile
    db = tmp_path / "r.db"
    shutil.copy(work / "r.db", db)
    before = digest(db)
    con = sqlite3.connect(db)
    runs = [r[0] for r in con.execute("SELECT run_id FROM runs")]
    con.close()
    for args in (["export", "--format", "csv"], ["export", "--format", "json", "--samples"],
                 ["report", "--out", str(tmp_path / "rep")],
                 ["compare", runs[0], runs[-1], "--out", str(tmp_path / "cmp.html")]):
        res = run_cli(*args, "--store", str(db), cwd=tmp_path)
        assert res.returncode == 0, (args, res.stderr)
        assert digest(db) == before, args
        # nor anything beside it: SQLite's read-only open left r.db-wal and r.db-shm there
        assert sorted(p.name for p in tmp_path.glob("r.db*")) == ["r.db"], args
    for args, want in ((["report", "--suite", "nope"], f"(choose from: {EVIL})"),
                       (["export", "--format", "csv", "--suite", "nope"], "has no results in")):
        assert want in one_line_error(run_cli(*args, "--store", str(db), cwd=tmp_path))


def _read_only(src: Path, script: str) -> subprocess.CompletedProcess[str]:
    """`script` (sh; `$H` is the harness command, `$M` the mount) run where `$M` shows `src`
    read-only: a bind mount in a private mount namespace, gone when the script ends."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a private mount namespace here (needs root and util-linux)")
    mnt = src.parent / "mnt"
    mnt.mkdir()
    cmd = (f"M={shlex.quote(str(mnt))}; H={shlex.join(harness_bin())}; "
           f"mount --bind {shlex.quote(str(src))} \"$M\" && mount -o remount,bind,ro \"$M\" "
           f"&& {script}")
    return subprocess.run(["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True,
                          timeout=300, cwd=src.parent)


def test_a_store_on_a_read_only_mount_is_read(hostile: Hostile, tmp_path: Path) -> None:
    """A store someone shared on a read-only mount: SQLite cannot make the WAL index a
    plain read-only open needs there ("unable to open database file"); `export`, `report`
    and `compare` still read it, and every row comes out."""
    work, _, _, _ = hostile
    (tmp_path / "src").mkdir()
    shutil.copy(work / "r.db", tmp_path / "src" / "r.db")
    con = sqlite3.connect(tmp_path / "src" / "r.db")
    cells = con.execute("SELECT COUNT(*) FROM cells").fetchone()[0]
    runs = [r[0] for r in con.execute("SELECT run_id FROM runs ORDER BY started")]
    con.close()
    res = _read_only(tmp_path / "src", f"""
        touch "$M/x" 2>/dev/null || echo read-only
        $H export --format csv --store "$M/r.db" > rows.csv; echo "export $?"
        $H report --store "$M/r.db" --out rep > /dev/null; echo "report $?"
        $H compare {runs[0]} {runs[-1]} --store "$M/r.db" --out cmp.html > /dev/null
        echo "compare $?"
    """)
    assert res.stdout.split() == ["read-only", "export", "0", "report", "0", "compare", "0"], \
        res.stdout + res.stderr
    assert len((tmp_path / "rows.csv").read_text().splitlines()) >= cells + 1
    assert (tmp_path / "rep").is_dir() and (tmp_path / "cmp.html").is_file()
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == ["r.db"]


def test_a_read_only_store_with_writes_left_in_its_wal_is_one_line(hostile: Hostile,
                                                                   tmp_path: Path) -> None:
    """The same mount, but the store was copied while a writer had it open: its last writes
    are in `r.db-wal`, which a read there could not see. That is said in one line, exit 2,
    not read as if those writes were not there."""
    work, _, _, _ = hostile
    live = tmp_path / "live.db"
    shutil.copy(work / "r.db", live)
    con = sqlite3.connect(live)
    con.execute("PRAGMA wal_autocheckpoint=0")
    con.execute("DELETE FROM cells")
    con.commit()
    (tmp_path / "src").mkdir()
    shutil.copy(live, tmp_path / "src" / "r.db")
    shutil.copy(f"{live}-wal", tmp_path / "src" / "r.db-wal")
    con.close()
    assert (tmp_path / "src" / "r.db-wal").stat().st_size > 0
    res = _read_only(tmp_path / "src", '$H export --format csv --store "$M/r.db"')
    line = one_line_error(res)
    assert "r.db-wal" in line and "copy r.db and r.db-wal together" in line, line


def test_an_older_schema_is_read_without_being_migrated(hostile: Hostile, tmp_path: Path) -> None:
    """A read-only open of a version-2 store migrates an in-memory copy: rows come out, the
    file stays version 2."""
    work, _, _, _ = hostile
    db = tmp_path / "v2.db"
    shutil.copy(work / "r.db", db)
    con = sqlite3.connect(db)
    for col in ("speedup_ci_low", "speedup_ci_high", "quality", "quality_reason", "scored",
                "unscored_reason", "first_call_ms", "window", "attempts"):
        con.execute(f'ALTER TABLE measurements DROP COLUMN "{col}"')
    con.execute("ALTER TABLE cells DROP COLUMN macs")
    con.execute("ALTER TABLE cells DROP COLUMN runtime_settings")
    con.execute("DROP TABLE samples")
    con.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
    con.commit()
    con.execute("VACUUM")
    con.close()
    before = digest(db)
    res = run_cli("export", "--format", "json", "--store", str(db), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert '"lenet-300-100"' in res.stdout
    assert digest(db) == before
    con = sqlite3.connect(db)
    assert con.execute("SELECT value FROM meta").fetchone()[0] == "2"
    con.close()


# ---- every cell failed ----------------------------------------------------------------------

INJECT = '''
import harness.runner as _runner


def _diverged(*args, **kwargs):
    raise FloatingPointError("injected: the baseline diverged")


_runner.fit = _diverged
'''


def test_a_run_where_every_cell_failed_exits_1(tmp_path: Path, data_dir: Path) -> None:
    """Baseline training raises (injected through a sitecustomize on PYTHONPATH): every cell
    of the sweep is stored as failed, the report is written, the exit code is 1."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(INJECT)
    path = tiny_suite(tmp_path)
    res = run_cli("run", "--suite", str(path), "--profile", "smoke", "--data-dir",
                  str(data_dir), "--store", str(tmp_path / "r.db"), "--report-dir",
                  str(tmp_path / "rep"), "--target", "onnxruntime-cpu", cwd=tmp_path,
                  env={"PYTHONPATH": str(hook)})
    assert res.returncode == 1, res.stdout + res.stderr
    assert "0 ok, 3 failed" in res.stdout.splitlines()
    failed = [ln for ln in res.stdout.splitlines() if ln.startswith("FAILED ")]
    assert sum("injected: the baseline diverged" in ln for ln in failed) >= 3
    assert (tmp_path / "rep" / "index.html").exists()


# ---- store problems: one line, exit 2 --------------------------------------------------------


def _junk(p: Path) -> Path:
    p.write_bytes(b"this is not a database, just some text that is long enough to read\n" * 4)
    return p


def _folder(p: Path) -> Path:
    p.mkdir()
    return p


def _under_a_file(p: Path) -> Path:
    p.write_text("a file")
    return p / "results.db"


def _newer(p: Path) -> Path:
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    con.commit()
    con.close()
    return p


def _foreign(p: Path) -> Path:
    con = sqlite3.connect(p)
    con.execute("CREATE TABLE photos (id INTEGER, title TEXT)")
    con.commit()
    con.close()
    return p


STORES = {
    "not sqlite": (_junk, "is not a SQLite database"),
    "a directory": (_folder, "is a directory, not a file"),
    "under a file": (_under_a_file, "is a file, not a folder"),
    "newer schema": (_newer, "has schema 99; this harness reads up to"),
    "another program's database": (_foreign, "is a SQLite database of another program"),
}
COMMANDS = (["report"], ["export", "--format", "csv"], ["compare", "a", "b"])


@pytest.mark.parametrize("case", sorted(STORES))
def test_a_store_that_cannot_be_used_is_one_line(case: str, tmp_path: Path) -> None:
    make, message = STORES[case]
    store = make(tmp_path / "s.db")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    for args in COMMANDS:
        line = one_line_error(run_cli(*args, "--store", str(store), cwd=tmp_path))
        if case == "under a file":  # nothing to read there: the usual "no store"
            assert "no store at" in line
        else:
            assert message in line and str(store) in line, (args, line)
    after = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before  # read commands wrote nothing


@pytest.mark.parametrize("case", ["not sqlite", "a directory", "under a file", "newer schema",
                                  "another program's database"])
def test_run_on_a_store_that_cannot_be_used_is_one_line(case: str, tmp_path: Path,
                                                        data_dir: Path) -> None:
    make, message = STORES[case]
    store = make(tmp_path / "s.db")
    res = run_cli("run", "--suite", str(tiny_suite(tmp_path)), "--profile", "smoke",
                  "--data-dir", str(data_dir), "--store", str(store), "--target", "null",
                  cwd=tmp_path)
    assert message in one_line_error(res)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("case", sorted(STORES))
def test_probing_a_store_says_what_writing_would_and_changes_nothing(case: str,
                                                                     tmp_path: Path) -> None:
    """`Store.probe` (what `run`, `tune` and `plan` ask before the runner loads) refuses each
    bad store with the line that opening it for writing gives, reading only."""
    from harness.store import Store

    make, _ = STORES[case]
    store = make(tmp_path / "s.db")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(UsageError) as probed:
        Store.probe(store)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    with pytest.raises(UsageError) as opened:
        Store(store)
    assert str(probed.value) == str(opened.value)


def test_probing_passes_a_store_a_run_can_fill_and_leaves_it_as_it_was(tmp_path: Path) -> None:
    """A store the probe cannot judge without writing passes (an empty file, an older
    schema) and stays as it was; a missing one is not made."""
    from harness.store import Store

    old = tmp_path / "old.db"
    con = sqlite3.connect(old)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.commit()
    con.close()
    (tmp_path / "empty.db").write_bytes(b"")
    for fine in (old, tmp_path / "empty.db"):
        data = fine.read_bytes()
        Store.probe(fine)
        assert fine.read_bytes() == data and {p.name for p in tmp_path.iterdir()} >= {fine.name}
    Store.probe(tmp_path / "new" / "results.db")
    assert not (tmp_path / "new").exists()
    assert not list(tmp_path.glob("*-wal")) and not list(tmp_path.glob("*-journal"))


def test_a_store_locked_past_the_timeout_is_one_line(tmp_path: Path, data_dir: Path) -> None:
    from harness.store import Store

    db = tmp_path / "s.db"
    Store(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process is writing, and keeps at it
    try:
        res = run_cli("run", "--suite", str(tiny_suite(tmp_path)), "--profile", "smoke",
                      "--data-dir", str(data_dir), "--store", str(db), "--target", "null",
                      cwd=tmp_path, env={"COMPRESSMARK_STORE_TIMEOUT": "0.5"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = one_line_error(res)
    assert "is locked by another process (waited 0.5 s" in line
    assert "COMPRESSMARK_STORE_TIMEOUT" in line


def test_an_empty_store_is_named_and_left_empty(tmp_path: Path) -> None:
    """A 0-byte file stays 0 bytes (no schema written into it); a store with a schema but no
    runs says so."""
    from harness.store import Store

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for args in COMMANDS:
        line = one_line_error(run_cli(*args, "--store", str(empty), cwd=tmp_path))
        assert "is empty: no results yet" in line
    assert empty.read_bytes() == b"" and sorted(tmp_path.iterdir()) == [empty]
    fresh = tmp_path / "fresh.db"
    Store(fresh).close()
    for args in COMMANDS:
        line = one_line_error(run_cli(*args, "--store", str(fresh), cwd=tmp_path))
        assert "holds no runs yet" in line


def test_store_errors_in_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.store import Store

    with pytest.raises(UsageError, match="no store at"):
        Store(tmp_path / "missing.db", readonly=True)
    assert not (tmp_path / "missing.db").exists()
    monkeypatch.setenv("COMPRESSMARK_STORE_TIMEOUT", "soon")
    with pytest.raises(UsageError, match="must be a number of seconds"):
        Store(tmp_path / "s.db")


# ---- --data-dir means that folder only ------------------------------------------------------


@pytest.mark.skipif(not have_fashion_mnist(), reason="needs the system copy to ignore")
def test_an_explicit_data_dir_does_not_fall_back_to_the_system_copy(tmp_path: Path) -> None:
    text = tiny_suite(tmp_path).read_text().replace('dataset = "mnist"',
                                                    'dataset = "fashion-mnist"')
    (tmp_path / "fm.toml").write_text(text)
    given = tmp_path / "given"
    given.mkdir()
    absent = tmp_path / "absent"
    for folder in (given, absent):
        res = run_cli("run", "--suite", str(tmp_path / "fm.toml"), "--profile", "smoke",
                      "--data-dir", str(folder), "--store", str(tmp_path / "s.db"),
                      "--target", "null", cwd=tmp_path)
        line = one_line_error(res)
        assert f"dataset 'fashion-mnist' not found in --data-dir {folder}" in line
        assert "--download" in line and str(FASHION_SYSTEM_DIR) in line
    assert list(given.iterdir()) == [] and not absent.exists()  # no folders made in DIR
    assert not (tmp_path / "s.db").exists()


@pytest.mark.skipif(not have_fashion_mnist(), reason="needs the system copy")
def test_without_data_dir_the_system_copy_is_used(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.registry import DATASETS

    monkeypatch.setenv("HOME", str(tmp_path))  # the default data folder lives under ~/.cache
    ds = DATASETS.get("fashion-mnist")()
    assert ds._stage()
    assert (tmp_path / ".cache" / "compressmark" / "data" / "FashionMNIST" / "raw").is_dir()
    with pytest.raises(UsageError, match="not found in --data-dir"):
        DATASETS.get("fashion-mnist")(data_dir=tmp_path / "nothing").train()
    assert not (tmp_path / "nothing").exists()


def test_an_explicit_data_dir_holding_the_data_is_used(data_dir: Path) -> None:
    from harness.registry import DATASETS

    ds = DATASETS.get("fashion-mnist")(data_dir=data_dir)  # the flat .gz files, Debian style
    assert len(ds.test()) == 256


# ---- suite values: the key, the type and the value ------------------------------------------

GRID = '[[methods]]\nname = "l1-filter"\ngrid = {{ ratio = [{}] }}\n'
TYPE_ERRORS = {
    "ratio a string": (dict(methods=GRID.format('"abc"')),
                       "'ratio' must be a number, not 'abc' (a string)"),
    "ratio a boolean": (dict(methods=GRID.format("true")),
                        "'ratio' must be a number, not true (a boolean)"),
    "config a list": (dict(methods='[[methods]]\nname = "l1-filter"\nconfig = [1]\n'),
                      "config must be a table, not [1] (a list)"),
    "layers not strings": (dict(methods='[[methods]]\nname = "l1-filter"\n'
                                        'config = { layers = [1, 2] }\n'),
                           "'layers' must be a list of strings, not [1, 2] (a list)"),
    "methods empty": (dict(methods="methods = []\n"), "'methods' is an empty list"),
    "methods a table": (dict(methods="methods = { name = 'kd' }\n"),
                        "'methods' must be a list, not {'name' = 'kd'} (a table)"),
    "methods entry a string": (dict(methods='methods = ["l1-filter"]\n'),
                               "must be a table (a [[methods]] entry with a name), not "
                               "'l1-filter'"),
    "models a string": (dict(models='"lenet-5"'),
                        "'models' must be a list of strings, not 'lenet-5' (a string)"),
    "models empty": (dict(models="[]"), "'models' must list at least one name"),
    "model twice": (dict(models='["lenet-5", "lenet-5"]'), "'models' lists 'lenet-5' twice"),
    "methods for a model not in the suite": (
        dict(methods='[[methods]]\nname = "l1-filter"\nmodels = ["lenet-5"]\n'
                     'grid = { ratio = [0.5] }\n'),
        "[[methods]] #1: models names 'lenet-5', which is not one of the suite's models "
        "(choose from: lenet-300-100)"),
}
TEXT_ERRORS = {
    "seed a float": (('dataset = "mnist"', 'dataset = "mnist"\nseed = 1.5'),
                     "'seed' must be an integer, not 1.5 (a number)"),
    "seed negative": (('dataset = "mnist"', 'dataset = "mnist"\nseed = -1'),
                      "'seed' must be in [0, 2**32), not -1"),
    "lr a string": (("lr = 0.05", 'lr = "fast"'),
                    "[profiles.smoke].train: 'lr' must be a number, not 'fast' (a string)"),
    "batch size zero": (("epochs = 2, lr = 0.05, batch_size = 64",
                         "epochs = 2, lr = 0.05, batch_size = 0"),
                        "'batch_size' must be >= 1 and finite, not 0"),
    "milestones out of range": (("epochs = 2,", "epochs = 2, milestones = [2.0],"),
                                "'milestones' are fractions of the epochs"),
    "threads a string": (("threads = 1", 'threads = "two"'),
                         ".timing: 'threads' must be an integer, not 'two' (a string)"),
    "batch sizes of floats": (("batch_sizes = [1, 8]", "batch_sizes = [1, 8.5]"),
                              "'batch_sizes' must be a list of integers, not [1, 8.5]"),
    "eval_samples a string": (("eval_samples = 128", 'eval_samples = "all"'),
                              "'eval_samples' must be an integer, not 'all' (a string)"),
    "precision not a fraction": (("threads = 1", "threads = 1, precision = 2.0"),
                                 ".timing: precision is a CI half-width as a fraction, "
                                 "in (0, 1)"),
    "min_rounds above rounds": (("threads = 1", "threads = 1, precision = 0.02, min_rounds = 8"),
                                ".timing: min_rounds must be between 6 and rounds (6)"),
    "min_rounds too few for a CI": (("threads = 1", "threads = 1, precision = 0.02, "
                                     "min_rounds = 4"),
                                    ".timing: min_rounds must be between 6 and rounds (6): "
                                    "fewer rounds give no 95% CI to stop on"),
    "rounds odd": (("rounds = 6, threads = 1", "rounds = 7, threads = 1"),
                   ".timing: rounds must be even (each side goes first, and follows the other, "
                   "in half of them), not 7"),
    "rewarm negative": (("threads = 1", "threads = 1, rewarm = -1"),
                        ".timing: iterations >= 1, warmup >= 0, rounds >= 1, rewarm >= 0"),
    "rewarm a float": (("threads = 1", "threads = 1, rewarm = 2.5"),
                       ".timing: 'rewarm' must be an integer, not 2.5"),
    "timing a number": (("timing = { batch_sizes = [1, 8], iterations = 6, warmup = 1, "
                         "rounds = 6, threads = 1 }", "timing = 3"),
                        "[profiles.smoke].timing must be a table, not 3 (an integer)"),
    "dataset option type": (('dataset = "mnist"', 'dataset = "mnist"\n'
                             'dataset_options = { resize = "big" }'),
                            "[dataset_options]: 'resize' must be an integer, not 'big' "
                            "(a string)"),
    "dataset option unknown": (('dataset = "mnist"', 'dataset = "mnist"\n'
                                'dataset_options = { data_dir = "/tmp" }'),
                               "[dataset_options]: unknown key 'data_dir' (valid: resize)"),
    "targets a string": (('targets = ["onnxruntime-cpu"]', 'targets = "onnxruntime-cpu"'),
                         "'targets' must be a list of strings"),
    "name empty": (('name = "tiny"', 'name = " "'), "'name' must not be empty"),
    "name a number": (('name = "tiny"', "name = 3"), "'name' must be a string, not 3"),
}


def _expect_one_line(path: Path, message: str) -> None:
    with pytest.raises(UsageError) as info:
        suites.load(str(path))
    text = str(info.value)
    assert message in text and len(text.splitlines()) == 1, text


@pytest.mark.parametrize("case", sorted(TYPE_ERRORS))
def test_suite_type_errors_name_key_type_and_value(case: str, tmp_path: Path) -> None:
    fmt, message = TYPE_ERRORS[case]
    _expect_one_line(tiny_suite(tmp_path, **fmt), message)


@pytest.mark.parametrize("case", sorted(TEXT_ERRORS))
def test_suite_value_errors(case: str, tmp_path: Path) -> None:
    (old, new), message = TEXT_ERRORS[case]
    path = tiny_suite(tmp_path)
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    _expect_one_line(path, message)


def test_left_out_methods_mean_baselines_only(tmp_path: Path) -> None:
    path = tiny_suite(tmp_path, methods="")
    assert suites.load(str(path)).runs == ()
    path.write_text(path.read_text().split("[profiles.smoke]")[0] + 'profiles = "smoke"\n')
    _expect_one_line(path, "profiles must be a table, not 'smoke' (a string)")


def test_a_name_with_a_line_break_stays_one_line(tmp_path: Path) -> None:
    path = tiny_suite(tmp_path, models='["lenet-5\\nrm -rf /"]')
    with pytest.raises(UsageError) as info:
        suites.load(str(path))
    assert len(str(info.value).splitlines()) == 1 and "unknown model" in str(info.value)


def test_a_type_error_through_the_cli_is_one_line_exit_2(tmp_path: Path) -> None:
    path = tiny_suite(tmp_path, methods=GRID.format('"abc"'))
    res = run_cli("run", "--suite", str(path), "--store", str(tmp_path / "s.db"), cwd=tmp_path)
    assert "'ratio' must be a number, not 'abc' (a string)" in one_line_error(res)
    assert not (tmp_path / "s.db").exists()


@pytest.mark.parametrize("args, option, why", [
    (["report", "--out", "{file}/sub"], "--out", "cannot make folder"),
    (["report", "--out", "{file}"], "--out", "is a file, not a folder"),
    (["export", "--format", "csv", "--out", "{file}/x.csv"], "--out", "cannot make folder"),
    (["export", "--format", "csv", "--out", "{dir}"], "--out", "is a folder, not a file"),
    (["compare", "a", "b", "--out", "{file}/x.html"], "--out", "cannot make folder"),
    (["compare", "a", "b", "--out", "{dir}"], "--out", "is a folder, not a file"),
    (["run", "--suite", "fashion-mnist-lenet", "--report-dir", "{file}/r"], "--report-dir",
     "cannot make folder"),
    (["tune", "--suite", "fashion-mnist-lenet", "--report-dir", "{file}"], "--report-dir",
     "is a file, not a folder"),
])
def test_an_output_path_that_cannot_be_written_is_one_line_before_any_work(
        args: list[str], option: str, why: str, tmp_path: Path) -> None:
    """Refused before the store is read or a sweep starts (a run's report folder used to be
    found unwritable only after the whole sweep); nothing is created."""
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    argv = [a.format(file=tmp_path / "afile", dir=tmp_path / "adir") for a in args]
    line = one_line_error(run_cli(*argv, "--store", str(tmp_path / "s.db"), cwd=tmp_path))
    assert line.startswith(f"error: {option} ") and why in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]
