"""The directory's read models: DID documents, ``/data``, op logs, audit logs and both
export modes, each served from what the commit stored (design.md decision 6: one indexed
lookup per read, no replay of the log)."""

from __future__ import annotations

from datetime import datetime

import orjson

from plc.codec import has_bad_unicode
from plc.errors import DidNotAvailable, DidNotRegistered, echo
from plc.exportline import line_head, operation_json
from plc.store.history import last_active_line
from plc.store.records import StoredOp
from plc.store.sql import SqlStore
from plc.timestamps import format_timestamp, from_ms, to_ms


class DirectoryReads:
    """The reads of :class:`plc.service.Directory` over its ``store``."""

    store: SqlStore

    def _state(self, did: str) -> tuple[bytes, bytes]:
        state = None if has_bad_unicode(did) else self.store.did_state(did)
        if state is None:
            raise DidNotRegistered(f"DID not registered: {echo(did)}")
        tombstoned, data, document = state
        if tombstoned or data is None or document is None:
            raise DidNotAvailable(f"DID not available: {echo(did)}")
        return data, document

    def document(self, did: str) -> bytes:
        """The DID document JSON. Raises DidNotRegistered / DidNotAvailable (tombstone)."""
        return self._state(did)[1]

    def data(self, did: str) -> bytes:
        """The ``/data`` JSON. Raises DidNotRegistered / DidNotAvailable (tombstone)."""
        return self._state(did)[0]

    def rows(self, did: str) -> list[StoredOp]:
        """The DID's stored ops, oldest first. Raises DidNotRegistered."""
        # Text no store can hold (NUL, lone surrogates) names no DID; don't send it to the DB.
        rows = [] if has_bad_unicode(did) else self.store.audit_rows(did)
        if not rows:
            raise DidNotRegistered(f"DID not registered: {echo(did)}")
        return rows

    def op_log(self, did: str) -> bytes:
        """JSON array of the non-nullified ops (``/log``). Raises DidNotRegistered."""
        ops = [operation_json(r.line) for r in self.rows(did) if not r.nullified]
        return b"[" + b",".join(ops) + b"]"

    def last_op(self, did: str) -> bytes:
        """JSON of the newest non-nullified op (``/log/last``). Raises DidNotRegistered."""
        line = None if has_bad_unicode(did) else last_active_line(self.store, did)
        if line is None:
            raise DidNotRegistered(f"DID not registered: {echo(did)}")
        return operation_json(line)

    def audit_log(self, did: str) -> bytes:
        """JSON array of ``{did, operation, cid, nullified, createdAt}`` (``/log/audit``)."""
        return orjson.dumps(
            [
                {
                    "did": did,
                    "operation": orjson.Fragment(operation_json(r.line)),
                    "cid": r.cid,
                    "nullified": r.nullified,
                    "createdAt": format_timestamp(from_ms(r.created_at_ms)),
                }
                for r in self.rows(did)
            ]
        )

    def export_after_seq(self, after: int, count: int) -> bytes:
        """JSON Lines of ``sequenced_op`` lines with ``seq > after`` (no trailing newline)."""
        return b"\n".join(self.store.export_after_seq(after, count))

    def export_after_time(self, after: datetime | None, count: int) -> bytes:
        """Legacy JSON Lines ``{did, cid, createdAt, operation, nullified}`` after ``after``."""
        after_ms = -(2**62) if after is None else to_ms(after)
        lines = []
        for line, nullified in self.store.export_after_time(after_ms, count):
            value = line_head(line)  # not the operation: it is copied as it is
            lines.append(
                orjson.dumps(
                    {
                        "did": value["did"],
                        "cid": value["cid"],
                        "createdAt": value["createdAt"],
                        "operation": orjson.Fragment(operation_json(line)),
                        "nullified": nullified,
                    }
                )
            )
        return b"\n".join(lines)
