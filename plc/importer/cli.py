"""``plc import SOURCE``: load another directory's history into this one.

Registered by the CLI module with ``app.command("import")(import_command)``. ``SOURCE`` is an
export file (JSON lines, ``sequenced_op`` or legacy form; ``-`` reads standard input) or a
directory URL, read through its seq-mode ``/export``. The database comes from
``--database-url`` / ``DATABASE_URL`` as for ``plc serve``, and its schema is migrated first.

Exit status: 0 every line was imported or already present; 3 some lines were refused (the
source holds ops that are not valid did:plc history, or lines that are not export lines);
1 the import could not run (bad option or setting, unreadable source, database failure); 130
stopped by SIGINT, SIGTERM or SIGHUP. A stop while the source is being read takes effect at
once; one while ops are being checked or committed waits for that batch to finish, so a
stopped run has committed every batch it started and ``resume with --after N`` is exact (a
second signal stops at once, mid-batch). The checkpoint that covers the imported entries is
signed by the next ``plc serve``.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO, Annotated

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from plc.importer.importer import Importer, Refusal
from plc.importer.sources import ExportPages, SourceError, SourceLine, file_lines

EXIT_OK, EXIT_FAILED, EXIT_REFUSED, EXIT_INTERRUPTED = 0, 1, 3, 130
SHOWN_REFUSALS = 10
"""Refusals printed on stderr; every one goes to ``--rejects``."""
MAX_REJECT_LINE = 65_536
"""Characters of a refused line kept in the rejects file."""
MAX_SEQ = 2**53 - 1
"""Largest ``--after``: the largest seq a JSON number carries exactly (the reference's
JavaScript reads ``seq`` as a double), far past any log."""
MAX_INTERVAL_S = 3600.0
"""Largest ``--interval``, seconds: an hour between pages is already no import at all; an
unbounded one (``inf``) ended in a traceback from ``time.sleep``."""
PROGRESS_EVERY_S = 60.0
"""Without a terminal (a service, a log file), a progress line this often, seconds."""
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


def import_command(
    source: Annotated[
        str,
        typer.Argument(
            help="An export file (JSON lines; - for stdin) or a directory URL (https://...)"
        ),
    ],
    database_url: Annotated[
        str | None,
        typer.Option(
            help="Database URL [env DATABASE_URL; default sqlite:///plc-directory.sqlite3]"
        ),
    ] = None,
    after: Annotated[
        int, typer.Option(min=0, max=MAX_SEQ, help="URL only: start after this seq (to resume)")
    ] = 0,
    count: Annotated[
        int, typer.Option(min=1, max=1000, help="URL only: lines per /export page")
    ] = 1000,
    interval: Annotated[
        float,
        typer.Option(
            min=0.0, max=MAX_INTERVAL_S, help="URL only: least seconds between page requests"
        ),
    ] = 0.6,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Ops per transaction")] = 500,
    rejects: Annotated[
        Path | None,
        typer.Option(help="Append each refused line to this file, as JSON lines"),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar (on a terminal)")] = True,
) -> None:
    """Import an export file or another directory's /export, re-validating every op."""
    code = run_import(
        source,
        database_url=database_url,
        after=after,
        count=count,
        interval_s=interval,
        batch_size=batch_size,
        rejects=rejects,
        progress=progress,
    )
    raise typer.Exit(code)


