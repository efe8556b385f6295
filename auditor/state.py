"""The auditor's own state: one SQLite file (stdlib ``sqlite3``), never the directory's.

Schema (every table created on first open; ``meta.schema_version`` = :data:`SCHEMA_VERSION`)::

    meta(key TEXT PRIMARY KEY, value TEXT)       run bookkeeping, see the keys below
    ops(did, cid, seq, created_at_ms,            one row per op seen, PRIMARY KEY (did, cid)
        rotation_keys,                           space-separated did:keys the op grants
        allowed,                                 how many of them (a prefix) may sign a child
        key_index,                               signer's index in prev's keys; NULL if refused
        last_child,                              CID of its newest accepted child
        nullified, tombstone,                    0/1
        status,                                  'ok' | 'refused' | 'excused'
        position)                                byte offset of the line in a file source
    excused_dids(did PRIMARY KEY, from_seq, cid) DIDs excused by an announced removal
    tree_chunk(chunk PRIMARY KEY, hashes BLOB)   stored tlog hashes (auditor.treestore)
    leaf_seq(leaf PRIMARY KEY, seq)              leaves whose seq breaks the run "previous
                                                 leaf's seq + 1" (gaps, repeats): leaf i has
                                                 seq i + 1 until the first break
    checkpoints(id, origin, tree_size,           every checkpoint seen, in the order seen;
        root_hash, note UNIQUE, signature,       signature 'verified' | 'unverified';
        status)                                  status 'pending' | 'matched' | 'mismatch'
    findings(id, key UNIQUE, class, severity,    every finding, JSON in body (indexed by
        seq, did, cid, body)                     did, seq: auditor.evidence_chain)

``meta`` keys: ``schema_version``, ``source`` (file path or directory URL), ``source_kind``
(``file`` | ``http``), ``cursor_seq`` (last ``seq`` fully processed), ``cursor_offset`` (file
byte offset after it), ``tree_size``, ``ops_read``, ``tlog`` (``1`` if the directory serves
``/tlog/``), ``finished`` (``1`` after a run reached the end of its source),
``created_at_high_water`` (the line with the highest ``createdAt`` read so far,
:mod:`auditor.backdating`).

Rows are written by the coordinator (meta, tree, checkpoints, its findings) and by the worker
processes (ops, excused_dids, their findings) in short transactions; WAL mode lets them read
while another writes. Replaying a batch twice is harmless: an op row with the same ``seq``
means "already applied", and findings are keyed.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import orjson

from auditor.chain import DidHistory, OpState
from auditor.findings import Finding, finding_from_json
from plc.tlog.checkpoint import MAX_TREE_SIZE

SCHEMA_VERSION = 1
CACHE_KIB = 65536
"""SQLite page cache per connection (64 MiB): the ``ops`` B-tree is read and written at random
DIDs, so a larger cache saves most page reads on big replays."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ops (
    did TEXT NOT NULL,
    cid TEXT NOT NULL,
    seq INTEGER NOT NULL CHECK (seq >= 1),
    created_at_ms INTEGER NOT NULL,
    rotation_keys TEXT NOT NULL,
    allowed INTEGER NOT NULL CHECK (allowed >= 0),
    key_index INTEGER,
    last_child TEXT,
    nullified INTEGER NOT NULL CHECK (nullified IN (0, 1)),
    tombstone INTEGER NOT NULL CHECK (tombstone IN (0, 1)),
    status TEXT NOT NULL CHECK (status IN ('ok', 'refused', 'excused')),
    position INTEGER,
    PRIMARY KEY (did, cid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ops_by_seq ON ops (seq);
CREATE TABLE IF NOT EXISTS excused_dids (
    did TEXT PRIMARY KEY, from_seq INTEGER NOT NULL, cid TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tree_chunk (chunk INTEGER PRIMARY KEY, hashes BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS leaf_seq (leaf INTEGER PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    tree_size INTEGER NOT NULL CHECK (tree_size >= 0),
    root_hash BLOB NOT NULL CHECK (length(root_hash) = 32),
    note TEXT NOT NULL UNIQUE,
    signature TEXT NOT NULL CHECK (signature IN ('verified', 'unverified')),
    status TEXT NOT NULL CHECK (status IN ('pending', 'matched', 'mismatch'))
);
CREATE TABLE IF NOT EXISTS findings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    class TEXT NOT NULL,
    severity TEXT NOT NULL,
    seq INTEGER,
    did TEXT,
    cid TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS findings_by_op ON findings (did, seq);
"""

SQLITE_MAX = MAX_TREE_SIZE
"""The largest SQLite INTEGER. A larger number (a ``seq`` a directory made up) is stored
clamped to it where only order matters (``findings.seq``, ``leaf_seq.seq``); findings keep
the exact value in their JSON body."""

_MAX_PARAMS = 30000
"""Bound parameters per query (SQLite >= 3.32 allows 32766)."""

_OP_COLUMNS = (
    "cid, seq, created_at_ms, rotation_keys, allowed, key_index, last_child, nullified, "
    "tombstone, status, position"
)


def default_state_path(source: str) -> Path:
    """``plc-audit-<16 hex of sha256(source)>.sqlite3`` in the working directory, where
    ``source`` is the absolute path of a file or the directory URL (trailing ``/`` dropped)."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]
    return Path.cwd() / f"plc-audit-{digest}.sqlite3"


def connect(path: Path | str, *, create: bool = True) -> sqlite3.Connection:
    """Open (and if needed create) a state file. A file that already holds something else
    (a foreign SQLite database, a state of another schema version) is refused before
    anything is written to it: no table is added, its journal mode is not changed.

    Raises:
        FileNotFoundError: ``create`` is False and the file does not exist.
        sqlite3.DatabaseError: not a state file of this schema version (not SQLite, a
            non-empty database without the auditor's ``meta`` table, another version).
    """
    path = Path(path)
    if not create and not path.exists():
        raise FileNotFoundError(f"no state file at {path}")
    if path.exists() and path.stat().st_size:
        _refuse_foreign(path)
    conn = sqlite3.connect(path, timeout=120.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout=120000")
        # The checks again on this connection, before any DDL (the file may have been
        # created by another process since).
        version = _schema_version(conn)
        if version is None:
            # One transaction: a state is never left with tables but no schema_version.
            conn.executescript(
                "BEGIN IMMEDIATE;"
                + _SCHEMA
                + "INSERT OR IGNORE INTO meta (key, value) VALUES "
                + f"('schema_version', '{SCHEMA_VERSION}');COMMIT;"
            )
        elif version != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(
                f"state schema version {version}, expected {SCHEMA_VERSION}"
            )
        else:
            # Ours: tables added to this version later (leaf_seq, findings_by_op) are made
            # in states written before them (every statement is IF NOT EXISTS).
            conn.executescript(_SCHEMA)
        conn.execute("PRAGMA journal_mode=WAL")
        # No fsync: the state survives the auditor being killed at any point (WAL, one
        # transaction per batch), not an OS crash or power loss; fsyncs at WAL checkpoints
        # cost a quarter of replay time. A state corrupted that way fails the tree check on
        # resume.
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    except BaseException:
        conn.close()
        raise
    return conn


def _schema_version(conn: sqlite3.Connection) -> str | None:
    """``meta.schema_version`` of the database behind ``conn``, or None when it is empty (no
    table, index, view or trigger at all).

    Raises:
        sqlite3.DatabaseError: not SQLite, or a non-empty database that is no auditor state.
    """
    names = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
    if not names:
        return None
    if "meta" not in names:
        raise sqlite3.DatabaseError("a SQLite database without the auditor's meta table")
    version = get_meta(conn, "schema_version")
    if version is None:
        raise sqlite3.DatabaseError("a SQLite database without the auditor's schema_version")
    return version


def _refuse_foreign(path: Path) -> None:
    """Check, read-only, that the existing file at ``path`` is empty SQLite or a state of
    this schema version.

    Raises:
        sqlite3.DatabaseError: it is not.
    """
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=120.0)
    try:
        version = _schema_version(conn)
    finally:
        conn.close()
    if version is not None and version != str(SCHEMA_VERSION):
        raise sqlite3.DatabaseError(f"state schema version {version}, expected {SCHEMA_VERSION}")


_TABLES = frozenset(
    {"meta", "ops", "excused_dids", "tree_chunk", "leaf_seq", "checkpoints", "findings"}
)


def open_readonly(path: Path | str) -> sqlite3.Connection:
    """Open an existing state file read-only (SQLite URI ``mode=ro``), for ``compare`` and
    ``report``: nothing is created, migrated or written, so a file that is not a state is
    left byte for byte as it was.

    Raises:
        FileNotFoundError: no file at ``path``.
        sqlite3.DatabaseError: not an auditor state file of this schema version (not SQLite,
            no ``meta`` table, another schema version, tables missing).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no state file at {path}")
    try:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=120.0, isolation_level=None
        )
    except sqlite3.Error as exc:
        raise sqlite3.DatabaseError(f"{path} is not an auditor state file ({exc})") from exc
    try:
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master")}
        version = get_meta(conn, "schema_version") if "meta" in tables else None
        if version is None:
            raise sqlite3.DatabaseError("no auditor meta table")
        if version != str(SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"schema version {version}, expected {SCHEMA_VERSION}")
        if not _TABLES <= tables:
            raise sqlite3.DatabaseError(f"tables missing: {', '.join(sorted(_TABLES - tables))}")
    except sqlite3.Error as exc:
        conn.close()
        raise sqlite3.DatabaseError(f"{path} is not an auditor state file ({exc})") from exc
    return conn


def bound_source(path: Path | str) -> str | None:
    """The ``source`` of the auditor state file at ``path`` ("" for a state not yet bound to
    one), or None when ``path`` is not an auditor state file (not SQLite, no ``meta``
    table). Opens the file read-only; never changes it."""
    try:
        conn = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        rows = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    if "schema_version" not in rows:
        return None
    return str(rows.get("source", ""))


def get_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """The ``meta`` value of ``key``, or None."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def get_meta_int(conn: sqlite3.Connection, key: str, default: int = 0) -> int:
    """The ``meta`` value of ``key`` as an int (``default`` when absent)."""
    value = get_meta(conn, key)
    return default if value is None else int(value)


def set_meta(conn: sqlite3.Connection, key: str, value: str | int) -> None:
    """Set one ``meta`` value (inside the caller's transaction, if any)."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, str(value)),
    )


def _row_to_state(row: Sequence[object]) -> OpState:
    keys = str(row[3])
    return OpState(
        cid=str(row[0]),
        seq=int(row[1]),  # type: ignore[call-overload]
        created_ms=int(row[2]),  # type: ignore[call-overload]
        rotation_keys=tuple(keys.split(" ")) if keys else (),
        allowed=int(row[4]),  # type: ignore[call-overload]
        key_index=None if row[5] is None else int(row[5]),  # type: ignore[call-overload]
        last_child=None if row[6] is None else str(row[6]),
        nullified=bool(row[7]),
        tombstone=bool(row[8]),
        status=str(row[9]),
        position=None if row[10] is None else int(row[10]),  # type: ignore[call-overload]
        stored=True,
    )


def load_histories(conn: sqlite3.Connection, dids: Iterable[str]) -> dict[str, DidHistory]:
    """Every stored op of each DID in ``dids`` (DIDs without ops get an empty history)."""
    wanted = list(dict.fromkeys(dids))
    histories = {did: DidHistory(did) for did in wanted}
    rows: list[tuple[object, ...]] = []
    for start in range(0, len(wanted), _MAX_PARAMS):
        chunk = wanted[start : start + _MAX_PARAMS]
        marks = ",".join("?" * len(chunk))
        rows += conn.execute(
            f"SELECT did, {_OP_COLUMNS} FROM ops WHERE did IN ({marks})", chunk
        ).fetchall()
    rows.sort(key=lambda row: row[2])  # type: ignore[arg-type,return-value]  # by seq
    for row in rows:
        state = _row_to_state(row[1:])
        histories[str(row[0])].ops[state.cid] = state
    return histories


def save_states(conn: sqlite3.Connection, rows: Iterable[tuple[str, OpState]]) -> None:
    """Write the given ``(did, state)`` rows: new ops are inserted, ops already stored get
    their three mutable columns updated in place (an ``INSERT OR REPLACE`` would delete and
    re-insert the row and its ``seq`` index entry: a third of a replay's SQLite time)."""
    new: list[tuple[object, ...]] = []
    changed: list[tuple[object, ...]] = []
    for did, s in rows:
        if s.stored:
            changed.append((s.allowed, s.last_child, int(s.nullified), did, s.cid))
            continue
        new.append(
            (
                did,
                s.cid,
                s.seq,
                s.created_ms,
                " ".join(s.rotation_keys),
                s.allowed,
                s.key_index,
                s.last_child,
                int(s.nullified),
                int(s.tombstone),
                s.status,
                s.position,
            )
        )
    conn.executemany(
        f"INSERT OR REPLACE INTO ops (did, {_OP_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", new
    )
    conn.executemany(
        "UPDATE ops SET allowed = ?, last_child = ?, nullified = ? WHERE did = ? AND cid = ?",
        changed,
    )


def seq_of_leaf(conn: sqlite3.Connection, leaf: int) -> int:
    """The ``seq`` of the line at leaf index ``leaf`` (0-based, in read order): ``leaf + 1``
    in a gapless log, else counted on from the nearest break at or before it. Never above
    :data:`SQLITE_MAX` (a line whose ``seq`` is larger has this clamped one)."""
    row = conn.execute(
        "SELECT leaf, seq FROM leaf_seq WHERE leaf <= ? ORDER BY leaf DESC LIMIT 1", (leaf,)
    ).fetchone()
    return min(leaf + 1 if row is None else int(row[1]) + leaf - int(row[0]), SQLITE_MAX)


def first_unread_seq(conn: sqlite3.Connection, tree_size: int) -> int:
    """The smallest ``seq`` (>= 1) that none of the leaves ``0 .. tree_size - 1`` has: the
    leaves form runs of consecutive ``seq`` values (see :func:`seq_of_leaf`), and the answer
    is the first value no run covers."""
    breaks = conn.execute(
        "SELECT leaf, seq FROM leaf_seq WHERE leaf < ? ORDER BY leaf", (tree_size,)
    ).fetchall()
    starts = [(0, 1)] if not breaks or int(breaks[0][0]) > 0 else []
    starts += [(int(leaf), int(seq)) for leaf, seq in breaks]
    runs = []  # (first seq, last seq) of each run
    for k, (leaf, seq) in enumerate(starts):
        end = int(starts[k + 1][0]) if k + 1 < len(starts) else tree_size
        if end > leaf:
            runs.append((seq, seq + end - leaf - 1))
    wanted = 1
    for first, last in sorted(runs):
        if first > wanted:
            break
        wanted = max(wanted, last + 1)
    return wanted


def _storable(value: int) -> int:
    """``value`` clamped to SQLite's INTEGER range."""
    return max(-SQLITE_MAX - 1, min(value, SQLITE_MAX))


def add_leaf_seqs(conn: sqlite3.Connection, breaks: Iterable[tuple[int, int]]) -> None:
    """Record ``(leaf, seq)`` breaks (inside the caller's transaction); a ``seq`` above
    :data:`SQLITE_MAX` is stored clamped."""
    conn.executemany(
        "INSERT OR REPLACE INTO leaf_seq (leaf, seq) VALUES (?, ?)",
        [(leaf, _storable(seq)) for leaf, seq in breaks],
    )


def op_at_seq(conn: sqlite3.Connection, seq: int) -> tuple[str, str, int | None] | None:
    """``(did, cid, position)`` of the op stored with ``seq``, or None."""
    row = conn.execute(
        "SELECT did, cid, position FROM ops WHERE seq = ? LIMIT 1", (seq,)
    ).fetchone()
    if row is None:
        return None
    return str(row[0]), str(row[1]), None if row[2] is None else int(row[2])


def excused_dids(conn: sqlite3.Connection) -> dict[str, int]:
    """DID → ``seq`` from which its ops are excused by an announced removal."""
    return {str(d): int(s) for d, s in conn.execute("SELECT did, from_seq FROM excused_dids")}


def add_excused(conn: sqlite3.Connection, did: str, from_seq: int, cid: str) -> None:
    """Record that ``did`` is excused from ``from_seq`` on (first listed CID wins)."""
    conn.execute(
        "INSERT OR IGNORE INTO excused_dids (did, from_seq, cid) VALUES (?, ?, ?)",
        (did, from_seq, cid),
    )


def store_findings(conn: sqlite3.Connection, findings: Iterable[Finding]) -> int:
    """Store findings not stored before (by :attr:`Finding.key`); return how many were new.
    The ``seq`` column (for ordering) is clamped to SQLite's range; the body keeps it exact."""
    before = conn.total_changes
    conn.executemany(
        "INSERT OR IGNORE INTO findings (key, class, severity, seq, did, cid, body) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                f.key,
                f.cls,
                f.severity,
                None if f.seq is None else _storable(f.seq),
                f.did,
                f.cid,
                f.dumps().decode("utf-8"),
            )
            for f in findings
        ],
    )
    return conn.total_changes - before


def load_findings(conn: sqlite3.Connection, *, after_id: int = 0) -> list[tuple[int, Finding]]:
    """Stored findings with ``id > after_id``, ordered by ``seq`` (nulls last), then ``id``."""
    rows = conn.execute(
        "SELECT id, body FROM findings WHERE id > ? ORDER BY seq IS NULL, seq, id",
        (after_id,),
    ).fetchall()
    return [(int(i), finding_from_json(orjson.loads(body))) for i, body in rows]


def finding_of_op(
    conn: sqlite3.Connection, classes: Iterable[str], did: str, seq: int, cid: str
) -> dict[str, Any] | None:
    """The JSON object of the stored finding of one of ``classes`` about the op ``(did,
    seq, cid)``, or None (for the evidence a per-DID rule finding extends,
    :mod:`auditor.evidence_chain`)."""
    wanted = sorted(classes)
    marks = ",".join("?" * len(wanted))
    row = conn.execute(
        f"SELECT body FROM findings WHERE did = ? AND seq = ? AND cid = ? AND class IN ({marks}) "
        "ORDER BY id LIMIT 1",
        (did, _storable(seq), cid, *wanted),
    ).fetchone()
    if row is None:
        return None
    value = orjson.loads(row[0])
    return value if isinstance(value, dict) else None


def max_finding_id(conn: sqlite3.Connection) -> int:
    """The largest finding id stored so far (0 if none)."""
    row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM findings").fetchone()
    return int(row[0])
