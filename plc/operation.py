"""did:plc operations: strict schemas, signed bytes, CIDs, and legacy normalisation.

Three operation types exist (did:plc spec v0.3 "Operations"; plc-spec-notes.md §1):

- ``plc_operation``: create or update; ``rotationKeys``, ``verificationMethods``,
  ``alsoKnownAs``, ``services``, ``prev`` (CID string or null), ``sig``.
- ``plc_tombstone``: deactivation; ``prev`` (CID string), ``sig``.
- ``create``: the legacy (pre-2023) genesis; ``signingKey``, ``recoveryKey``, ``handle``,
  ``service``, ``prev`` (always null), ``sig``. Valid in history, never accepted by POST.

All schemas are strict: an unknown field, a missing field or a wrong JSON type is refused
(the reference's zod ``.strict()`` schemas, PR #123). The wire dict is kept as given: its
DAG-CBOR encoding (with ``sig``) is what the CID and the DID hash are computed over, and the
same encoding without ``sig`` is what was signed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError

from plc.codec import (
    canonical_cid,
    cid_for_cbor,
    decode_dag_cbor,
    encode_dag_cbor,
    has_bad_unicode,
)
from plc.errors import MalformedOperation, echo

PLC_OPERATION = "plc_operation"
PLC_TOMBSTONE = "plc_tombstone"
LEGACY_CREATE = "create"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ServiceModel(_Strict):
    """One entry of ``services``: exactly ``type`` and ``endpoint``."""

    type: StrictStr
    endpoint: StrictStr


class PlcOperationModel(_Strict):
    """Schema of a signed ``plc_operation``."""

    type: Literal["plc_operation"]
    rotationKeys: list[StrictStr]  # noqa: N815 - wire name
    verificationMethods: dict[StrictStr, StrictStr]  # noqa: N815
    alsoKnownAs: list[StrictStr]  # noqa: N815
    services: dict[StrictStr, ServiceModel]
    prev: StrictStr | None
    sig: StrictStr


class TombstoneModel(_Strict):
    """Schema of a signed ``plc_tombstone``."""

    type: Literal["plc_tombstone"]
    prev: StrictStr
    sig: StrictStr


class LegacyCreateModel(_Strict):
    """Schema of a signed legacy ``create`` genesis."""

    type: Literal["create"]
    signingKey: StrictStr  # noqa: N815
    recoveryKey: StrictStr  # noqa: N815
    handle: StrictStr
    service: StrictStr
    prev: None
    sig: StrictStr


_ANY_OPERATION: TypeAdapter[PlcOperationModel | TombstoneModel | LegacyCreateModel] = TypeAdapter(
    Annotated[
        PlcOperationModel | TombstoneModel | LegacyCreateModel,
        Field(discriminator="type"),
    ]
)


@dataclass(frozen=True, slots=True)
class DocumentData:
    """The state an operation sets: what ``/data`` serves and the DID document is built from.

    Maps keep the order of the op (canonical DAG-CBOR order when read back from storage).
    """

    rotation_keys: tuple[str, ...]
    verification_methods: dict[str, str]
    also_known_as: tuple[str, ...]
    services: dict[str, dict[str, str]]


@dataclass(frozen=True, slots=True)
class Operation:
    """A schema-valid signed operation.

    Attributes:
        data: the wire dict, exactly the fields the signer signed plus ``sig``.
        cid: CIDv1 string of the signed DAG-CBOR (``bafyrei…``).
    """

    data: dict[str, Any]
    cid: str
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def signed_cbor(self) -> bytes:
        """DAG-CBOR of ``data`` with ``sig``: the bytes the CID and the DID hash cover."""
        cached = self._cache.get("signed")
        if cached is None:
            cached = self._cache["signed"] = encode_dag_cbor(self.data)
        return cached

    @property
    def type(self) -> str:
        """``plc_operation``, ``plc_tombstone`` or ``create``."""
        return str(self.data["type"])

    @property
    def prev(self) -> str | None:
        """CID string of the previous op in base32 (``b…``), None for a genesis.

        ``data["prev"]`` keeps what was signed; a ``prev`` the signer wrote in base58btc or
        base36 is given here in base32, the form stored CIDs have, so that comparing strings
        compares CIDs (:func:`plc.codec.canonical_cid`)."""
        prev = self.data["prev"]
        if prev is None:
            return None
        text = str(prev)
        return text if text[:1] == "b" else canonical_cid(text)

    @property
    def sig(self) -> str:
        """The base64url signature text as given."""
        return str(self.data["sig"])

    @property
    def is_tombstone(self) -> bool:
        """True for ``plc_tombstone``."""
        return bool(self.data["type"] == PLC_TOMBSTONE)

    def unsigned_cbor(self) -> bytes:
        """DAG-CBOR of the op without the ``sig`` key: the bytes that were signed."""
        cached = self._cache.get("unsigned")
        if cached is None:
            unsigned = {k: v for k, v in self.data.items() if k != "sig"}
            cached = self._cache["unsigned"] = encode_dag_cbor(unsigned)
        return cached

    def canonical_json(self) -> bytes:
        """Compact UTF-8 JSON of ``data`` with every map in DAG-CBOR key order (length, then
        bytes) — the form the export line, ``/log`` and ``/log/audit`` serve."""
        cached = self._cache.get("json")
        if cached is None:
            cached = self._cache["json"] = orjson.dumps(decode_dag_cbor(self.signed_cbor))
        return cached


def parse_operation(obj: Any, *, json_text: bytes | None = None) -> Operation:
    """Validate a decoded JSON value as a signed operation of any of the three types.

    Args:
        obj: the decoded JSON (dict expected).
        json_text: optionally, the exact bytes ``obj`` (or a JSON value containing it) was
            decoded from with ``orjson.loads``, which refuses lone surrogates: U+0000 is then
            looked for in that text (one byte search) instead of re-encoding ``obj``.

    Returns:
        The :class:`Operation`, with its signed DAG-CBOR and CID computed.

    Raises:
        MalformedOperation: ``Not a valid operation: <json>`` (cut to 200 characters) for any
            schema violation, U+0000 or lone surrogates in a string.
    """
    if not isinstance(obj, dict):
        raise MalformedOperation(f"Not a valid operation: {_short_json(obj)}")
    try:
        _ANY_OPERATION.validate_python(obj)
    except ValidationError as exc:
        raise MalformedOperation(f"Not a valid operation: {_short_json(obj)}") from exc
    if (json_text is None or b"\\u0000" in json_text) and has_bad_unicode(obj):
        raise MalformedOperation(
            "Not a valid operation: strings must be valid Unicode without U+0000"
        )
    signed_cbor = encode_dag_cbor(obj)
    return Operation(data=obj, cid=cid_for_cbor(signed_cbor), _cache={"signed": signed_cbor})


def trusted_operation(data: dict[str, Any], cid: str) -> Operation:
    """Rebuild an op read back from our own storage (schema and CID not re-checked; the
    CBOR is computed only if a signature check needs it)."""
    return Operation(data=data, cid=cid)


def normalize(op: Operation) -> DocumentData | None:
    """The state an op sets; legacy ``create`` is rewritten to the current form; None for a
    tombstone.

    Legacy mapping (``normalizeOp`` of the reference library): rotation keys
    ``[recoveryKey, signingKey]``, verification method ``atproto = signingKey``, handle →
    ``at://<handle>`` (one ``at://`` at the start kept; else the first ``http://`` and then the
    first ``https://`` removed, wherever they are, as ``ensureAtprotoPrefix`` does), service →
    ``atproto_pds`` ``AtprotoPersonalDataServer`` (``https://`` added when it has no scheme).
    """
    data = op.data
    kind = data["type"]
    if kind == PLC_OPERATION:
        return DocumentData(
            rotation_keys=tuple(data["rotationKeys"]),
            verification_methods=dict(data["verificationMethods"]),
            also_known_as=tuple(data["alsoKnownAs"]),
            services={k: dict(v) for k, v in data["services"].items()},
        )
    if kind == LEGACY_CREATE:
        return DocumentData(
            rotation_keys=(data["recoveryKey"], data["signingKey"]),
            verification_methods={"atproto": data["signingKey"]},
            also_known_as=(_legacy_handle_uri(data["handle"]),),
            services={
                "atproto_pds": {
                    "type": "AtprotoPersonalDataServer",
                    "endpoint": _legacy_endpoint(data["service"]),
                }
            },
        )
    return None


def rotation_keys_of(op: Operation) -> tuple[str, ...]:
    """Rotation keys an op grants to its children (normalised); empty for a tombstone."""
    data = op.data
    if data["type"] == PLC_OPERATION:
        return tuple(data["rotationKeys"])
    if data["type"] == LEGACY_CREATE:
        return (data["recoveryKey"], data["signingKey"])
    return ()


def _legacy_handle_uri(handle: str) -> str:
    # The reference's ensureAtprotoPrefix, String.replace included: the first occurrence,
    # wherever it is, not only a leading scheme.
    if handle.startswith("at://"):
        return handle
    return "at://" + handle.replace("http://", "", 1).replace("https://", "", 1)


def _legacy_endpoint(service: str) -> str:
    if service.startswith("http://") or service.startswith("https://"):
        return service
    return "https://" + service


def _short_json(obj: Any) -> str:
    """``obj`` as JSON for an error message, cut by ``echo``. orjson refuses nesting deeper
    than 255 and ``repr`` overflows the stack near 1000: such a value is named, not shown."""
    try:
        text = orjson.dumps(obj).decode("utf-8")
    except (TypeError, orjson.JSONEncodeError):
        try:
            text = repr(obj)
        except RecursionError:
            text = "(a value nested too deeply to show)"
    return echo(text)
