"""Initial schema: DIDs, operations, the log head and the transparency log tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dids",
        sa.Column("did", sa.Text(), primary_key=True),
        sa.Column("head_cid", sa.Text(), nullable=False),
        sa.Column("tombstoned", sa.Boolean(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("document", sa.LargeBinary(), nullable=True),
    )
    op.create_table(
        "operations",
        sa.Column("seq", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("did", sa.Text(), nullable=False),
        sa.Column("cid", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("nullified", sa.Boolean(), nullable=False),
        sa.Column("key_index", sa.Integer(), nullable=False),
        sa.Column("line", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("did", "cid", name="operations_did_cid_key"),
    )
    op.create_index("operations_did_seq_idx", "operations", ["did", "seq"])
    op.create_index("operations_created_at_idx", "operations", ["created_at_ms", "cid"])
    op.create_table(
        "log_head",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
    )
    op.execute("INSERT INTO log_head (id, tree_size) VALUES (1, 0)")
    op.create_table(
        "tlog_hashes",
        sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("hash", sa.LargeBinary(), nullable=False),
    )
    op.create_table(
        "tlog_checkpoints",
        sa.Column("tree_size", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at_ms", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "tlog_signer",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("signer_key", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("tlog_signer", "tlog_checkpoints", "tlog_hashes", "log_head", "operations"):
        op.drop_table(table)
    op.drop_table("dids")
