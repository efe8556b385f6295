"""The ``plc`` command: ``plc serve``, ``plc import``, ``plc resolve``, ``plc health``,
``plc log-key``, ``plc keygen`` and ``plc refresh-documents``.

Usage errors exit 1 (design.md decision 8).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
from typing import Annotated

import typer

from plc.config import Settings
from plc.health_cli import health_command
from plc.importer.cli import import_command
from plc.logkey_cli import keygen_command, log_key_command
from plc.refresh_cli import refresh_documents_command
from plc.resolve.cli import resolve_command

app = typer.Typer(
    add_completion=False,
    rich_markup_mode=None,  # option help says "[env PLC_PORT; default 2582]": not markup
    no_args_is_help=True,
    help="A did:plc directory with a transparency log.",
)
log = logging.getLogger("plc.serve")


@app.callback()
def _root() -> None:
    """A did:plc directory with a transparency log."""


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Bind address [env PLC_HOST; default 127.0.0.1]")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [env PLC_PORT; default 2582]")] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database URL [env DATABASE_URL; default sqlite:///plc-directory.sqlite3]"
        ),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes [env PLC_WORKERS; default 1]")
    ] = None,
) -> None:
    """Run the directory: migrate the schema, then serve HTTP."""
    import uvicorn
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from plc.api.http_server import uvicorn_options
    from plc.checkpoints import load_or_create_signer
    from plc.config import setting_error, unknown_settings
    from plc.document import DOCUMENTS_VERSION
    from plc.errors import PlcError
    from plc.logging_setup import configure_logging
    from plc.metrics import shared_metrics_dir
    from plc.resolve.settings import ResolverSettings
    from plc.store.documents import stored_documents_version
    from plc.store.engine import (
        database_url_setting,
        is_sqlite,
        make_engine,
        normalize_database_url,
        redacted,
    )
    from plc.store.migrate import upgrade
    from plc.store.sql import SqlStore
    from plc.store.tlog_store import TlogStore

    overrides = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "database_url": database_url,
            "workers": workers,
        }.items()
        if v is not None
    }
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
        # Read here as well as in each worker, so a bad value stops the start with one line.
        resolver = ResolverSettings()
    except ValidationError as exc:
        options = {name: "--" + name.replace("_", "-") for name in overrides}
        typer.echo(f"error: {setting_error(exc, options)}", err=True)
        raise typer.Exit(1) from None
    try:
        # before anything is bound or said, named as it was given (option or environment)
        normalize_database_url(
            settings.database_url, database_url_setting("database_url" in overrides)
        )
    except PlcError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    # port 0 is chosen now, so that the start-up line names the real port
    bound = _bind_probe(settings.host, settings.port)
    if isinstance(bound, str):
        where = f"{settings.host}:{settings.port}" if settings.port else settings.host
        typer.echo(f"error: cannot listen on {where}: {bound}", err=True)
        raise typer.Exit(1)
    settings.port = bound
    configure_logging(settings.log_level)
    for name in unknown_settings(os.environ):
        log.warning("unknown setting %s ignored (see the README's Configuration)", name)
    try:
        engine = make_engine(settings.database_url)
        upgrade(engine)
        signer = load_or_create_signer(
            TlogStore(SqlStore(engine)), settings.log_signing_key, settings.log_origin
        )
        documents_version = stored_documents_version(engine)
        engine.dispose()
    except PlcError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        typer.echo(
            f"error: database {redacted(settings.database_url)}: "
            f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}",
            err=True,
        )
        raise typer.Exit(1) from None
    # One plain, unwrapped line that scripts and auditors read the log's public key from.
    print(f"verifier key: {signer.verifier.key_text}", flush=True)
    # Worker processes rebuild the settings from the environment; hand the overrides down.
    os.environ["PLC_HOST"] = settings.host
    os.environ["PLC_PORT"] = str(settings.port)
    os.environ["DATABASE_URL"] = settings.database_url
    if documents_version is not None and documents_version < DOCUMENTS_VERSION:
        log.warning(
            "DID documents stored by an earlier version may differ from what this version "
            "serves for new ops: run `plc refresh-documents` once (it may run while this "
            "serves, and rewrites only the ones that differ)",
            extra={"fields": {"stored": documents_version, "current": DOCUMENTS_VERSION}},
        )
    test_only = resolver.test_only_overrides()
    if test_only:
        log.warning(
            "resolver settings meant for tests are set: handles and did:web are not resolved "
            "over HTTPS on port 443 as atproto requires",
            extra={"fields": test_only},
        )
    log.info(
        "listening on http://%s:%d, database %s",
        f"[{settings.host}]" if ":" in settings.host else settings.host,  # RFC 3986 §3.2.2
        settings.port,
        redacted(settings.database_url),
        extra={"fields": {"host": settings.host, "port": settings.port}},
    )
    if settings.workers > 1 and is_sqlite(engine):
        log.warning(
            "several workers on SQLite take turns at its one write lock: measured slower "
            "than one worker for writes (PLC_WORKERS > 1 is meant for PostgreSQL)",
            extra={"fields": {"workers": settings.workers}},
        )
    for handler in logging.getLogger().handlers:
        handler.flush()
    # From here a SIGTERM is a stop uvicorn carries out gracefully, after which it raises the
    # signal again into this handler: exit 0, as with several workers (whose supervisor just
    # returns). Exit status 143 read as a failure to systemd (a stopped unit left "failed").
    if signal.getsignal(signal.SIGTERM) is _terminated:  # main()'s; SIG_IGN stays ignored
        signal.signal(signal.SIGTERM, _stopped)
    with shared_metrics_dir(settings.workers, settings.metrics):
        uvicorn.run(
            "plc.api.app:create_served_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            **uvicorn_options(settings),
        )


def _bind_probe(host: str, port: int) -> int | str:
    """Bind ``host:port`` for a moment, as uvicorn will: the port bound (port 0: one the
    system calls free now) or why it cannot be bound. Run before anything starts, so a busy
    port or an address not of this machine stops ``plc serve`` in one line instead of after
    it has said where it listens (uvicorn binds last)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            # as uvicorn binds: without SO_REUSEADDR a port in TIME_WAIT would look busy
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
            return int(probe.getsockname()[1])
    except OSError as exc:
        return exc.strerror or str(exc)
    except UnicodeError:  # getaddrinfo's IDNA encoding: an empty or over-long label
        return "not a host name"


app.command("resolve")(resolve_command)
app.command("import")(import_command)
app.command("health")(health_command)
app.command("log-key")(log_key_command)
app.command("keygen")(keygen_command)
app.command("refresh-documents")(refresh_documents_command)


def _terminated(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _stopped(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    """Console entry point. Click reports usage errors with exit code 2; that code is
    reserved for "misbehaviour found" across our commands, so usage errors exit 1.

    Until a command installs its own handlers (uvicorn's, ``plc import``'s), SIGTERM ends
    the process with 143 and Ctrl-C with 130, without a traceback; once ``plc serve`` hands
    over to uvicorn, a SIGTERM is a graceful stop that exits 0, whatever the worker count.
    As PID 1 of a container a process has no default action for SIGTERM: a ``docker stop``
    during start-up (imports, the migration) was ignored until the runtime's SIGKILL. A
    SIGTERM the parent made ignored stays ignored."""
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit as exc:
        if exc.code == 2:
            sys.exit(1)
        raise


if __name__ == "__main__":
    main()
