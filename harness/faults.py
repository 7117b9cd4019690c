"""Fault injection for the fault-tolerance tests: kill this process at a named stage, once.

`COMPRESSMARK_FAULT=<stage>` with `COMPRESSMARK_FAULT_MARKER=<path>`: the first process to reach
`checkpoint(<stage>)` creates the marker and sends itself SIGKILL (a real kill -9: no cleanup,
no finally blocks, no atexit); later arrivals find the marker and go on, so a retried step or a
re-run completes. With `COMPRESSMARK_FAULT_ACTION=enospc` it raises the OSError a full disk
gives instead; with `pause` it waits there until `<marker>.release` exists (at most 5 minutes),
so a test can hold one process mid-step while another runs. `COMPRESSMARK_FAULT_2=<stage>`
with `COMPRESSMARK_FAULT_2_MARKER` / `_ACTION` arms a second fault beside it, with its own
marker (one Ray cluster's workers, whose environment is fixed when their node starts, can then
be killed at one stage and held at another). Unset (the default) it costs two dictionary
lookups.
"""

from __future__ import annotations

import errno
import os
import signal
import time

STAGES = ("baseline-train", "compress", "finetune", "quantize", "export", "measure",
          "store-write", "tune-tell")  # tune-tell: a trial's cells stored, Optuna not told


def checkpoint(stage: str) -> None:
    for prefix in ("COMPRESSMARK_FAULT", "COMPRESSMARK_FAULT_2"):
        if os.environ.get(prefix) == stage:
            _fire(stage, os.environ.get(f"{prefix}_MARKER"), os.environ.get(f"{prefix}_ACTION"))


def _fire(stage: str, marker: str | None, action: str | None) -> None:
    """The first process here creates `marker`, then acts; later ones find it and go on."""
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{stage} {os.getpid()}\n".encode())
    os.close(fd)
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"simulated at {stage}")
    if action == "pause":
        deadline = time.monotonic() + 300
        while not os.path.exists(marker + ".release") and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    os.kill(os.getpid(), signal.SIGKILL)
