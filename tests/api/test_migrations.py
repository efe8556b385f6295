"""Databases made by earlier code are upgraded in place and keep working (SQLite and
PostgreSQL, Alembic's own upgrade path)."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlmodel import SQLModel
from typer.testing import CliRunner

from plc.api.app import create_app
from plc.cli import app
from plc.document import DOCUMENTS_VERSION
from plc.errors import InvalidInput
from plc.store.documents import stored_documents_version
from plc.store.engine import make_engine
from plc.store.migrate import alembic_config, upgrade

from ..conftest import Clock, make_settings
from ..helpers import new_did, update

# The dids table as revision 0001 created it from e897b5d until 7569f7a took the column out
# of that revision itself.
_OLD_DIDS = (
    "CREATE TABLE dids (did TEXT PRIMARY KEY, head_cid TEXT NOT NULL, "
    "head_created_at_ms BIGINT NOT NULL, tombstoned BOOLEAN NOT NULL, "
    "data {blob}, document {blob})"
)


def _database_of_the_first_days(url: str) -> None:
    engine = make_engine(url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        blob = "BLOB" if connection.dialect.name == "sqlite" else "BYTEA"
        connection.exec_driver_sql("DROP TABLE dids")
        connection.exec_driver_sql(_OLD_DIDS.format(blob=blob))
    engine.dispose()


def test_a_database_with_the_first_dids_table_takes_new_dids(db_url: str, clock: Clock) -> None:
    _database_of_the_first_days(db_url)
    with TestClient(create_app(make_settings(db_url), clock=clock)) as client:
        did, genesis, keys = new_did("after-upgrade")
        created = client.post(f"/{did}", json=genesis)
        assert created.status_code == 200, created.text  # was 503: NOT NULL violated
        moved = update(genesis, keys[0], also_known_as=["at://moved.example.com"])
        assert client.post(f"/{did}", json=moved).status_code == 200
        assert client.get(f"/{did}/data").json()["alsoKnownAs"] == ["at://moved.example.com"]
    engine = make_engine(db_url)
    columns = {c["name"] for c in inspect(engine).get_columns("dids")}
    assert columns == {"did", "head_cid", "tombstoned", "data", "document"}
    upgrade(engine)  # again: nothing to do
    engine.dispose()


def test_a_new_database_is_at_the_newest_revision(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as connection:
        (version,) = connection.exec_driver_sql("SELECT version_num FROM alembic_version").one()
    engine.dispose()
    assert version == "0003"


def test_the_models_and_the_migrations_describe_the_same_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.connect() as connection:
        drift = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    engine.dispose()
    assert drift == []


def test_documents_stored_before_the_version_mark_are_marked_as_old(db_url: str) -> None:
    """A database that held DIDs when revision 0003 came is marked with rendering version 1
    (its bodies may be older than the code's); one created empty, with the code's version."""
    engine = make_engine(db_url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")
        connection.execute(
            text(
                "INSERT INTO dids (did, head_cid, tombstoned, data, document) "
                "VALUES ('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', 'bafyrei', :no, :body, :body)"
            ),
            {"no": False, "body": b"{}"},
        )
    upgrade(engine)
    assert stored_documents_version(engine) == 1
    engine.dispose()


def test_an_empty_database_is_marked_with_the_current_rendering(db_url: str) -> None:
    engine = make_engine(db_url)
    upgrade(engine)
    assert stored_documents_version(engine) == DOCUMENTS_VERSION
    engine.dispose()


@pytest.mark.usefixtures("logging_left_as_found")  # plc serve sets up logging in-process
def test_a_database_a_newer_version_migrated_is_refused_in_one_line(db_url: str) -> None:
    # an older plc restarted beside a newer one after an upgrade: Alembic's CommandError was a
    # 100-line traceback in plc serve, plc import and plc refresh-documents alike
    engine = make_engine(db_url)
    upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(InvalidInput, match="schema is at revision 0099, which this version"):
        upgrade(engine)
    with engine.connect() as connection:  # refused before anything was changed
        assert MigrationContext.configure(connection).get_current_heads() == ("0099",)
    engine.dispose()
    for command_line in (["serve", "--port", "0"], ["refresh-documents"]):
        result = CliRunner().invoke(app, [*command_line, "--database-url", db_url])
        assert result.exit_code == 1, result.output
        assert result.stderr.strip().splitlines() == [
            "error: the database's schema is at revision 0099, which this version of plc does"
            " not know (its newest is 0003): a newer version migrated it; run that version"
        ]
