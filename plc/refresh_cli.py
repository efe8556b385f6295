"""``plc refresh-documents``: render every stored DID document and ``/data`` body again.

The bodies are rendered when an op is committed and served as stored, so a version that
renders some state differently (:data:`plc.document.DOCUMENTS_VERSION`) fixes stored DIDs only
through this command; ``plc serve`` says when it is needed. It may run while the directory
serves (each rewrite is a compare-and-swap on the DID's head; see
:mod:`plc.store.documents`), and again after a stop: it rewrites only what differs.
``--check`` changes nothing and lists the DIDs that differ.

Exit status: 0 every body is current (rewritten where it was not); 3 ``--check`` found bodies
that differ, or some DIDs' head op is missing or cannot be rendered (listed; left alone);
1 it could not run (bad setting, no such database, database failure); 130 stopped by Ctrl-C
(what was rewritten stays; run it again to finish).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from plc.store.documents import RefreshCounts

EXIT_OK, EXIT_FAILED, EXIT_FOUND = 0, 1, 3
SHOWN_DIDS = 10
"""DIDs named on stderr per kind (stale, unreadable); the counts cover all."""


def refresh_documents_command(
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database URL [env DATABASE_URL; default sqlite:///plc-directory.sqlite3]"
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; list the DIDs whose bodies differ")
    ] = False,
    page_size: Annotated[
        int, typer.Option(min=1, max=100_000, help="DIDs read (and rewritten) per transaction")
    ] = 1000,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal)")] = True,
) -> None:
    """Render every stored DID document and /data body again; rewrite those that differ."""
    raise typer.Exit(
        run_refresh(database_url=database_url, check=check, page_size=page_size, progress=progress)
    )


def run_refresh(
    *,
    database_url: str | None = None,
    check: bool = False,
    page_size: int = 1000,
    progress: bool = True,
    console: Console | None = None,
) -> int:
    """Run one refresh (or check), printing a summary to ``console`` (default: stderr).

    Returns the exit status (module docstring).
    """
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from plc.config import SettingRefused, command_settings
    from plc.document import DOCUMENTS_VERSION
    from plc.errors import PlcError
    from plc.store.documents import (
        RefreshCounts,
        count_dids,
        mark_documents_current,
        refresh_page,
        stored_documents_version,
    )
    from plc.store.engine import make_engine, redacted
    from plc.store.migrate import upgrade

    out = console or Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        settings, url = command_settings(database_url)
    except SettingRefused as exc:
        out.print(f"error: {exc}", markup=False)
        return EXIT_FAILED
    shown = redacted(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).is_file():
        out.print(f"error: no database at {shown}", markup=False)
        return EXIT_FAILED
    engine = make_engine(settings.database_url)
    total = RefreshCounts()
    try:
        if not inspect(engine).has_table("dids"):
            out.print(f"error: no directory in {shown}", markup=False)
            return EXIT_FAILED
        if not check:
            upgrade(engine)  # plc serve's migration: store_meta may not exist yet
        before = (
            stored_documents_version(engine) if inspect(engine).has_table("store_meta") else None
        )
        with _progress(out, progress and out.is_terminal, count_dids(engine)) as bar:
            after = ""
            while True:
                last_did, page = refresh_page(engine, after, page_size, rewrite=not check)
                if last_did is None:
                    break
                total.add(page, SHOWN_DIDS)
                bar.advance(page.checked)
                after = last_did
        if not check and not total.unreadable:
            mark_documents_current(engine)
    except KeyboardInterrupt:
        out.print(
            f"stopped after {total.checked} DIDs ({total.rewritten} rewritten); "
            "run it again to finish",
            markup=False,
        )
        return 130
    except PlcError as exc:
        out.print(f"error: {exc.message}", markup=False)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        out.print(
            f"error: database {shown}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            markup=False,
        )
        return EXIT_FAILED
    finally:
        engine.dispose()
    _report(out, total, check)
    if check:
        if before is not None and before < DOCUMENTS_VERSION:
            out.print(
                f"the database marks its bodies as version {before}; this version renders "
                f"{DOCUMENTS_VERSION} (plc refresh-documents, without --check, brings it up)",
                markup=False,
            )
        return EXIT_FOUND if total.stale or total.unreadable else EXIT_OK
    if before is not None and before < DOCUMENTS_VERSION and not total.unreadable:
        out.print(
            f"stored bodies are now version {DOCUMENTS_VERSION} (were {before})", markup=False
        )
    return EXIT_FOUND if total.unreadable else EXIT_OK


def _report(out: Console, total: RefreshCounts, check: bool) -> None:
    if check:
        out.print(f"{total.checked} DIDs checked, {total.stale} differ", markup=False)
    else:
        out.print(
            f"{total.checked} DIDs checked, {total.stale} differed: {total.rewritten} "
            f"rewritten, {total.moved} changed meanwhile by a new op (left as it wrote them)",
            markup=False,
        )
    for did in total.stale_dids:
        out.print(f"  differs: {did}", markup=False)
    if total.unreadable:
        out.print(
            f"{total.unreadable} DIDs have a head op that is missing or cannot be rendered "
            "(left alone; the first ones):",
            markup=False,
        )
        for did in total.unreadable_dids:
            out.print(f"  unreadable: {did}", markup=False)


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def advance(self, _n: int) -> None:
        return None


class _Bar:
    def __init__(self, out: Console, total: int) -> None:
        self.progress = Progress(
            TextColumn("DIDs"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
            transient=True,
        )
        self.task = self.progress.add_task("refresh", total=total)

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.progress.stop()

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)


def _progress(out: Console, shown: bool, total: int) -> _Bar | _NoBar:
    return _Bar(out, total) if shown else _NoBar()
