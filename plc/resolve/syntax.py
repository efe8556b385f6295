"""atproto identifier syntax: handles, DIDs, did:plc, at-identifiers (plc-spec-notes.md §9.1, §9.2).

Pure functions over ``str``; no I/O. The rules are exactly the ones the atproto interop vectors
(``atproto-interop-tests/syntax/{handle,did,atidentifier}_syntax_*.txt``) pin:

- **handle**: ASCII, at most 253 characters, at least two labels separated by ``.``, each label
  1-63 characters of ``[a-zA-Z0-9-]`` not starting or ending with ``-``, and the last label (the
  TLD) starting with a letter. Handles are case-insensitive; :func:`normalize_handle` lower-cases.
- **disallowed TLDs** (``.alt .arpa .example .internal .invalid .local .localhost .onion``) are
  *syntactically valid* handles that are never resolved; that is a resolution rule
  (:func:`is_resolvable_handle`), not a syntax rule.
- **DID** (atproto subset of W3C DID syntax): ``did:<method>:<id>``, method ``[a-z]+``, id of
  ``[a-zA-Z0-9._:%-]`` not ending in ``:`` or ``%``, at most 2048 characters.
- **did:plc** (strict): ``did:plc:`` followed by 24 characters of ``[a-z2-7]`` (32 in total).
- **at-identifier**: a handle or a DID.

All matching uses :func:`re.fullmatch`, so a trailing newline never slips through ``$``.
"""

from __future__ import annotations

import re

from plc.errors import echo
from plc.resolve.errors import InvalidRequest

MAX_HANDLE_CHARS = 253
"""Longest handle (characters), the DNS name limit (§9.1)."""

MAX_DID_CHARS = 2048
"""Longest DID accepted by atproto (characters, §9.2)."""

INVALID_HANDLE = "handle.invalid"
"""The marker reported instead of a handle that could not be verified (lexicon identityInfo)."""

DISALLOWED_TLDS: frozenset[str] = frozenset(
    {"alt", "arpa", "example", "internal", "invalid", "local", "localhost", "onion"}
)
"""TLDs whose handles are syntactically valid but never resolved (§9.1)."""

HANDLE_PATTERN = (
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+"
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
)
"""§9.1 reference regex of a handle, unanchored (the length cap is checked separately)."""
DID_PATTERN = r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]"
"""§9.2 atproto DID syntax, unanchored (the length cap is checked separately)."""
_HANDLE_RE = re.compile(HANDLE_PATTERN)
_DID_RE = re.compile(DID_PATTERN)
# did:plc strict form: 24 characters of lower-case base32.
_PLC_DID_RE = re.compile(r"did:plc:[a-z2-7]{24}")


def is_valid_handle(value: str) -> bool:
    """Return whether ``value`` is a syntactically valid handle (any case; §9.1).

    Disallowed TLDs are still valid syntax; see :func:`is_resolvable_handle`.
    """
    return len(value) <= MAX_HANDLE_CHARS and _HANDLE_RE.fullmatch(value) is not None


def normalize_handle(value: str) -> str:
    """Return the lower-case form of a valid handle.

    Raises:
        InvalidRequest: ``value`` is not a syntactically valid handle (§9.1); the message
            echoes at most 200 characters of it.
    """
    if not is_valid_handle(value):
        raise InvalidRequest(f"Invalid handle: {echo(value)}")
    return value.lower()


def has_disallowed_tld(handle: str) -> bool:
    """Return whether the handle's last label is one of :data:`DISALLOWED_TLDS` (any case)."""
    return handle.rsplit(".", 1)[-1].lower() in DISALLOWED_TLDS


def is_resolvable_handle(handle: str) -> bool:
    """Return whether ``handle`` is valid syntax *and* may be resolved (no disallowed TLD)."""
    return is_valid_handle(handle) and not has_disallowed_tld(handle)


def is_valid_did(value: str) -> bool:
    """Return whether ``value`` is a syntactically valid atproto DID (any method; §9.2)."""
    return len(value) <= MAX_DID_CHARS and _DID_RE.fullmatch(value) is not None


def is_valid_plc_did(value: str) -> bool:
    """Return whether ``value`` is a strict did:plc identifier (``did:plc:`` + 24 base32 chars)."""
    return _PLC_DID_RE.fullmatch(value) is not None


def is_valid_at_identifier(value: str) -> bool:
    """Return whether ``value`` is an at-identifier: a valid handle or a valid DID."""
    if value.startswith("did:"):
        return is_valid_did(value)
    return is_valid_handle(value)


def ensure_valid_did(value: str) -> str:
    """Return ``value`` unchanged if it is a valid atproto DID (DIDs are case-sensitive).

    Raises:
        InvalidRequest: the DID syntax of §9.2 refuses it.
    """
    if not is_valid_did(value):
        raise InvalidRequest(f"Invalid DID: {echo(value)}")
    return value
