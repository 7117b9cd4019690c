"""Verified cache entries: a folder of files plus `meta.json`, which records every file's sha256.

Why: the cache (trained baselines, compressed models, exported graphs, INT8 artifacts) is reused
across runs and gets copied between machines. A run killed mid-write, a full disk, a truncated
copy or a planted file must never break a sweep for good, and must never run code. So:

- every file this module writes goes to a temporary name in the same folder and is moved into
  place with `os.replace` (readers see the old file or the new one, never half of one);
- `meta.json` is written last, atomically, and lists every file of the entry with its size
  and sha256: an entry without it, or whose files do not match it, does not exist. It holds
  the sha256 of its own content too (`seal`): the metrics and accuracies in its `data` go
  straight into a row, and a flipped digit there must be a bad entry, not a wrong number;
- an entry's folder that is itself a link is refused and the link removed (never followed:
  a discard through it would delete, and a rebuild write, outside the cache);
- `read_entry` checks all of that before anything is parsed; a bad entry is discarded (its
  `meta.json` first, so a crash while deleting leaves no half-valid entry) with one log line,
  and the caller rebuilds it;
- one process at a time reads-or-builds an entry (`building`: an advisory lock file under
  `<cache>/.locks/`). Two sweeps sharing a cache (a `run` beside a `tune`, two users, a retried Ray step)
  would otherwise both build it, and the second would take the first's half-written folder for
  a broken entry and delete it under it; with the lock the second waits, then finds the entry.
  The kernel drops the lock of a killed process, so a kill never leaves an entry locked.
- a process using an entry's files holds a shared lock on its `.in-use` file (`use`, taken
  before the entry is read and kept while its model is in memory); `--force` takes it
  exclusively (`claim`) before deleting the entry, so a rebuild never pulls files from under
  another sweep still timing from them (it waits, one line, for at most CLAIM_WAIT_S). These
  are POSIX record locks (`fcntl.lockf`), not `flock`: a process turning its own shared lock
  into an exclusive one keeps the shared lock while it waits or gives up (Linux's `flock`
  drops it first, so a `claim` that waited would leave the entry unheld), a process never
  locks against itself, and NFS (a shared cache on a Ray cluster) implements them natively.

What it must never do: unpickle, import or execute anything from the cache (entries hold JSON
and raw bytes; turning them into models is `harness.modeldata`'s job, which parses only
safetensors and JSON), follow a name out of the entry's folder, or raise on a bad entry (a
cache problem is a cache miss, never a failed cell).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

META = "meta.json"
FORMAT = 2  # 2: meta.json carries the sha256 of its own content
_TMP = ".tmp-"  # prefix of files being written; never part of an entry
LOCKS = ".locks"  # beside the kinds of entries (baselines/, compressed/): one lock file each


class CacheError(Exception):
    """A cache entry that cannot be used: the caller discards it and rebuilds."""


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """`data` to `path` through a temporary file in the same folder, fsynced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_TMP}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _safe_name(name: Any) -> bool:
    """A relative POSIX path inside the entry: no absolute path, no `..`, no empty parts."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    p = PurePosixPath(name)
    return not p.is_absolute() and all(part not in ("", ".", "..") for part in p.parts)


@dataclass(frozen=True)
class Entry:
    """A verified entry: the caller's `data` and the entry's files (name -> sha256)."""

    folder: Path
    data: dict[str, Any]
    files: dict[str, str]

    def path(self, name: str) -> Path:
        """The path of one of the entry's files (a CacheError for a name it does not list)."""
        if name not in self.files:
            raise CacheError(f"{self.folder.name}: no file '{name}' in the entry")
        return self.folder / name

    def read_bytes(self, name: str) -> bytes:
        """The file's bytes, checked against its sha256 again (the check and the parse see
        the same bytes)."""
        data = self.path(name).read_bytes()
        if hashlib.sha256(data).hexdigest() != self.files[name]:
            raise CacheError(f"{self.folder.name}/{name}: content changed since it was checked")
        return data


def entry_files(folder: Path) -> list[str]:
    """Every regular file under `folder` (relative POSIX names), but meta.json and temps."""
    out = []
    for p in sorted(folder.rglob("*")):
        name = p.relative_to(folder).as_posix()
        if (p.is_file() and not _linked(folder, name) and p.name != META
                and not p.name.startswith(_TMP)):
            out.append(name)
    return out


