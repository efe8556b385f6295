"""store_meta, with the rendering version of the stored DID documents.

The ``/data`` and DID-document bodies are rendered once, when an op is committed, and served
as stored. A database that already holds DIDs when this revision runs was filled by code that
rendered two rare cases differently (:data:`plc.document.DOCUMENTS_VERSION` 1), so it is marked
1; ``plc serve`` then says that ``plc refresh-documents`` should run once. An empty database
is marked with the current version: nothing in it was rendered before.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from plc.document import DOCUMENTS_VERSION

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "store_meta",
        sa.Column("name", sa.Text(), primary_key=True),
        sa.Column("value", sa.BigInteger(), nullable=False),
    )
    filled = op.get_bind().execute(sa.text("SELECT 1 FROM dids LIMIT 1")).first() is not None
    op.bulk_insert(
        table, [{"name": "documents_version", "value": 1 if filled else DOCUMENTS_VERSION}]
    )


def downgrade() -> None:
    op.drop_table("store_meta")
