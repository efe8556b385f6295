"""One run at a time per state file.

Two ``sync`` or ``verify`` runs on one state would both replay from the same cursor and
count the same entries twice (``ops_read``), and a ``--fresh`` one could delete the other's
state. A run holds an exclusive ``flock`` on a companion file ``<state>-lock`` from before
it touches the state until it ends (released by the kernel if the process dies); a second
run is refused at once. The companion file is removed when the run ends. ``report`` and
``compare`` only read, and take no lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from auditor.errors import AuditFailed


def lock_path(state_path: Path) -> Path:
    """The companion lock file of ``state_path``."""
    return Path(str(state_path) + "-lock")


@contextmanager
def state_lock(state_path: Path) -> Iterator[None]:
    """Hold the run lock of ``state_path`` for the ``with`` block.

    Raises:
        AuditFailed: another run holds it, or the lock file cannot be created (a missing
            or read-only directory).
    """
    path = lock_path(state_path)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise AuditFailed(f"cannot create {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AuditFailed(
                f"another plc-audit run is using the state file {state_path}; wait for it "
                "to end (or give another --state)"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the file was removed by a run that just ended: lock the new one
    try:
        yield
    finally:
        # Removed while still held, so a run that opened it meanwhile sees another inode.
        path.unlink(missing_ok=True)
        os.close(fd)