def _digest(meta: Mapping[str, Any]) -> str:
    """sha256 of meta.json's content but its own `sha256` field, in one canonical JSON form."""
    body = {k: v for k, v in meta.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(meta: dict[str, Any]) -> dict[str, Any]:
    """`meta` with the sha256 of its content added (`_check` recomputes it)."""
    return {**meta, "sha256": _digest(meta)}


def write_entry(folder: Path, data: Mapping[str, Any], files: Mapping[str, bytes] | None = None,
                include: list[str] | None = None) -> Entry:
    """Commit an entry: write `files` atomically, then `meta.json` (atomically, last) with
    `data` and the sha256 of `files` plus the files named in `include` (already in the folder,
    e.g. written by an exporter; default: every file in the folder)."""
    files = files or {}
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if not _safe_name(name) or name == META:
            raise ValueError(f"not a valid cache file name: {name!r}")
        atomic_write(folder / name, content)
    names = sorted(set(files) | set(entry_files(folder) if include is None else include))
    for name in names:
        if not _safe_name(name) or name == META or not (folder / name).is_file():
            raise ValueError(f"not a file of this entry: {name!r}")
    hashes = {name: sha256_file(folder / name) for name in names}
    plain = json.loads(json.dumps(dict(data), default=str))  # what a reader will parse
    meta = seal({"format": FORMAT,
                 "files": {n: {"sha256": h, "size": (folder / n).stat().st_size}
                           for n, h in hashes.items()},
                 "data": plain})
    atomic_write(folder / META, json.dumps(meta, sort_keys=True).encode())
    return Entry(folder, plain, hashes)


def discard(folder: Path) -> None:
    """Delete an entry: `meta.json` first (the entry stops existing), then the rest. A folder
    that is a link is unlinked, never followed; a meta.json that is a folder is removed too."""
    if folder.is_symlink():
        folder.unlink()
        return
    meta = folder / META
    if meta.is_dir() and not meta.is_symlink():
        shutil.rmtree(meta, ignore_errors=True)
    else:
        meta.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def _check(folder: Path) -> tuple[Entry | None, str]:
    """(the entry, "") when it verifies; (None, why) when not; (None, "") when absent."""
    if folder.is_symlink():
        return None, "the entry's folder is a link"
    meta_path = folder / META
    if not meta_path.is_file():
        return None, ("incomplete (no meta.json)" if folder.is_dir() and any(folder.iterdir())
                      else "")
    try:
        meta = json.loads(meta_path.read_bytes())
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        return None, f"unreadable meta.json ({type(exc).__name__})"
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        return None, "meta.json of another format"
    if meta.get("sha256") != _digest(meta):
        return None, "meta.json does not match its own sha256"
    files, data = meta.get("files"), meta.get("data")
    if not isinstance(files, dict) or not isinstance(data, dict):
        return None, "meta.json without files/data"
    hashes: dict[str, str] = {}
    for name, info in files.items():
        if not _safe_name(name) or name == META or not isinstance(info, dict):
            return None, f"meta.json names an invalid file {name!r}"
        path = folder / name
        if not path.is_file() or _linked(folder, name):
            return None, f"{name} is missing (or reached through a link)"
        if path.stat().st_size != info.get("size"):
            return None, f"{name} has the wrong size (truncated or replaced)"
        digest = sha256_file(path)
        if digest != info.get("sha256"):
            return None, f"{name} does not match its sha256"
        hashes[name] = digest
    return Entry(folder, data, hashes), ""


def _linked(folder: Path, name: str) -> bool:
    """Is any part of `name` under `folder` (the file, or a folder on the way) a symlink:
    a name that would be followed out of the entry's folder."""
    path = folder
    for part in Path(name).parts:
        path = path / part
        if path.is_symlink():
            return True
    return False


def peek(folder: Path) -> bool:
    """Does an entry look present (its meta.json exists)? For planning only: nothing is
    verified or read; `read_entry` decides when the entry is used."""
    return (folder / META).is_file()


def verified(folder: Path) -> Entry | None:
    """The verified entry in `folder`, or None; nothing is discarded or written (for planning:
    a bad entry is `read_entry`'s to reject when a run comes to it)."""
    try:
        return _check(folder)[0]
    except Exception:
        return None


def read_entry(folder: Path, log: Callable[[str], None]) -> Entry | None:
    """The verified entry in `folder`, or None (rebuild it). A present but bad entry (missing,
    truncated, unparseable or mismatching file) is discarded with one line through `log`."""
    try:
        entry, why = _check(folder)
    except Exception as exc:  # whatever a planted entry makes fail: a miss, never a crash
        entry, why = None, f"unreadable ({type(exc).__name__}: {exc})"
    if entry is None and why:
        reject(folder, why, log)
    return entry


def reject(folder: Path, why: str, log: Callable[[str], None]) -> None:
    """Discard a bad entry and say so in one line."""
    log(f"cache: discarding {folder.parent.name}/{folder.name}: {why}; rebuilding")
    discard(folder)


# how long `--force` waits for other processes to stop using an entry before it fails the
# step that would rebuild it (a long sweep beside it; or, on Ray, a worker of the same job
# that holds an entry a retried forced step would rebuild)
CLAIM_WAIT_S = 600.0
_IN_USE: dict[str, Any] = {}  # `_key(entry folder)` -> this process's open lock file


def _key(folder: Path) -> str:
    """An entry's name in `_IN_USE`: its kind's folder resolved (a relative cache dir, a
    link to it), the entry's own name as it is (an entry that is a link is never followed)."""
    return os.path.join(os.path.realpath(folder.parent), folder.name)


def _in_use(folder: Path) -> Any:
    """This process's open `.in-use` lock file of an entry, or None where none can be made.
    One per entry, whatever path names it (a relative cache dir, a link to it), and kept
    open until `release`: closing any descriptor of that file would drop all of this
    process's record locks on it."""
    key = _key(folder)
    f = _IN_USE.get(key)
    if f is None:
        lock = folder.parent.parent / LOCKS / f"{folder.parent.name}-{folder.name}.in-use"
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            f = _IN_USE[key] = open(lock, "a+b")
        except OSError:  # a cache one cannot write to: used unlocked, as before
            return None
    return f


def _lock_now(f: Any, mode: int) -> bool:
    """Take `mode` (fcntl.LOCK_SH or LOCK_EX) on the lock file at once: False where another
    process holds a lock it conflicts with (EAGAIN or EACCES, as POSIX allows either)."""
    import fcntl

    try:
        fcntl.lockf(f, mode | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        return False
    return True


def use(folder: Path, log: Callable[[str], None]) -> None:
    """Mark the entry in use by this process until `release` (or the process ends): a
    shared lock, so another process's `claim` waits. Taken before the entry is read; after
    this process's own `claim`, it turns the exclusive lock back into a shared one (at once:
    a process's record locks never conflict with its own)."""
    import fcntl

    f = _in_use(folder)
    if f is None:
        return
    if not _lock_now(f, fcntl.LOCK_SH):  # another process holds it exclusively
        log(f"cache: waiting for a --force rebuild of {folder.parent.name}/{folder.name}")
        fcntl.lockf(f, fcntl.LOCK_SH)


def claim(folder: Path, log: Callable[[str], None], wait_s: float = CLAIM_WAIT_S) -> None:
    """Before `--force` deletes the entry: take it exclusively, waiting (one line) while
    another process uses its files; a CacheError after `wait_s` (the step fails, the other
    sweep keeps its files). A shared lock this process held before stays held while it
    waits and after it gives up."""
    import fcntl

    f = _in_use(folder)
    if f is None:
        return
    deadline, said = time.monotonic() + wait_s, False
    while not _lock_now(f, fcntl.LOCK_EX):
        where = f"{folder.parent.name}/{folder.name}"
        if not said:
            log(f"cache: --force waits for another sweep using {where}")
            said = True
        if time.monotonic() > deadline:
            raise CacheError(f"--force: another sweep still uses {where} after "
                             f"{wait_s:g} s; run --force when no other sweep uses the "
                             "cache") from None
        time.sleep(0.2)


def held(folder: Path) -> bool:
    """Does this process hold the entry in use (`use` or `claim`, not yet `release`d)?"""
    return _key(folder) in _IN_USE


def release(folder: Path) -> None:
    """This process no longer uses the entry's files."""
    f = _IN_USE.pop(_key(folder), None)
    if f is not None:
        f.close()


@contextmanager
def building(folder: Path, log: Callable[[str], None]) -> Iterator[None]:
    """Hold `folder`'s entry lock (`<cache>/.locks/<kind>-<name>.lock`, out of the way of
    anything that lists entries) while reading or building the entry; says so in one line
    when another process holds it and waits for it."""
    import fcntl

    lock = folder.parent.parent / LOCKS / f"{folder.parent.name}-{folder.name}.lock"
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock, "a+b")
    except OSError as exc:  # a cache one cannot write to: read it unlocked, as before
        log(f"cache: no lock for {folder.parent.name}/{folder.name} ({exc.strerror})")
        yield
        return
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log(f"cache: waiting for another process building {folder.parent.name}/"
                f"{folder.name}")
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_with(path: Path, write: Callable[[Path], Any]) -> Path:
    """Let `write(tmp)` make the file at a temporary name beside `path` (an exporter that
    takes a path), then move it into place atomically. Returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{_TMP}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