def run_import(
    source: str,
    *,
    database_url: str | None = None,
    after: int = 0,
    count: int = 1000,
    interval_s: float = 0.6,
    batch_size: int = 500,
    rejects: Path | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> int:
    """Run one import; print refusals and a summary to ``console`` (default: stderr).

    Returns the exit status (module docstring).
    """
    from sqlalchemy.exc import SQLAlchemyError

    from plc.config import SettingRefused, command_settings
    from plc.errors import PlcError
    from plc.service import Directory
    from plc.store.engine import make_engine, make_read_engine, redacted
    from plc.store.migrate import upgrade
    from plc.store.sql import SqlStore
    from plc.store.tlog_store import TlogStore

    # soft_wrap: a summary piped to a file or grep stays on one line
    out = console or Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        # before the source is opened, named as it was given (option or environment)
        settings, _ = command_settings(database_url)
    except SettingRefused as exc:
        out.print(f"error: {exc}", markup=False)
        return EXIT_FAILED
    is_url = source.startswith(("http://", "https://"))
    if after and not is_url:
        out.print("error: --after applies to a directory URL, not to a file", markup=False)
        return EXIT_FAILED
    try:
        # a file is opened before the database: one that cannot be read creates nothing
        from_file = None if is_url else file_lines(source)
    except SourceError as exc:
        out.print(f"error: {exc}", markup=False)
        return EXIT_FAILED
    try:
        writer = _Rejects(out, rejects)
    except OSError as exc:
        out.print(f"error: cannot write {rejects}: {exc.strerror}", markup=False)
        return EXIT_FAILED
    try:
        engine = make_engine(settings.database_url, busy_timeout_ms=settings.db_busy_timeout_ms)
        upgrade(engine)
    except PlcError as exc:
        writer.close()
        out.print(f"error: {exc.message}", markup=False)
        return EXIT_FAILED
    except SQLAlchemyError as exc:
        writer.close()
        text = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
        out.print(f"error: database {redacted(settings.database_url)}: {text}", markup=False)
        return EXIT_FAILED
    reads = make_read_engine(engine, busy_timeout_ms=settings.db_busy_timeout_ms)
    store = SqlStore(engine, reads, settings.db_busy_timeout_ms)
    store.leaf_hooks.append(TlogStore(store).append_in)
    directory = Directory(store, settings.policy(), inline_io=True)
    importer = Importer(directory, batch_size=batch_size, on_refused=writer.refused, start=after)

    def retrying(problem: str, pause: float, left: int) -> None:
        out.print(
            f"{printable(problem)}: retrying in {pause:.0f} s ({left} more "
            f"{'try' if left == 1 else 'tries'})",
            markup=False,
        )

    pages = (
        ExportPages(source, after=after, count=count, interval_s=interval_s, on_retry=retrying)
        if is_url
        else None
    )
    started = time.monotonic()
    code = EXIT_OK
    stop = _Stop()
    try:
        lines: Iterable[SourceLine] | None = from_file if from_file is not None else pages
        assert lines is not None  # a URL has pages, a file its lines
        with stop.handling():
            _feed(
                importer,
                lines,
                _total(source, is_url),
                progress and sys.stderr.isatty(),
                out,
                stop,
                cursor=is_url,
            )
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
        if stop.between_batches:
            out.print(
                f"stopped by {stop.signal_name}: every line read was committed",
                markup=False,
            )
        else:
            out.print(
                "interrupted: the batch in flight may or may not have been committed (running "
                "again finds what was)",
                markup=False,
            )
    except SourceError as exc:
        code = EXIT_FAILED
        out.print(f"error: {exc}", markup=False)
    except PlcError as exc:
        code = EXIT_FAILED
        out.print(f"error: {exc.message}", markup=False)
    except OSError as exc:  # reading the source, or writing the rejects file
        code = EXIT_FAILED
        out.print(f"error: {exc.strerror or exc}", markup=False)
    finally:
        if not writer.close():
            code = EXIT_FAILED
        if pages is not None:
            pages.close()
        tree_size = store.tree_size() if code != EXIT_FAILED else None
        store.close()
        engine.dispose()
    if code == EXIT_FAILED and not importer.stats.lines:
        return code  # nothing was read: the error says it all
    _summary(out, importer, time.monotonic() - started, tree_size)
    if is_url:
        out.print(f"resume with --after {importer.done_through}", markup=False)
    if code == EXIT_OK and importer.stats.refused:
        code = EXIT_REFUSED
    return code


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters as ``\\xNN``: a source's bytes must not drive the
    operator's terminal (escape sequences)."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _total(source: str, is_url: bool) -> int | None:
    if is_url or source == "-":
        return None
    try:
        return Path(source).stat().st_size
    except OSError:
        return None


class _Stop:
    """How SIGINT, SIGTERM and SIGHUP stop an import (module docstring): raised as
    ``KeyboardInterrupt`` at once while the source is read, after the batch otherwise."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self.between_batches = True
        """False once a stop landed inside a batch (a second signal)."""
        self._in_batch = False

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Install the handlers for the block (the main thread only: elsewhere Python
        cannot, and the default handling stays)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        # A signal someone chose to ignore stays ignored (nohup's SIGHUP, a background job's
        # SIGINT).
        previous = {
            number: signal.signal(number, self._signalled)
            for number in STOP_SIGNALS
            if signal.getsignal(number) is not signal.SIG_IGN
        }
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """A block a first signal does not interrupt (``check`` after it stops)."""
        self._in_batch = True
        try:
            yield
        finally:
            self._in_batch = False

    def check(self) -> None:
        """Stop here if a signal came during the last batch."""
        if self.signal_name is not None:
            raise KeyboardInterrupt

    def _signalled(self, number: int, _frame: FrameType | None) -> None:
        if self.signal_name is not None:  # a second signal: stop now, wherever this is
            self.between_batches = False
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(number).name
        if not self._in_batch:
            raise KeyboardInterrupt


def _feed(
    importer: Importer,
    lines: Iterable[SourceLine],
    total: int | None,
    show: bool,
    out: Console,
    stop: _Stop,
    *,
    cursor: bool,
) -> None:
    """Every source line into ``importer`` (the last batch committed), with a progress bar
    when ``show``, else a progress line every ``PROGRESS_EVERY_S`` (with the resume cursor
    when ``cursor``)."""
    reporter = _bar(importer, total, out) if show else _lines(importer, out, cursor)
    try:
        with reporter as report:
            for number, line in enumerate(lines, 1):
                with stop.batch():
                    importer.add(line)
                stop.check()
                report(number, line)
            with stop.batch():
                importer.flush()
    except KeyboardInterrupt:
        if stop.between_batches:  # the lines read so far are whole ops: commit them too
            with stop.batch():
                importer.flush()
        raise


Report = Callable[[int, SourceLine], None]
"""Told of each line fed (its number, from 1, and the line)."""


@contextmanager
def _bar(importer: Importer, total: int | None, out: Console) -> Iterator[Report]:
    """A rich progress bar over the source's bytes (a file) or its lines, updated every 500
    lines and once more at the end."""
    columns = [
        TextColumn("[bold]import"),
        BarColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
    ]
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task("import", total=total, counts="")

        def show_counts(completed: int | None) -> None:
            stats = importer.stats
            bar.update(
                task,
                completed=completed if total is not None else None,
                counts=f"{stats.imported:,} imported, {stats.present:,} present, "
                f"{stats.refused:,} refused",
            )

        def report(number: int, line: SourceLine) -> None:
            if number % 500 == 0:
                show_counts(line.progress)

        yield report
        show_counts(total)


@contextmanager
def _lines(importer: Importer, out: Console, cursor: bool) -> Iterator[Report]:
    """Without a terminal: a progress line every :data:`PROGRESS_EVERY_S`."""
    said = time.monotonic()

    def report(_number: int, _line: SourceLine) -> None:
        nonlocal said
        if time.monotonic() - said >= PROGRESS_EVERY_S:
            said = time.monotonic()
            _progress_line(out, importer, cursor)

    yield report


def _progress_line(out: Console, importer: Importer, cursor: bool) -> None:
    stats = importer.stats
    through = f"; committed through seq {importer.done_through}" if cursor else ""
    out.print(
        f"progress: {stats.lines:,} lines, {stats.imported:,} imported, {stats.present:,} "
        f"present, {stats.refused:,} refused{through}",
        markup=False,
    )


def _summary(out: Console, importer: Importer, seconds: float, tree_size: int | None) -> None:
    stats = importer.stats
    rate = stats.imported / seconds if seconds > 0 else 0.0
    size = "" if tree_size is None else f"; the log now holds {tree_size:,} entries"
    out.print(
        f"{stats.lines:,} lines: {stats.imported:,} imported, {stats.present:,} already "
        f"present, {stats.refused:,} refused, in {seconds:.1f} s ({rate:,.0f} ops/s){size}",
        markup=False,
    )


class _Rejects:
    """Prints the first refusals and writes every one to the rejects file, if any."""

    def __init__(self, out: Console, path: Path | None) -> None:
        self._out = out
        self._shown = 0
        # Appended: a resumed run must not wipe the refusals of the run it continues.
        self._file: IO[bytes] | None = path.open("ab") if path is not None else None

    def refused(self, refusal: Refusal) -> None:
        if self._shown < SHOWN_REFUSALS:
            who = f" ({refusal.did[:80]})" if refusal.did else ""
            text = printable(f"refused {refusal.where}{who}: {refusal.message}")
            self._out.print(text, markup=False)
        elif self._shown == SHOWN_REFUSALS:
            self._out.print("more refusals follow (see --rejects)", markup=False)
        self._shown += 1
        if self._file is not None:
            record = {
                "where": refusal.where,
                "did": refusal.did,
                "cid": refusal.cid,
                "message": refusal.message,
                "line": refusal.line.decode("utf-8", "replace")[:MAX_REJECT_LINE],
            }
            self._file.write(orjson.dumps(record) + b"\n")

    def close(self) -> bool:
        """Close the rejects file; False (said on the console) when what was written to it
        could not be (a full disk shows only here, when the buffer is written)."""
        if self._file is None:
            return True
        try:
            self._file.close()
        except OSError as exc:
            self._out.print(f"error: cannot write the rejects file: {exc.strerror}", markup=False)
            return False
        return True
