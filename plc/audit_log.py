"""Replay a DID's audit log through the rules, deriving every op's ``nullified`` state.

Pure: the audit log comes in as values (the ``GET /{did}/log/audit`` JSON shape, or
:class:`plc.rules.LogEntry` values), each op is validated against the history before it at its
own ``createdAt``, and the result says which ops end up nullified. Shared by the tests, the
auditor and anyone who wants to check a directory's answer for one DID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from plc.errors import MalformedOperation, PlcError
from plc.operation import parse_operation
from plc.rules import LogEntry, PreparedOperation, validate_next_op
from plc.timestamps import parse_timestamp


@dataclass(frozen=True, slots=True)
class ReplayFailure(Exception):
    """Op ``index`` of the audit log is refused; ``error`` says why."""

    index: int
    error: PlcError

    def __str__(self) -> str:
        return f"op {self.index}: {self.error.message}"


def parse_audit_log(entries: Sequence[Mapping[str, Any]]) -> list[LogEntry]:
    """Parse ``[{did, operation, cid, nullified, createdAt}, …]`` strictly.

    The ``cid`` given must be the CID of the op; the ``nullified`` flags are kept as claimed.

    Raises:
        ReplayFailure: at the first entry that does not parse or whose CID is wrong.
    """
    parsed = []
    for index, raw in enumerate(entries):
        try:
            op = parse_operation(raw["operation"])
            if raw["cid"] != op.cid:
                raise MalformedOperation(f"CID mismatch: claimed {raw['cid']}, computed {op.cid}")
            parsed.append(
                LogEntry(
                    did=str(raw["did"]),
                    operation=op,
                    created_at=parse_timestamp(raw["createdAt"]),
                    nullified=bool(raw.get("nullified", False)),
                )
            )
        except PlcError as exc:
            raise ReplayFailure(index, exc) from exc
        except (KeyError, TypeError) as exc:
            raise ReplayFailure(index, MalformedOperation(f"Malformed entry: {exc}")) from exc
    return parsed


def replay_audit_log(did: str, entries: Sequence[LogEntry]) -> list[LogEntry]:
    """Validate every op in order and return the log with ``nullified`` as the rules derive it.

    Args:
        did: the DID the log belongs to.
        entries: its ops in acceptance order (claimed ``nullified`` flags are ignored).

    Raises:
        ReplayFailure: at the first op the rules refuse.
    """
    history: list[LogEntry] = []
    for index, entry in enumerate(entries):
        try:
            prepared = validate_next_op(history, did, entry.operation, entry.created_at)
        except PlcError as exc:
            raise ReplayFailure(index, exc) from exc
        history = apply_prepared(history, prepared)
    return history


def apply_prepared(history: list[LogEntry], prepared: PreparedOperation) -> list[LogEntry]:
    """The audit log after accepting ``prepared``: nullified ops flagged, the new op appended."""
    gone = set(prepared.nullified)
    updated = [replace(e, nullified=True) if e.cid in gone else e for e in history]
    updated.append(LogEntry(prepared.did, prepared.operation, prepared.created_at, False))
    return updated
