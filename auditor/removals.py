"""Announced removals: allow-lists of op CIDs the operator announced it removed or will remove.

plc.directory deleted ops in 2023 and on 2025-11-14 (6,047 invalid ops of 6,024 DIDs, with
every later op of those DIDs; ``invalidated-op-log.txt``, go-didplc
``testdata/known_bad_cids.json``). An auditor replaying an export from before the purge
sees them; one replaying after does not. A listed CID excuses that op and every later op of
the same DID: they are reported as ``announced-removal`` (information, exit code 0).

File formats accepted: a JSON array of CID strings (go-didplc's ``known_bad_cids.json``), or
text with one CID per line (blank lines and ``#`` comments ignored). Every entry must be an
op CID (CIDv1, dag-cbor, sha2-256, base32): a list of DIDs (go-didplc's
``known_bad_dids.json``) is refused rather than silently excusing nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import orjson

from auditor.errors import AuditFailed
from plc.codec import parse_cid
from plc.errors import MalformedEncoding


def load_removed_cids(paths: Iterable[Path | str]) -> frozenset[str]:
    """The union of the CIDs listed in ``paths``.

    Raises:
        AuditFailed: a file that cannot be read, is neither format, or lists something that
            is not an op CID.
    """
    cids: set[str] = set()
    for path in paths:
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise AuditFailed(f"cannot read removal list {path}: {exc}") from exc
        if raw.lstrip()[:1] in (b"[", b"{"):
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise AuditFailed(f"removal list {path} is not valid JSON: {exc}") from exc
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise AuditFailed(f"removal list {path} must be a JSON array of CID strings")
            listed = list(value)
        else:
            lines = raw.decode("utf-8", "replace").splitlines()
            listed = [text for line in lines if (text := line.split("#", 1)[0].strip())]
        for entry in listed:
            try:
                parse_cid(entry)
            except MalformedEncoding as exc:
                raise AuditFailed(
                    f"removal list {path}: {exc.message} (a list of op CIDs)"
                ) from None
        cids.update(listed)
    return frozenset(cids)
