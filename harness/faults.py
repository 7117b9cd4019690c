"""Fault injection for the fault-tolerance tests: kill this process at a named stage, once.

`COMPRESSMARK_FAULT=<stage>` with `COMPRESSMARK_FAULT_MARKER=<path>`: the first process to reach
`checkpoint(<stage>)` creates the marker and sends itself SIGKILL (a real kill -9: no cleanup,
no finally blocks, no atexit); later arrivals find the marker and go on, so a retried step or a
re-run completes. With `COMPRESSMARK_FAULT_ACTION=enospc` it raises the OSError a full disk
gives instead; with `pause` it waits there until `<marker>.release` exists (at most 5 minutes),
so a test can hold one process mid-step while another runs. Unset (the default) it costs one
dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal
import time

STAGES = ("baseline-train", "compress", "finetune", "quantize", "export", "measure",
          "store-write", "tune-tell")  # tune-tell: a trial's cells stored, Optuna not told


def checkpoint(stage: str) -> None:
    if os.environ.get("COMPRESSMARK_FAULT") != stage:
        return
    marker = os.environ.get("COMPRESSMARK_FAULT_MARKER")
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, f"{stage} {os.getpid()}\n".encode())
    os.close(fd)
    action = os.environ.get("COMPRESSMARK_FAULT_ACTION")
    if action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"simulated at {stage}")
    if action == "pause":
        deadline = time.monotonic() + 300
        while not os.path.exists(marker + ".release") and time.monotonic() < deadline:
            time.sleep(0.05)
        return
    os.kill(os.getpid(), signal.SIGKILL)
