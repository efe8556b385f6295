"""``plc log-key`` and ``plc keygen``: the transparency log's keys without starting a server.

- ``plc log-key`` prints the verifier key of the log in the database ``plc serve`` would use
  (the line it prints on start, for auditors), read-only: it creates and migrates nothing.
  The key is chosen and checked as ``plc serve`` does on start
  (:func:`plc.checkpoints.load_or_create_signer`), without storing one.
- ``plc keygen ORIGIN`` prints a new note signer key for ``PLC_LOG_SIGNING_KEY`` and its
  verifier key (C2SP signed-note, Ed25519), for an operator who keeps the key outside the
  database.

Exit status: 0 printed, 1 nothing to print (no such database, no log key yet) or bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer


def log_key_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database URL [env DATABASE_URL; default sqlite:///plc-directory.sqlite3]"
        ),
    ] = None,
) -> None:
    """Print the verifier key of the log in the database (read-only)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from plc.checkpoints import load_or_create_signer
    from plc.config import SettingRefused, command_settings
    from plc.errors import InvalidInput, PlcError
    from plc.store.engine import make_engine, redacted
    from plc.store.sql import SqlStore
    from plc.store.tlog_store import TlogStore

    try:
        settings, url = command_settings(database_url)
    except SettingRefused as exc:
        _fail(str(exc))
    shown = redacted(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).is_file():
        _fail(f"no database at {shown}")
    engine = make_engine(settings.database_url)
    try:
        if not inspect(engine).has_table("tlog_signer"):
            _fail(f"no log in {shown} (plc serve creates it on its first start)")
        # plc serve's own choice and checks of the key, without storing one
        signer = load_or_create_signer(
            TlogStore(SqlStore(engine)),
            settings.log_signing_key,
            settings.log_origin,
            create=False,
        )
    except InvalidInput as exc:
        _fail(f"{shown}: {exc.message}")
    except (SQLAlchemyError, PlcError) as exc:
        _fail(f"database {shown}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    finally:
        engine.dispose()
    typer.echo(f"verifier key: {signer.verifier.key_text}")


def keygen_command(
    origin: Annotated[
        str,
        typer.Argument(
            help="The log's origin, e.g. plc.example.com/tlog (what PLC_LOG_ORIGIN would be)"
        ),
    ],
) -> None:
    """Print a new log signing key (for PLC_LOG_SIGNING_KEY) and its verifier key."""
    from plc.checkpoints import ORIGIN_RE
    from plc.config import ORIGIN_RULE
    from plc.tlog.note import generate_signer

    if not ORIGIN_RE.fullmatch(origin):
        _fail(f"the origin {ORIGIN_RULE}")
    signer_key, verifier_key = generate_signer(origin)
    typer.echo(f"PLC_LOG_SIGNING_KEY={signer_key}")
    typer.echo(f"verifier key: {verifier_key}")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)
