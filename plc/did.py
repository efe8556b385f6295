"""did:plc identifiers: syntax and derivation from the signed genesis operation.

``did:plc:`` + the first 24 characters of base32-lower(sha256(DAG-CBOR(signed genesis))), so
32 characters in all, identifier alphabet ``a-z2-7`` (did:plc spec v0.3 "DID Creation";
plc-spec-notes.md §1.7). The hash covers the signed op in its own format, legacy ``create``
included.
"""

from __future__ import annotations

import hashlib
import re

from plc.codec import b32_lower
from plc.errors import MalformedDid, echo
from plc.operation import Operation

DID_PLC_PREFIX = "did:plc:"
_DID_PLC_RE = re.compile(r"did:plc:[a-z2-7]{24}")


def did_for_genesis(genesis: Operation) -> str:
    """The did:plc identifier a signed genesis operation creates."""
    digest = hashlib.sha256(genesis.signed_cbor).digest()
    return DID_PLC_PREFIX + b32_lower(digest)[:24]


def is_did_plc(text: str) -> bool:
    """True if ``text`` is a syntactically valid did:plc (exactly 32 chars, ``[a-z2-7]``)."""
    return isinstance(text, str) and _DID_PLC_RE.fullmatch(text) is not None


def validate_did_plc(text: str) -> str:
    """Return ``text`` if it is a syntactically valid did:plc.

    Raises:
        MalformedDid: ``Improperly formatted did: <text>``.
    """
    if not is_did_plc(text):
        raise MalformedDid(f"Improperly formatted did: {echo(text)}")
    return text
