"""Create or upgrade the schema with Alembic (``plc serve`` does this on every start)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from plc.errors import InvalidInput, echo

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    """An Alembic config pointing at this package's migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class _QuietContext(logging.Filter):
    """Drops Alembic's two lines about its migration context, said on every connection (so
    twice per ``plc serve`` start) whether or not anything is migrated; the lines naming the
    revisions it runs stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("Context impl ", "Will assume "))


logging.getLogger("alembic.runtime.migration").addFilter(_QuietContext())


MIGRATION_LOCK = 0x706C6301
"""PostgreSQL advisory lock key held while migrating ("plc" 1)."""


def upgrade(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest revision (idempotent).

    On PostgreSQL the migration holds an advisory lock for its transaction, so processes
    starting at once on one database migrate one after the other (the others then find it
    done); two at once failed on the catalog's unique index.

    Raises:
        InvalidInput: the database is at a revision this version does not know (a newer
            version migrated it); nothing is changed.
        SQLAlchemyError: the database failed.
    """
    config = alembic_config()
    with engine.begin() as connection:
        serialize_migrations(connection)
        _refuse_unknown_revision(connection, config)
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _refuse_unknown_revision(connection: Connection, config: Config) -> None:
    # Alembic's own answer is a CommandError with a long traceback in every command; an
    # older plc started beside a newer one after an upgrade meets exactly this.
    script = ScriptDirectory.from_config(config)
    known = {revision.revision for revision in script.walk_revisions()}
    for current in MigrationContext.configure(connection).get_current_heads():
        if current not in known:
            raise InvalidInput(
                f"the database's schema is at revision {echo(current)}, which this version of"
                f" plc does not know (its newest is {script.get_current_head()}): a newer"
                " version migrated it; run that version"
            )


def serialize_migrations(connection: Connection) -> None:
    """In an open transaction on PostgreSQL: wait for :data:`MIGRATION_LOCK`, held until the
    transaction ends, with no lock timeout (a migration may wait as long as it takes, not a
    writer's busy timeout). Nothing on SQLite."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL lock_timeout = 0")
        connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
