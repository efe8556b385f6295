"""Signing checkpoints of the transparency log (server side; design.md decision 5).

- The log's identity (origin + Ed25519 signer) is ``PLC_LOG_SIGNING_KEY`` / ``PLC_LOG_ORIGIN``
  when given, else generated on first start and stored in the database with the log.
- A timer (one per process) signs the current tree when it grew since the last checkpoint:
  every committed op is covered within one interval, and no more than one signature per
  interval is made however fast ops arrive. With several processes on one database, a tick
  that finds a checkpoint another process signed since this process's last tick signs nothing
  (:meth:`Checkpointer.tick`): that process signs again within its own interval, so the log
  still makes about one signature per interval, not one per process. When the process that
  signed last stops (a restart), an op may wait up to two intervals once.
- Before signing, the new tree is proven consistent with the newest stored checkpoint, from
  the stored hashes (RFC 6962 §2.1.2), and that checkpoint's root is recomputed. If either
  check fails (the database was altered), nothing is signed: the log never signs two
  inconsistent checkpoints, across restarts and processes (each signs a prefix of the one
  append-only tree; equal sizes give byte-identical notes, Ed25519 being deterministic).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime

from plc.config import ORIGIN_PATTERN, ORIGIN_RULE
from plc.errors import InvalidInput, PlcError, Unavailable
from plc.logging_setup import RepeatLimit
from plc.store.tlog_store import StoredCheckpoint, TlogStore
from plc.timestamps import to_ms
from plc.tlog.checkpoint import Checkpoint, sign_checkpoint
from plc.tlog.note import Signer, open_note, parse_note_unsafe, parse_signer_key
from plc.tlog.proof import consistency_proof, verify_consistency
from plc.tlog.tree import root_hash

log = logging.getLogger("plc.checkpoints")

ORIGIN_RE = re.compile(ORIGIN_PATTERN)
"""The characters a log origin may hold (``PLC_LOG_ORIGIN``)."""


def load_or_create_signer(
    tlog: TlogStore,
    signing_key: str | None = None,
    origin: str | None = None,
    *,
    create: bool = True,
) -> Signer:
    """The log's signer: from ``signing_key`` (note signer key text), else the one stored with
    the log, else (``create``) a new one (named ``origin`` or a generated
    ``plc-directory/<hex>``) that is stored for the next start. A key given in
    ``signing_key`` is never stored; with ``create`` False nothing is written.

    A log keeps its identity (C2SP tlog-checkpoint: witnesses and monitors pin the origin and
    key): the signer must be the one that signed the log's newest checkpoint, and the one
    stored with the log when a key is stored; a new key is generated only for a log that has
    no checkpoint yet.

    Raises:
        InvalidInput: an origin (or a given key's name) with characters outside
            ``[A-Za-z0-9._/-]``, a malformed key,
            a key whose name differs from the given origin, a key other than the one stored
            with the log, a signer that did not sign the log's newest checkpoint, or (not
            ``create``) no key given or stored.
    """
    if origin is not None and not ORIGIN_RE.fullmatch(origin):
        raise InvalidInput(f"PLC_LOG_ORIGIN {ORIGIN_RULE}")
    stored = tlog.signer_row()
    if signing_key:
        try:
            signer = parse_signer_key(signing_key)
        except PlcError as exc:
            raise InvalidInput("PLC_LOG_SIGNING_KEY is not a note signer key") from exc
        if not ORIGIN_RE.fullmatch(signer.name):  # its name is the origin the log signs
            raise InvalidInput(f"PLC_LOG_SIGNING_KEY's name {ORIGIN_RULE}")
        if origin is not None and signer.name != origin:
            raise InvalidInput("PLC_LOG_SIGNING_KEY is named differently from PLC_LOG_ORIGIN")
        if stored is not None:
            own = parse_signer_key(stored[1]).verifier
            if own.key_text != signer.verifier.key_text:
                raise InvalidInput(
                    f"PLC_LOG_SIGNING_KEY ({signer.verifier.key_text}) is not the key stored "
                    f"with the log ({own.key_text}); a log keeps its key"
                )
        _check_signed_newest(tlog, signer)
        return signer
    if stored is None and not create:
        raise InvalidInput(
            "no log key stored with the log: plc serve generates one on its first start "
            "(or the log's key is given in PLC_LOG_SIGNING_KEY)"
        )
    if stored is None:
        _check_signed_newest(tlog, None)
        name = origin or f"plc-directory/{secrets.token_hex(8)}"
        stored = tlog.create_signer_row(name, Signer.generate(name).key_text)
    stored_origin, key_text = stored
    if origin is not None and origin != stored_origin:
        raise InvalidInput(
            f"PLC_LOG_ORIGIN {origin} differs from the origin stored with the log "
            f"({stored_origin}); a log keeps its origin"
        )
    signer = parse_signer_key(key_text)
    _check_signed_newest(tlog, signer)
    return signer


def _check_signed_newest(tlog: TlogStore, signer: Signer | None) -> None:
    """Raise InvalidInput unless ``signer`` signed the log's newest checkpoint (None: unless
    the log has no checkpoint)."""
    newest = tlog.latest_checkpoint()
    if newest is None:
        return
    if signer is not None:
        try:
            open_note(newest.note, signer.verifier)
        except PlcError:
            pass
        else:
            return
    try:
        names = ", ".join(
            f"{sig.name}+{sig.key_id:08x}"
            for sig in parse_note_unsafe(newest.note).unverified_signatures
        )
    except PlcError:
        names = "an unreadable signature"
    using = f"key {signer.verifier.key_text}" if signer is not None else "no key"
    raise InvalidInput(
        f"the log's newest checkpoint (tree size {newest.tree_size}) is signed by {names}, "
        f"and this start has {using}: a log keeps its key (give the log's own key in "
        "PLC_LOG_SIGNING_KEY)"
    )


def next_tick(due: float, now: float, interval_s: float) -> float:
    """When the timer signs next (monotonic seconds), having woken for the tick ``due`` at
    ``now``: one interval after ``due`` (a fixed rate: the time a signature takes does not
    push every later tick back, so an op waits at most about one interval), or one interval
    after ``now`` when the timer woke later than that (no burst of ticks to catch up)."""
    following = due + interval_s
    return following if following > now else now + interval_s


class Checkpointer:
    """Signs checkpoints of the tree in ``tlog`` with ``signer``.

    Args:
        tlog: the log's storage.
        signer: Ed25519 signer named after the log's origin.
        clock: current aware UTC time (for ``signed_at``).
        interval_s: the timer's period: the longest an op waits for a checkpoint, and the
            shortest time between two signatures.
        kept: signed checkpoints kept in the database, newest first (0: every one).
    """

    def __init__(
        self,
        tlog: TlogStore,
        signer: Signer,
        clock: Callable[[], datetime],
        interval_s: float = 0.5,
        kept: int = 0,
    ) -> None:
        self.tlog = tlog
        self.signer = signer
        self.clock = clock
        self.interval_s = interval_s
        self.kept = kept
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_size: int | None = None
        """Tree size of the newest checkpoint after this process's last tick (None: none yet)."""

    @property
    def origin(self) -> str:
        """The log's origin (the signer's key name)."""
        return self.signer.name

    def start(self) -> None:
        """Sign once now (so a checkpoint always exists), then on every tick. A database
        that fails now is tried again at the next tick, as it is later.

        Raises:
            PlcError: the stored tree is not consistent with the newest checkpoint.
        """
        try:
            self._seen_size = self.sign_if_grown().tree_size
        except Unavailable:
            log.warning("checkpoint not signed at start: database unavailable")
        self._thread = threading.Thread(target=self._run, name="plc-checkpointer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the timer after a last signature of whatever was committed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.sign_if_grown()
        except PlcError:
            log.warning("could not sign a last checkpoint at shutdown")

    def _run(self) -> None:
        # While the database is down every tick fails the same way: say so once, again each
        # minute it lasts, and once when signing works again (not a traceback per tick).
        failing: str | None = None
        repeat = RepeatLimit()
        due = time.monotonic() + self.interval_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = next_tick(due, time.monotonic(), self.interval_s)
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the timer must survive a database hiccup
                reason = exc.message if isinstance(exc, PlcError) else type(exc).__name__
                if repeat.due(reason):
                    log.error(
                        "checkpoint not signed: %s",
                        reason,
                        exc_info=failing is None and not isinstance(exc, PlcError),
                    )
                failing = reason
            else:
                if failing is not None:
                    log.info("checkpoints signed again")
                    failing = None
                    repeat.forget()

    def tick(self) -> StoredCheckpoint | None:
        """One tick of the timer: :meth:`sign_if_grown`, unless the newest checkpoint changed
        since this process's previous tick, i.e. another process on the same database signed
        one in between. Returns the newest checkpoint, or None when the tick deferred.

        Deferring keeps every op covered within one interval: the process that signed last
        before an op was committed ticks again within an interval of that signature and
        signs then, unless a checkpoint signed after the op already covers it. If that
        process stopped instead (its last signature made at shutdown), the others, having
        deferred once, sign at their next tick: within two intervals.

        Raises:
            PlcError: as :meth:`sign_if_grown`.
        """
        latest = self.tlog.latest_checkpoint()
        newest = latest.tree_size if latest is not None else None
        if newest != self._seen_size:
            self._seen_size = newest
            return None
        signed = self._sign_over(latest)
        self._seen_size = signed.tree_size
        return signed

    def sign_if_grown(self) -> StoredCheckpoint:
        """Sign the current tree if it is larger than the newest checkpoint; return the newest.

        Raises:
            PlcError: the stored tree is not consistent with the newest checkpoint (nothing
                is signed), or the database is unavailable.
        """
        return self._sign_over(self.tlog.latest_checkpoint())

    def _sign_over(self, latest: StoredCheckpoint | None) -> StoredCheckpoint:
        """:meth:`sign_if_grown` with the newest checkpoint already read (``latest``)."""
        tree_size = self.tlog.store.tree_size()
        if latest is not None and latest.tree_size >= tree_size:
            return latest
        reader = self.tlog.reader
        new_root = root_hash(tree_size, reader)
        if latest is not None and latest.tree_size > 0:
            # Defence in depth: the stored tree must still extend what we signed before (a
            # proof built from altered hashes cannot link the signed root to the new one).
            proof = consistency_proof(latest.tree_size, tree_size, reader)
            verify_consistency(latest.tree_size, tree_size, latest.root_hash, new_root, proof)
        note = sign_checkpoint(Checkpoint(self.origin, tree_size, new_root), self.signer)
        stored = StoredCheckpoint(tree_size, new_root, note.encode("utf-8"))
        if not self.tlog.insert_checkpoint(stored, to_ms(self.clock()), kept=self.kept):
            stored = self.tlog.latest_checkpoint() or stored
        return stored
