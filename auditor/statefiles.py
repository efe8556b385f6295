"""State files as files: replacing one only when it is the same source's, and removing one
a failed first run left empty."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from auditor import state
from auditor.errors import AuditFailed
from auditor.sources import SourceSpec


def remove_state(path: Path, spec: SourceSpec) -> None:
    """Delete the state file of ``spec`` at ``path`` and its WAL companions (a fresh start).
    Anything else at ``path`` (an export file given as ``--state`` by mistake, another
    source's state) is left alone.

    Raises:
        AuditFailed: ``path`` holds something other than an auditor state of ``spec``.
    """
    if path.exists():
        bound = state.bound_source(path)
        if bound is None:
            raise AuditFailed(f"refusing to replace {path}: it is not an auditor state file")
        if bound not in ("", spec.location):  # "": created, never bound to a source
            raise AuditFailed(
                f"refusing to replace {path}: it is the state of {bound}, not {spec.location}"
            )
    delete_state_files(path)


def holds_nothing(path: Path) -> bool:
    """Whether the state at ``path`` has no entry, finding or checkpoint (False if unreadable:
    then it is left for the user to look at)."""
    try:
        conn = state.open_readonly(path)  # never written: it may be something else
    except (OSError, sqlite3.Error):
        return False
    try:
        counts = [
            conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("findings", "checkpoints")
        ]
        return not any(counts) and not state.get_meta_int(conn, "tree_size")
    except sqlite3.Error:
        return False
    finally:
        conn.close()


def delete_state_files(path: Path) -> None:
    """Delete the state file at ``path`` and its WAL companions (whatever exists)."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
