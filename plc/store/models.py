"""SQLModel tables of the directory. Units are in column names; timestamps are integer
milliseconds since the Unix epoch (UTC), so SQLite and PostgreSQL store them alike.

- ``dids``: one row per DID: its head (CID of the newest non-nullified op, the target of the
  writers' compare-and-swap), whether it is tombstoned, and the ``/data`` and DID-document
  bodies of its current state, so that a read is one primary-key lookup.
- ``operations``: every accepted op, keyed by ``seq`` (1, 2, 3, … with no gaps), with its
  export line stored as bytes exactly as served and hashed into the log.
- ``log_head``: the single row that hands out ``seq`` (``tree_size`` = the last ``seq``).
- ``tlog_hashes``: the transparency log's stored hashes (RFC 6962 subtree hashes by stored
  index), written in the transaction that appends their leaves.
- ``tlog_checkpoints``: the newest signed checkpoints (``PLC_CHECKPOINTS_KEPT``), by tree size.
- ``tlog_signer``: the log's origin and Ed25519 signing key, generated on first start.
- ``store_meta``: named integers about the stored data itself, e.g. ``documents_version``
  (:data:`plc.document.DOCUMENTS_VERSION` of the rendering the stored bodies come from).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, LargeBinary, Text, UniqueConstraint
from sqlmodel import Field, SQLModel


class DidRow(SQLModel, table=True):
    """Current state of one DID."""

    __tablename__ = "dids"

    did: str = Field(sa_column=Column(Text, primary_key=True))
    head_cid: str = Field(sa_column=Column(Text, nullable=False))
    tombstoned: bool = Field(default=False, nullable=False)
    data: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))
    document: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True))


class OperationRow(SQLModel, table=True):
    """One accepted operation (nullified ones included)."""

    __tablename__ = "operations"
    __table_args__ = (
        UniqueConstraint("did", "cid", name="operations_did_cid_key"),
        Index("operations_did_seq_idx", "did", "seq"),
        Index("operations_created_at_idx", "created_at_ms", "cid"),
    )

    seq: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    did: str = Field(sa_column=Column(Text, nullable=False))
    cid: str = Field(sa_column=Column(Text, nullable=False))
    created_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))
    nullified: bool = Field(default=False, nullable=False)
    key_index: int = Field(nullable=False)
    line: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class LogHeadRow(SQLModel, table=True):
    """The single row (``id = 1``) that serialises ``seq`` assignment."""

    __tablename__ = "log_head"

    id: int = Field(primary_key=True)
    tree_size: int = Field(sa_column=Column(BigInteger, nullable=False))


class TreeHashRow(SQLModel, table=True):
    """One stored hash of the transparency log (RFC 6962 subtree hash)."""

    __tablename__ = "tlog_hashes"

    idx: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))


class CheckpointRow(SQLModel, table=True):
    """A signed checkpoint; the newest ``PLC_CHECKPOINTS_KEPT`` are kept."""

    __tablename__ = "tlog_checkpoints"

    tree_size: int = Field(sa_column=Column(BigInteger, primary_key=True, autoincrement=False))
    root_hash: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    note: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    signed_at_ms: int = Field(sa_column=Column(BigInteger, nullable=False))


class SignerRow(SQLModel, table=True):
    """The log's identity (``id = 1``): origin and signed-note signer key."""

    __tablename__ = "tlog_signer"

    id: int = Field(primary_key=True)
    origin: str = Field(sa_column=Column(Text, nullable=False))
    signer_key: str = Field(sa_column=Column(Text, nullable=False))


class StoreMetaRow(SQLModel, table=True):
    """A named integer about the stored data (see :mod:`plc.store.documents`)."""

    __tablename__ = "store_meta"

    name: str = Field(sa_column=Column(Text, primary_key=True))
    value: int = Field(sa_column=Column(BigInteger, nullable=False))
