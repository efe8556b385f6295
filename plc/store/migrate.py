"""Create or upgrade the schema with Alembic (``plc serve`` does this on every start)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

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


def upgrade(engine: Engine) -> None:
    """Bring the database behind ``engine`` to the newest revision (idempotent)."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
