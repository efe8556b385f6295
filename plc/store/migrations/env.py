"""Alembic environment: runs on the connection ``plc.store.migrate`` hands over, or on
``sqlalchemy.url`` when the ``alembic`` command is used directly."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import plc.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from plc.store.engine import make_engine

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()


run_migrations()
