"""Checks of the findings about answers a directory served unsigned (``served-state-mismatch``,
``fork``), and the functions the auditor's spot checks decide them with (:mod:`auditor.spotcheck`
imports them), so the two cannot disagree: a served audit log is compared with
:func:`served_log`, forks are found with :func:`forked_prevs`, and a served DID document is
compared by meaning (:func:`auditor.documents.same_document`: the current and the legacy key
form name the same keys). Part of the standalone checker (:mod:`auditor.evidence_check`):
imports only the pure core and the checker's own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from auditor.documents import same_document
from auditor.evidence_ops import OBSERVED, need, strict_entry, unverifiable
from plc.audit_log import apply_prepared
from plc.codec import canonical_cid
from plc.document import format_data, format_did_document
from plc.errors import PlcError
from plc.operation import normalize
from plc.rules import LogEntry, validate_next_op
from plc.tlog.note import Verifier


def served_log(served: Any) -> list[dict[str, Any]] | None:
    """What a ``/log/audit`` answer (its JSON, None when not 200) says of the DID's ops:
    ``{"cid", "nullified"}`` of each entry that is a JSON object (as served, None where
    missing), None if it is not a list. The spot check compares this with the replay; a
    difference is a ``served-state-mismatch``."""
    if not isinstance(served, list):
        return None
    return [
        {"cid": e.get("cid"), "nullified": e.get("nullified")}
        for e in served
        if isinstance(e, dict)
    ]


def forked_prevs(served: Any) -> list[str]:
    """The ops (CIDs in base32, sorted) that a ``/log/audit`` answer shows with two or more
    non-nullified children: the ``prev`` strings of its entries' ``operation`` objects,
    counted as served (entries of any other shape skipped). Not empty: a ``fork``."""
    children: dict[str, int] = {}
    for e in served if isinstance(served, list) else []:
        op = e.get("operation") if isinstance(e, dict) else None
        if isinstance(op, dict) and isinstance(op.get("prev"), str) and not e.get("nullified"):
            prev = canonical_cid(op["prev"])  # the same op may be named in any base
            children[prev] = children.get(prev, 0) + 1
    return sorted(prev for prev, n in children.items() if n > 1)


def _served(finding: dict[str, Any], ev: dict[str, Any], _vkeys: Sequence[Verifier]) -> str:
    """The served answer must show what the finding says, decided as the spot check decides
    (:func:`served_log`, :func:`forked_prevs`): for ``fork``, two non-nullified children of
    one op (the answer alone shows it); otherwise a difference from what the DID's lines,
    replayed in ``seq`` order, give. The answer is not signed: that the directory served it
    is the auditor's observation, so a consistent claim is unverifiable. So is one whose
    lines do not replay in ``seq`` order: the auditor judged the DID's ops in the order it
    read them, which after a ``seq`` regression may differ (its observation)."""
    did = finding["did"]
    served, url = ev["served"], ev["url"]
    observed = unverifiable(f"what the directory served (unsigned) is {OBSERVED}")
    if finding["class"] == "fork":
        forked = forked_prevs(served)
        need(bool(forked), "no op has two non-nullified children")
        need(ev.get("forked_prev", forked) == forked, "forked_prev is not what the answer shows")
        return observed
    history: list[LogEntry] = []
    for line in ev["lines"]:
        _, entry = strict_entry(line)
        need(entry.did == did, "a line is for another DID")
        try:
            history = apply_prepared(
                history, validate_next_op(history, did, entry.operation, entry.created_at)
            )
        except PlcError:
            return unverifiable(
                f"the DID's lines do not replay in seq order: the order the auditor read them "
                f"in is {OBSERVED}"
            )
    if url.endswith("/log/audit"):
        expected: Any = [{"cid": e.cid, "nullified": e.nullified} for e in history]
        need(served_log(served) != expected, "the served audit log matches the replay")
        return observed
    head = [e for e in history if not e.nullified][-1]
    data = normalize(head.operation)
    if data is None:
        need(served.get("status") != 404, "a tombstoned DID answered 404")
        return observed
    if url.endswith("/data"):
        same = served == format_data(did, data)
    else:  # a document in either form (same_document) means the same
        same = same_document(served, format_did_document(did, data))
    need(not same, "the served answer matches the replay")
    return observed


SERVED_CHECKS: dict[str, Callable[[dict[str, Any], dict[str, Any], Sequence[Verifier]], str]] = {
    "served-state-mismatch": _served,
    "fork": _served,
}
"""Checks of the classes about served answers, by class."""
