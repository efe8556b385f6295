"""A uvicorn worker process ends with the ``plc serve`` process that started it (Linux).

With ``PLC_WORKERS`` > 1, uvicorn's supervisor (the ``plc serve`` process) starts each worker
as a child. When the supervisor is killed without a chance to stop them (SIGKILL, the OOM
killer), the workers used to go on serving as orphans: still holding the port, so a new
``plc serve`` could not bind it, and still writing to the database. Linux's parent-death
signal (prctl(2), ``PR_SET_PDEATHSIG``) sends each worker SIGTERM when its parent dies, which
uvicorn handles as a graceful shutdown (requests in flight are answered first).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
"""prctl(2) option number (linux/prctl.h)."""


def end_with_parent() -> bool:
    """Have the kernel send this process SIGTERM when the process that started it dies.

    Only for a process started by :mod:`multiprocessing` (uvicorn's workers) on Linux;
    anywhere else (the one process of ``plc serve`` with one worker, another OS) nothing
    is done. A parent that died before the request was made is caught too: the process then
    sends itself SIGTERM at once.

    Linux sends the signal when the parent *thread* that started the process ends, not only
    the parent process: call this only in processes started from a thread that lives as long
    as its process (uvicorn 0.54 starts and replaces its workers from the main thread; the
    validation child, started from a worker thread, must not call it).

    Returns:
        True when the signal is arranged (or was sent), False when nothing was done.
    """
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return False
    if os.getppid() != parent.pid:  # orphaned already: the kernel will not signal it
        os.kill(os.getpid(), signal.SIGTERM)
    return True
