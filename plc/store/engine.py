"""Database engines: SQLite (default, a file) or PostgreSQL, from one URL.

Accepted URLs (design.md decision 6): ``sqlite:///relative/path``, ``sqlite:////absolute/path``,
``postgresql://…`` and ``postgres://…`` (driven by psycopg 3). SQLite runs in WAL mode with
``synchronous=FULL`` (a committed op survives power loss) and a busy timeout; connections run in
autocommit mode (a read is one statement); the writer takes the lock up front with
``BEGIN IMMEDIATE`` (``SqlStore``), so two processes never deadlock upgrading a read lock.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import QueuePool
from sqlmodel import create_engine

from plc.errors import InvalidInput, echo

DATABASE_URL_SETTING = "DATABASE_URL"
"""How errors name the database URL when it came from the environment (or the default)."""
DATABASE_URL_OPTION = "--database-url (DATABASE_URL)"
"""How errors name it when it came from a command's ``--database-url``, as
:func:`plc.config.setting_error` names other options."""


def database_url_setting(from_option: bool) -> str:
    """The name errors give the database URL: :data:`DATABASE_URL_OPTION` when it came from
    ``--database-url`` (``from_option``), else :data:`DATABASE_URL_SETTING`."""
    return DATABASE_URL_OPTION if from_option else DATABASE_URL_SETTING


def normalize_database_url(url: str, setting: str = DATABASE_URL_SETTING) -> URL:
    """Parse a database URL and pick the driver. ``setting`` is what errors call the URL
    (:func:`database_url_setting`).

    Raises:
        InvalidInput: not a URL (the text is not repeated: it may hold a password), a scheme
            other than sqlite / postgresql / postgres, or a SQLite URL without a file (an
            in-memory database is private to one connection, and the server opens several).
    """
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise InvalidInput(
            f"{setting} is not a database URL: expected sqlite:///relative/path, "
            "sqlite:////absolute/path or postgresql://user@host:port/database"
        ) from None
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if parsed.database in (None, "", ":memory:") or parsed.database.startswith("file::memory:"):
            raise InvalidInput(
                f"{setting} names no SQLite file (in-memory databases are not supported): "
                "use sqlite:///relative/path or sqlite:////absolute/path"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    raise InvalidInput(
        f"{setting} has an unsupported scheme {echo(parsed.drivername)}: use "
        "sqlite:///path or postgresql://user@host:port/database"
    )


def redacted(url: str) -> str:
    """The URL as given, with any password hidden (the one before ``@`` and query parameters
    such as ``?password=``), for logs (no driver name added).

    Raises:
        InvalidInput: as :func:`normalize_database_url`.
    """
    normalize_database_url(url)
    parsed = make_url(url)
    hidden = {key: "***" for key in parsed.query if _SECRET_PARAMETER.search(key)}
    return (
        parsed.update_query_dict(hidden)
        .render_as_string(hide_password=True)
        .replace("%2A%2A%2A", "***")
    )


_SECRET_PARAMETER = re.compile("password|secret|token", re.IGNORECASE)
"""Query parameters of a database URL hidden by :func:`redacted` (libpq takes ``password``
and ``sslpassword`` there too)."""


def is_sqlite(engine: Engine) -> bool:
    """True for a SQLite engine."""
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, pool_size: int = 16, busy_timeout_ms: int = 5000) -> Engine:
    """Create the engine for ``url`` (no module-level engine exists anywhere).

    ``busy_timeout_ms`` bounds a writer's wait for a lock: SQLite's ``busy_timeout``,
    PostgreSQL's ``lock_timeout`` (every connection of this engine; reads use
    :func:`make_read_engine`'s, bounded the same way).

    Raises:
        InvalidInput: as :func:`normalize_database_url`.
    """
    parsed = normalize_database_url(url)
    if parsed.drivername.startswith("sqlite"):
        engine = create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
            poolclass=QueuePool,
            pool_size=pool_size,
            max_overflow=pool_size,
        )
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    engine = create_engine(
        parsed,
        connect_args=POSTGRES_CONNECT_ARGS,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
    _configure_postgresql(engine, busy_timeout_ms)
    return engine


POSTGRES_CONNECT_ARGS = {
    # A peer that vanished (host down, network cut) is noticed in about a minute, not after
    # the kernel's two hours: its connection's locks and our waits end with it.
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    # Likewise a peer that stops acknowledging what was sent (a COMMIT or a query in
    # flight, when keepalives do not run): the connection fails after 30 s instead of the
    # kernel's 15 minutes of retransmissions, and the lost-commit check settles the batch.
    "tcp_user_timeout": 30_000,
    "connect_timeout": 10,
}
"""libpq connection parameters of every PostgreSQL pool (a URL's own query overrides)."""


def _configure_postgresql(engine: Engine, lock_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Writers queue on the log head's row lock, and any statement on a table another
        # session locked: one held by a stuck process or session must not hold them
        # forever. After the busy timeout the wait fails (LockNotAvailable) and the request
        # is answered 503, as on SQLite. Set outside a transaction, so that the pool's
        # rollback on return does not undo it.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        try:
            # 0 would mean "wait forever" here; on SQLite it means "do not wait"
            dbapi_connection.execute(f"SET lock_timeout = {max(1, int(lock_timeout_ms))}")
        finally:
            dbapi_connection.autocommit = autocommit


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver: reads autocommit, the writer issues
        # BEGIN IMMEDIATE itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def make_read_engine(engine: Engine, *, pool_size: int = 16, busy_timeout_ms: int = 5000) -> Engine:
    """The engine reads use. SQLite: the same one (its connections are in autocommit mode
    already). PostgreSQL: a second pool in AUTOCOMMIT, so a read is one round trip with no
    transaction to roll back when the connection returns to the pool, and whose waits for a
    lock (a table another session locked: ``VACUUM FULL``, ``ALTER TABLE``, ``LOCK TABLE``)
    end after ``busy_timeout_ms`` (``lock_timeout``; the read answers 503): reads run on
    worker threads, and a few waiting without end would take every one of them."""
    if is_sqlite(engine):
        return engine
    reads = create_engine(
        engine.url,
        connect_args=POSTGRES_CONNECT_ARGS,
        isolation_level="AUTOCOMMIT",
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
    )
    _configure_postgresql(reads, busy_timeout_ms)
    return reads
