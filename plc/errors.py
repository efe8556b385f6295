"""The one exception tree of the project.

Every error the pure core, the store or the service raises is one of these; the HTTP layer maps
classes to status codes in a single table (``plc.api.errors``), the auditor turns the
verification ones into findings. Imports nothing from ``plc``.

::

    PlcError                              base; ``message`` is what a client may see
    ├── InvalidInput                      400: the request or operation is malformed
    │   ├── MalformedEncoding             bad base64url / CBOR / CID / did:key text
    │   ├── MalformedOperation            schema violation (unknown field, wrong type, ...)
    │   ├── UnsupportedKeyType            did:key of a type not allowed where it is used
    │   └── MalformedDid                  a DID that is not a did:plc identifier
    ├── InvalidOperation                  400: well-formed, but the did:plc rules refuse it
    │   ├── InvalidSignature              no allowed rotation key verifies ``sig``
    │   ├── MisorderedOperation           bad ``prev``: unknown, nullified, tombstoned, too early
    │   ├── LateRecovery                  recovery outside the 72 h window
    │   ├── GenesisHashMismatch           genesis does not hash to the DID
    │   └── ImproperOperation             e.g. genesis with non-null ``prev``
    ├── PolicyViolation                   400: valid, but today's admission limits refuse it
    │   ├── OperationTooLarge
    │   └── RateLimited                   429 with ``retry_after`` seconds
    ├── NotFound                          404
    │   ├── DidNotRegistered
    │   └── DidNotAvailable               tombstoned DID (plc.directory answers 404)
    ├── Conflict                          409: retryable (the DID head moved under us)
    │   └── HeadMismatch
    ├── Unavailable                       503: transient (database locked, shutting down)
    └── VerificationError                 a cryptographic or log proof check failed
        (subclasses live next to the code that raises them, e.g. ``plc.tlog.errors``)

Messages keep the reference server's text before the colon; any user-supplied value after it
is cut to :data:`MAX_ECHO` characters (design.md decision 1).
"""

from __future__ import annotations

MAX_ECHO = 200
"""Longest piece of user input ever embedded in an error message (characters)."""


def echo(value: object) -> str:
    """Render ``value`` for inclusion in a message, cut to :data:`MAX_ECHO` characters."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > MAX_ECHO:
        return text[:MAX_ECHO] + "…"
    return text


class PlcError(Exception):
    """Base of every error of this project; ``message`` is safe to show to a client."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(PlcError):
    """The input is malformed (400)."""


class MalformedEncoding(InvalidInput):
    """Bytes or text that do not decode under the strict rules (base64url, CBOR, CID, did:key)."""


class MalformedOperation(InvalidInput):
    """An operation that does not match the strict schema (unknown field, wrong type)."""


class UnsupportedKeyType(InvalidInput):
    """A did:key of a type that is not allowed where it is used."""


class MalformedDid(InvalidInput):
    """A DID string that is not a syntactically valid did:plc identifier."""


class LogEntryTooLarge(InvalidInput):
    """The op's export line would not fit an entry of the transparency log (65,535 bytes,
    C2SP tlog-tiles); a limit of the log's format, applied to imports too, unlike policy."""


class InvalidOperation(PlcError):
    """A well-formed operation that the did:plc rules refuse (400)."""


class InvalidSignature(InvalidOperation):
    """No allowed rotation key verifies the operation's ``sig``."""


class MisorderedOperation(InvalidOperation):
    """``prev`` is unknown, nullified, a tombstone, or the op is not later than its ``prev``."""


class LateRecovery(InvalidOperation):
    """A recovery (nullifying) op arrived more than 72 h after the first op it nullifies."""

    def __init__(self, message: str, lapsed_ms: int) -> None:
        super().__init__(message)
        self.lapsed_ms = lapsed_ms


class GenesisHashMismatch(InvalidOperation):
    """The genesis operation does not hash to the DID it was submitted for."""


class ImproperOperation(InvalidOperation):
    """Structurally wrong for its position, e.g. a genesis with a non-null ``prev``."""


class PolicyViolation(PlcError):
    """A valid operation refused by today's admission limits (400); never applied to history."""


class OperationTooLarge(PolicyViolation):
    """The DAG-CBOR encoding of the signed op exceeds ``max_op_bytes``."""


class RateLimited(PolicyViolation):
    """Too many ops for one DID in a window (429 with ``Retry-After``)."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class NotFound(PlcError):
    """The thing asked for does not exist (404)."""


class DidNotRegistered(NotFound):
    """No operation was ever accepted for this DID."""


class DidNotAvailable(NotFound):
    """The DID is tombstoned (deactivated)."""


class Conflict(PlcError):
    """A retryable conflict (409)."""


class HeadMismatch(Conflict):
    """The DID's head moved between validation and commit (compare-and-swap failed)."""


class Unavailable(PlcError):
    """A transient failure: the database is locked or unreachable (503)."""


DATABASE_UNAVAILABLE = "Database unavailable, try again"
"""The message of every 503 for a database that failed (the store's, ``/_health``'s)."""


class VerificationError(PlcError):
    """A cryptographic or transparency-log check failed; subclasses carry expected/actual."""
