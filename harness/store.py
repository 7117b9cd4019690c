"""The result store: SQLite (WAL), one transaction per finished cell, a versioned schema.

Tables: `runs` (machine info, versions, commit, settings), `cells` (one row per cell and run:
what was compressed, how, on which target, its accuracy and size, and which evaluation items
its runtime got right, from which `rows()` derives accuracy intervals), `measurements` (one row per
cell, run and batch size: latency percentiles, throughput and the speedup over the baseline
timed interleaved with it, its 95% CI, the window's quality and whether it met the scoring
floors), `samples` (the raw per-call nanoseconds of both interleaved sessions with their round
sizes, zlib-packed int64, so every summary and CI can be recomputed), `trials` (each `harness
tune` trial: its study, parameters, state and the keys of the ordinary cells it measured, so the
report can draw a search's fronts from the cells themselves). A cell's history is kept;
the newest ok row is the current result.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from harness.errors import UsageError

SCHEMA_VERSION = 6

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, suite TEXT, profile TEXT, started TEXT, finished TEXT,
    harness_version TEXT, git_commit TEXT, command TEXT,
    machine TEXT, versions TEXT, settings TEXT
);
CREATE TABLE IF NOT EXISTS cells (
    cell_key TEXT NOT NULL, run_id TEXT NOT NULL, suite TEXT, model TEXT, method TEXT,
    method_config TEXT, target TEXT, precision TEXT, status TEXT NOT NULL, error TEXT,
    top1_baseline REAL, top1_pruned REAL, top1_retrained REAL, top1_target REAL,
    eval_samples INTEGER, params_total INTEGER, params_nonzero INTEGER, flops INTEGER,
    flops_effective INTEGER, size_bytes INTEGER, size_compressed_bytes INTEGER,
    compression_ratio REAL, flops_ratio REAL, layers TEXT, info TEXT, target_versions TEXT,
    created TEXT, duration_s REAL, metric TEXT, postprocess_ms REAL,
    macs INTEGER, runtime_settings TEXT, node TEXT, baseline_key TEXT, items_correct TEXT,
    PRIMARY KEY (cell_key, run_id)
);
CREATE TABLE IF NOT EXISTS measurements (
    cell_key TEXT NOT NULL, run_id TEXT NOT NULL, batch_size INTEGER NOT NULL,
    latency_p50_ms REAL, latency_p90_ms REAL, latency_p95_ms REAL, latency_p99_ms REAL,
    throughput_ips REAL, iterations INTEGER,
    ref_latency_p50_ms REAL, ref_throughput_ips REAL, speedup REAL,
    speedup_ci_low REAL, speedup_ci_high REAL, quality TEXT, quality_reason TEXT,
    scored INTEGER, unscored_reason TEXT, first_call_ms REAL, window TEXT, attempts INTEGER,
    PRIMARY KEY (cell_key, run_id, batch_size)
);
CREATE TABLE IF NOT EXISTS samples (
    cell_key TEXT NOT NULL, run_id TEXT NOT NULL, batch_size INTEGER NOT NULL,
    side TEXT NOT NULL, rounds TEXT NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (cell_key, run_id, batch_size, side)
);
CREATE TABLE IF NOT EXISTS trials (
    study TEXT NOT NULL, trial INTEGER NOT NULL, suite TEXT, model TEXT, method TEXT,
    method_config TEXT, params TEXT, targets TEXT, batch_size INTEGER, state TEXT,
    objective_values TEXT, cell_keys TEXT, error TEXT, created TEXT,
    PRIMARY KEY (study, trial)
);
"""

MEASUREMENT_COLUMNS = (
    "batch_size", "latency_p50_ms", "latency_p90_ms", "latency_p95_ms", "latency_p99_ms",
    "throughput_ips", "iterations", "ref_latency_p50_ms", "ref_throughput_ips", "speedup",
    "speedup_ci_low", "speedup_ci_high", "quality", "quality_reason", "scored",
    "unscored_reason", "first_call_ms", "window", "attempts",
)

