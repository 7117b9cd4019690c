"""Fault injection for the fault-tolerance tests: kill this process at a named stage, once.

`COMPRESSMARK_FAULT=<stage>` with `COMPRESSMARK_FAULT_MARKER=<path>`: the first process to reach
`checkpoint(<stage>)` creates the marker and sends itself SIGKILL (a real kill -9: no cleanup,
no finally blocks, no atexit); later arrivals find the marker and go on, so a retried step or a
re-run completes. Stages: baseline-train, compress, export, measure, store-write. Unset (the
default) it costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

STAGES = ("baseline-train", "compress", "export", "measure", "store-write")


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
    os.kill(os.getpid(), signal.SIGKILL)
