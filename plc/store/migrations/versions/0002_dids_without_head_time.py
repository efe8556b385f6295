"""dids without head_created_at_ms, in databases made before it left the initial schema.

The column (``BIGINT NOT NULL``, written on every commit and never read) was taken out of
revision 0001 itself on 2026-11-22, so a database created by the code before that stayed at
0001 with the column and refused every new DID (``NOT NULL`` violated: 503 on each create).
This revision drops it where it exists and changes nothing elsewhere.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_COLUMN = "head_created_at_ms"


def upgrade() -> None:
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("dids")}
    if _COLUMN in columns:
        # batch mode: SQLite rebuilds the table where it cannot drop a column in place
        with op.batch_alter_table("dids") as batch:
            batch.drop_column(_COLUMN)


def downgrade() -> None:
    """Nothing: revision 0001 as it stands has no such column."""