# MIGRATIONS[v - 1] upgrades a store of version v to v + 1 (rows are kept)
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    ("ALTER TABLE cells ADD COLUMN metric TEXT",
     "ALTER TABLE cells ADD COLUMN postprocess_ms REAL"),
    # 2 -> 3: CIs, quality and scoring per measurement, MACs, runtime settings; the samples
    # table is created by SCHEMA. Older rows keep NULLs there: shown as "no CI (old row)".
    tuple(f"ALTER TABLE measurements ADD COLUMN {c}" for c in (
        "speedup_ci_low REAL", "speedup_ci_high REAL", "quality TEXT", "quality_reason TEXT",
        "scored INTEGER", "unscored_reason TEXT", "first_call_ms REAL", "window TEXT",
        "attempts INTEGER"))
    + ("ALTER TABLE cells ADD COLUMN macs INTEGER",
       "ALTER TABLE cells ADD COLUMN runtime_settings TEXT",
       "ALTER TABLE cells ADD COLUMN node TEXT"),
    # 3 -> 4: the `trials` table of `harness tune` (created by SCHEMA); no column changes
    (),
    # 4 -> 5: the key of the trained baseline a cell's model came from, so that its accuracy
    # loss is taken against that baseline (not another profile's or device's); old rows NULL
    ("ALTER TABLE cells ADD COLUMN baseline_key TEXT",),
    # 5 -> 6: which evaluation items the runtime got right (harness.accuracy_ci.pack), from
    # which rows() derives the top-1 and accuracy-loss intervals; old rows NULL (no interval)
    ("ALTER TABLE cells ADD COLUMN items_correct TEXT",),
)

