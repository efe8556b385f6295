"""Alembic environment: runs on the connection ``plc.store.migrate`` hands over, or, when the
``alembic`` command is used directly, on the database ``plc serve`` would use (``DATABASE_URL``,
else the default SQLite file), unless ``-x database_url=...`` names another."""

from __future__ import annotations

from alembic import context
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from sqlmodel import SQLModel

import plc.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from plc.config import Settings, setting_error
from plc.errors import InvalidInput
from plc.store.engine import make_engine, redacted
from plc.store.migrate import serialize_migrations

config = context.config
target_metadata = SQLModel.metadata


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("database_url")
    if not url:
        try:
            url = Settings().database_url
        except ValidationError as exc:
            raise SystemExit(f"error: {setting_error(exc)}") from None
    try:
        engine = make_engine(url)
    except InvalidInput as exc:
        raise SystemExit(f"error: {exc.message}") from None
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, target_metadata=target_metadata)
            with context.begin_transaction():
                serialize_migrations(conn)  # as plc serve does, beside running servers
                context.run_migrations()
    except DBAPIError as exc:  # unreachable, no such database, not a database file
        first = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        raise SystemExit(f"error: database {redacted(url)}: {first}") from None
    finally:
        engine.dispose()


run_migrations()