JSON_COLUMNS = ("method_config", "layers", "info", "target_versions", "machine", "versions",
                "settings", "window", "runtime_settings", "node", "params", "targets",
                "objective_values", "cell_keys")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    """A SQLite file. Opening creates the schema; a newer schema than this code is refused.

    `readonly` opens the file so that nothing can be written in it (`connect_readonly`:
    SQLite's `query_only`, its read-only URI, or where the folder cannot be written an
    immutable open): nothing is written or migrated in it, and no `-wal` or `-shm` file is
    left beside it where there was none. A read-only open of an older schema migrates an
    in-memory copy instead, so `report`, `export` and `compare` read old stores without
    touching them. Every problem at
    open time (not SQLite, a directory, unwritable, locked past the timeout, empty when only
    read) is a one-line UsageError naming the store.
    """

    def __init__(self, path: Path | str, readonly: bool = False) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self.timeout = store_timeout()
        self._refuse_a_directory()
        if readonly and not self.path.is_file():
            raise UsageError(f"no store at {self.path} (run `harness run` first, or pass "
                             "--store)")
        db: sqlite3.Connection | None = None
        try:
            if readonly:
                db = connect_readonly(self.path, self.timeout)
            else:
                self._refuse_a_file_above()
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, timeout=self.timeout)
            self.db = db
            self.db.row_factory = sqlite3.Row
            if readonly:
                self._open_readonly()
            else:  # refuse what is not ours before anything (WAL mode) changes the file
                self._refuse_foreign_or_newer()
                self.db.execute("PRAGMA journal_mode=WAL")
                self._prepare()
                self.db.execute("BEGIN IMMEDIATE")  # a writer can get in: fail now, not later
                self.db.rollback()
        except (sqlite3.Error, OSError, UsageError) as exc:
            if db is not None:
                db.close()
            if isinstance(exc, UsageError):
                raise
            raise store_error(self.path, exc, self.timeout) from None

    @classmethod
    def probe(cls, path: Path | str) -> None:
        """Refuse now, reading only, a store that opening it for writing would refuse for what
        it is or holds: a directory, a file where a folder above it should be, not SQLite,
        another program's database, a newer schema (one line each, as `Store(path)` says
        them). Nothing is created, migrated or changed, and a missing store passes (a run
        makes it); a lock held by another writer shows only when writing. `run`, `tune` and
        `plan` ask this before the runner, the runtimes and the data load: a wrong --store
        answers in ~3 s instead of ~8."""
        self = cls.__new__(cls)
        self.path, self.readonly, self.timeout = Path(path), True, store_timeout()
        self._refuse_a_directory()
        self._refuse_a_file_above()
        if not self.path.is_file():
            return
        db = None
        try:
            self.db = db = connect_readonly(self.path, self.timeout)
            self._refuse_foreign_or_newer()
        except sqlite3.Error as exc:
            raise store_error(self.path, exc, self.timeout) from None
        finally:
            if db is not None:
                db.close()

    def _refuse_foreign_or_newer(self) -> None:
        """What a writer refuses in the file itself: another program's tables, a schema
        version newer than this code (none yet is fine: a run writes the schema)."""
        self._check_ours()
        row = self._meta_version()
        if row is not None:
            self._version(row)

    def _refuse_a_directory(self) -> None:
        if self.path.is_dir():
            raise UsageError(f"store {self.path} is a directory, not a file (pass a file path, "
                             "e.g. --store results.db)")

    def _refuse_a_file_above(self) -> None:
        for folder in self.path.parents:
            if folder.exists() and not folder.is_dir():
                raise UsageError(f"store {self.path}: {folder} is a file, not a folder; "
                                 "pass another --store")

    def _prepare(self) -> None:
        """Create the schema (or migrate an older one to this version) in `self.db`."""
        with self.db:
            self.db.executescript(SCHEMA)
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                (str(SCHEMA_VERSION),))
            elif (version := self._version(row[0])) < SCHEMA_VERSION:
                for step in MIGRATIONS[version - 1 :]:
                    for sql in step:
                        if not self._has_column(sql):
                            self.db.execute(sql)
                self.db.execute("UPDATE meta SET value=? WHERE key='schema_version'",
                                (str(SCHEMA_VERSION),))
            # rows() looks up each row's baseline accuracy by these columns (_BASELINE_OF)
            self.db.execute("CREATE INDEX IF NOT EXISTS cells_by_baseline "
                            "ON cells(baseline_key, target)")

    def _version(self, value: Any) -> int:
        """The stored schema version; a newer one than this code reads is refused."""
        try:
            version = int(value)
        except (TypeError, ValueError):
            raise UsageError(f"store {self.path} has an unreadable schema version {value!r}: "
                             "not a CompressMark store") from None
        if version > SCHEMA_VERSION:
            raise UsageError(f"store {self.path} has schema {version}; this harness reads "
                             f"up to {SCHEMA_VERSION}: upgrade compressmark")
        if version < 1:
            raise UsageError(f"store {self.path} has schema {version}: not a CompressMark store")
        return version

    def _meta_version(self) -> Any:
        """The stored schema version, None where there is no meta table or row yet."""
        if "meta" not in self._tables():
            return None
        row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return None if row is None else row[0]

    def _tables(self) -> set[str]:
        return {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _check_ours(self) -> None:
        """Refuse a SQLite file of another program (tables, none of them ours): writing the
        schema into it would change someone else's database."""
        tables = self._tables()
        if tables and "meta" not in tables:
            raise UsageError(f"store {self.path} is a SQLite database of another program (tables: "
                             f"{', '.join(sorted(tables)[:5])}); pass another --store")

    def _open_readonly(self) -> None:
        """Check a read-only store holds results; migrate an older schema in memory."""
        tables = self._tables()
        if not tables:
            raise UsageError(f"store {self.path} is empty: no results yet (run `harness run` "
                             "first, or pass another --store)")
        self._check_ours()
        row = self._meta_version()
        if row is None:
            raise UsageError(f"store {self.path} has no schema version: not a CompressMark store")
        if self._version(row) < SCHEMA_VERSION:
            copy = sqlite3.connect(":memory:")
            self.db.backup(copy)
            self.db.close()
            self.db = copy
            self.db.row_factory = sqlite3.Row
            self._prepare()

    def _has_column(self, alter: str) -> bool:
        """Is the column an `ALTER TABLE t ADD COLUMN c ...` would add already there (a table
        that SCHEMA just created is already current)?"""
        words = alter.split()
        table, column = words[2], words[5]
        cols = {r[1] for r in self.db.execute(f"PRAGMA table_info({table})")}
        return column in cols

    def close(self) -> None:
        self.db.close()

    def start_run(self, run_id: str, **fields: Any) -> None:
        row = {"run_id": run_id, "started": now(), **fields}
        self._insert("runs", row)

    def finish_run(self, run_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE runs SET finished=? WHERE run_id=?", (now(), run_id))

    def finished(self, cell_key: str) -> bool:
        """True when some run already stored this cell successfully (resume skips it)."""
        row = self.db.execute(
            "SELECT 1 FROM cells WHERE cell_key=? AND status='ok' LIMIT 1", (cell_key,)
        ).fetchone()
        return row is not None

    def put_cell(self, cell: dict[str, Any], measurements: list[dict[str, Any]],
                 samples: list[dict[str, Any]] | None = None) -> None:
        """Store one cell, its measurements and their raw samples atomically. A sample entry
        is {batch_size, side ("candidate" | "reference"), rounds: [calls per round],
        samples_ns: [...]}."""
        ids = {"cell_key": cell["cell_key"], "run_id": cell["run_id"]}
        with self.db:
            # a second write of a cell in one run replaces it whole: no measurement or sample
            # of the earlier attempt stays beside the new row
            for table in ("measurements", "samples"):
                self.db.execute(f"DELETE FROM {table} WHERE cell_key=? AND run_id=?",
                                (ids["cell_key"], ids["run_id"]))
            self._insert("cells", {"created": now(), **cell}, commit=False)
            for m in measurements:
                self._insert("measurements", {**ids, **m}, commit=False)
            for smp in samples or []:
                blob = zlib.compress(np.asarray(smp["samples_ns"], "<i8").tobytes(), 6)
                self._insert("samples", {**ids, "batch_size": smp["batch_size"],
                                         "side": smp["side"],
                                         "rounds": json.dumps(list(smp["rounds"])),
                                         "data": blob}, commit=False)

    def samples(self, cell_key: str | None = None, run_id: str | None = None,
                suite: str | None = None) -> list[dict[str, Any]]:
        """Raw samples: one dict per (cell, run, batch size, side), samples_ns unpacked."""
        where, args = [], []
        for col, val in (("s.cell_key", cell_key), ("s.run_id", run_id), ("c.suite", suite)):
            if val is not None:
                where.append(f"{col}=?")
                args.append(val)
        sql = ("SELECT s.*, c.suite, c.model, c.method, c.method_config, c.target FROM samples s "
               "JOIN cells c ON c.cell_key=s.cell_key AND c.run_id=s.run_id"
               + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY c.created, s.batch_size, s.side")
        out = []
        for r in self.db.execute(sql, args):
            d = dict(r)
            d["samples_ns"] = np.frombuffer(zlib.decompress(d.pop("data")), "<i8").tolist()
            d["rounds"] = json.loads(d["rounds"])
            d["method_config"] = json.loads(d["method_config"] or "{}")
            out.append(d)
        return out

    def _insert(self, table: str, row: dict[str, Any], commit: bool = True) -> None:
        row = {k: (json.dumps(v, sort_keys=True, default=str) if k in JSON_COLUMNS else v)
               for k, v in row.items()}
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        sql = f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})"
        if commit:
            with self.db:
                self.db.execute(sql, tuple(row.values()))
        else:
            self.db.execute(sql, tuple(row.values()))

    def runs(self, suite: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM runs" + (" WHERE suite=?" if suite else "") + " ORDER BY started"
        return [_decode(r) for r in self.db.execute(sql, (suite,) if suite else ())]

    def rows(self, suite: str | None = None, run_id: str | None = None,
             latest: bool = True, keep_items: bool = False) -> list[dict[str, Any]]:
        """Tidy rows, one per (cell, batch size); failed cells appear once with no timing.

        `latest` keeps only the newest row of each logical cell; `--all` style callers pass
        latest=False for the whole history. `keep_items` keeps each row's packed per-item
        results (`items_correct`) beside the intervals derived from them (`harness compare`
        pairs two runs' item by item); otherwise they stay in the store.
        """
        where, args = [], []
        if suite:
            where.append("c.suite=?")
            args.append(suite)
        if run_id:
            where.append("c.run_id=?")
            args.append(run_id)
        if latest and not run_id:
            # one row per logical cell (suite, model, method + config, target): the newest,
            # whatever settings or runtime versions it was measured under
            where.append(
                "c.rowid = (SELECT c2.rowid FROM cells c2 WHERE c2.suite=c.suite "
                "AND c2.model=c.model AND c2.method=c.method "
                "AND c2.method_config=c.method_config AND c2.target=c.target "
                "ORDER BY c2.created DESC, c2.rowid DESC LIMIT 1)"
            )
        sql = (_ROWS + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY c.created, c.rowid, m.batch_size")
        return [_decode(r, keep_items) for r in self.db.execute(sql, args)]

    def cell(self, cell_key: str) -> list[dict[str, Any]]:
        """The current stored result of one cell: its newest ok row (else its newest failed
        one), one tidy row per batch size, with its packed per-item results (`items_correct`,
        which `harness tune` splits into its search and held-out halves); [] when it was
        never stored."""
        row = self.db.execute(
            "SELECT run_id FROM cells WHERE cell_key=? ORDER BY status='ok' DESC, created DESC,"
            " rowid DESC LIMIT 1", (cell_key,)).fetchone()
        if row is None:
            return []
        sql = _ROWS + " WHERE c.cell_key=? AND c.run_id=? ORDER BY m.batch_size"
        return [_decode(r, keep_items=True) for r in self.db.execute(sql, (cell_key, row[0]))]

    def put_trial(self, trial: dict[str, Any]) -> None:
        """Record (or update) one tuner trial; its cells are stored as every cell is."""
        self._insert("trials", {"created": now(), **trial})

    def trials(self, suite: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM trials" + (" WHERE suite=?" if suite else "") + " ORDER BY study, trial"
        return [_decode(r) for r in self.db.execute(sql, (suite,) if suite else ())]


# the baseline a row's model came from (same baseline_key, target and evaluation items, ok,
# with a runtime accuracy), from any run: its own run's, else the newest. The latest rows may
# hold a newer profile's baseline in its place, so it is looked up in the whole history; its
# accuracy and its per-item vector come from that one row.
_BASELINE_OF = (
    "SELECT b.rowid FROM cells b WHERE b.method='baseline' AND b.status='ok' "
    "AND b.baseline_key=c.baseline_key AND b.target=c.target "
    "AND b.eval_samples IS c.eval_samples AND b.top1_target IS NOT NULL")
_ROWS = ("SELECT c.*, " + ", ".join(f"m.{col}" for col in MEASUREMENT_COLUMNS)
         + ", base.top1_target AS baseline_top1_target"
         + ", base.items_correct AS baseline_items_correct"
         + ", aa.speedup_ci_low AS aa_ci_low, aa.speedup_ci_high AS aa_ci_high"
         + " FROM cells c LEFT JOIN measurements m ON m.cell_key=c.cell_key AND m.run_id=c.run_id"
         + f" LEFT JOIN cells base ON base.rowid = COALESCE(({_BASELINE_OF} AND "
         "b.run_id=c.run_id LIMIT 1), "
         f"({_BASELINE_OF} ORDER BY b.created DESC, b.rowid DESC LIMIT 1))"
         # that baseline's A/A at the row's batch size: the noise floor of its own baseline,
         # even where a newer run's baseline row (failed, or another profile) is the latest
         " LEFT JOIN measurements aa ON aa.cell_key=base.cell_key AND aa.run_id=base.run_id"
         " AND aa.batch_size=m.batch_size")


TIMEOUT_ENV = "COMPRESSMARK_STORE_TIMEOUT"
DEFAULT_TIMEOUT = 30.0  # seconds a store open or write waits for another process's lock


def store_timeout() -> float:
    """How long to wait for a locked store: $COMPRESSMARK_STORE_TIMEOUT seconds, else 30."""
    raw = os.environ.get(TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise UsageError(f"{TIMEOUT_ENV}={raw!r} must be a number of seconds >= 0")
    return value


def _uri(path: Path, mode: str = "ro", immutable: bool = False) -> str:
    """SQLite's URI for opening the existing file `path` (`ro`: nothing is written; `rw`: it
    is never created)."""
    from urllib.parse import quote

    return f"file:{quote(str(path.resolve()))}?mode={mode}" + ("&immutable=1" if immutable else "")


def connect_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """`path` opened read-only, also where its folder cannot be written.

    A store is in WAL mode, and SQLite reads a WAL-mode file only beside a `-shm` index it
    can use or create: in a folder it cannot write (a read-only mount, a store someone
    shared, a container volume mounted `:ro`) the plain read-only open fails with "unable
    to open database file". There, the file is opened as immutable (no locks, no index),
    which is exact while nobody writes the file itself. A writer appends to the `-wal` file
    beside it, and copies that into the file only at a checkpoint (every ~1000 pages, and when
    it closes): a non-empty `-wal` is a writer at work or writes not yet merged, which an
    immutable read would not see. That is refused, naming it, rather than read without
    them.

    Where nothing has the file open (no `-shm` beside it: every WAL connection keeps one), no
    interrupted writer left a journal to roll back, and the folder can be written, it is
    opened for writing with writing switched off (`query_only`): a read-only connection
    leaves the `-wal` and `-shm` files it made beside the store when it closes, and this one,
    the last to close, removes them, so a read leaves a results folder (under version
    control, say) as it found it."""
    parent = path.resolve().parent
    wal, shm, journal = (path.with_name(path.name + end) for end in ("-wal", "-shm", "-journal"))
    if not any(f.exists() for f in (wal, shm, journal)) and os.access(path, os.W_OK) \
            and os.access(parent, os.W_OK):
        db = sqlite3.connect(_uri(path, "rw"), uri=True, timeout=timeout)
        db.execute("PRAGMA query_only=1")
        return db
    db = sqlite3.connect(_uri(path), uri=True, timeout=timeout)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return db
    except sqlite3.OperationalError as exc:
        db.close()
        if "unable to open" not in str(exc).lower() or os.access(parent, os.W_OK):
            raise
    if wal.exists() and wal.stat().st_size > 0:
        raise UsageError(f"store {path}: its last writes are still in {wal.name}, which SQLite "
                         f"cannot merge in a folder it cannot write ({parent}); "
                         f"copy {path.name} and {wal.name} together to a writable folder")
    return sqlite3.connect(_uri(path, immutable=True), uri=True, timeout=timeout)


def store_error(path: Path, exc: BaseException, timeout: float) -> UsageError:
    """One line for a store that cannot be used, saying what is wrong and what to do."""
    text = " ".join(str(exc).split())
    low = text.lower()
    if isinstance(exc, OSError):
        why = exc.strerror or text
        return UsageError(f"store {path}: cannot create its folder {path.parent} ({why}); "
                          "pass another --store")
    if "not a database" in low or "malformed" in low:
        return UsageError(f"store {path} is not a SQLite database ({text}); pass another "
                          "--store, or move the file away")
    if "locked" in low or "busy" in low:
        return UsageError(f"store {path} is locked by another process (waited {timeout:g} s; "
                          f"set {TIMEOUT_ENV} to wait longer)")
    if "readonly" in low or "read-only" in low:
        return UsageError(f"store {path} cannot be written ({text}); check its permissions or "
                          "pass another --store")
    if "unable to open" in low:
        return UsageError(f"store {path} cannot be opened ({text}): check the path and its "
                          "folder's permissions, or pass another --store")
    return UsageError(f"store {path}: {text}")


def _decode(row: sqlite3.Row, keep_items: bool = False) -> dict[str, Any]:
    out = dict(row)
    for k in JSON_COLUMNS:
        if isinstance(out.get(k), str):
            out[k] = json.loads(out[k])
    if "items_correct" in out:  # a cell row: the vectors become intervals, not columns
        own = out["items_correct"] if keep_items else out.pop("items_correct")
        ref = out.pop("baseline_items_correct", None)
        out.update(_intervals(own, ref, out.get("method") == "baseline"))
    return out


@functools.lru_cache(maxsize=4096)
def _intervals(own: str | None, ref: str | None, is_baseline: bool) -> dict[str, float | None]:
    """One cell's intervals, once for all its batch-size rows (they share its vectors)."""
    from harness.accuracy_ci import row_intervals

    return row_intervals(own, ref, is_baseline)
