"""``plc-audit``: the auditor's command line.

Commands::

    plc-audit sync --directory URL [--state PATH] [--vkey KEY] [--follow] ...
    plc-audit verify FILE [--resume] [--checkpoint NOTE] [--vkey KEY] ...
    plc-audit compare STATE_A STATE_B
    plc-audit report [--state PATH | --directory URL | --file FILE] [--json]
    plc-audit check-evidence FINDINGS [--vkey KEY]

Findings go to stdout (or ``--findings PATH``) as JSON lines; the readable summary and the
progress bar go to stderr. Exit codes (design.md decision 8): 0 clean (information findings
only), 2 misbehaviour found, 1 the audit itself failed — network, unreadable input, bad
arguments and usage errors (click's usage exit code 2 is turned into 1), 130 interrupted
(Ctrl-C; the state keeps every committed batch, and ``sync`` run again, or ``verify
--resume``, continues from there). Ctrl-C while ``sync --follow`` follows the stream stops
following instead: the run ends with its summary and exit code 0 or 2. The first Ctrl-C
takes effect between batches (:mod:`auditor.interrupt`); a second one aborts at once (130).
``check-evidence`` has its own: 0 every finding verified, 3 some only unverifiable, 1 some
rejected.
"""

from __future__ import annotations

import math
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape

from auditor import state
from auditor.audit import BATCH_LINES, AuditOptions, AuditOutcome, sync_directory, verify_file
from auditor.backdating import DEFAULT_TOLERANCE_MS
from auditor.compare import compare_states
from auditor.errors import AuditFailed
from auditor.findings import MISBEHAVIOUR, Finding
from auditor.options import (
    MAX_RESPONSE_BYTES,
    REQUEST_DEADLINE_S,
    STREAM_SILENCE_S,
    HttpLimits,
)
from auditor.removals import load_removed_cids
from auditor.report import (
    render_findings,
    render_summary,
    state_lookup,
    summarize,
    write_findings,
)
from auditor.sources import SourceSpec
from plc.errors import VerificationError
from plc.tlog.note import Verifier, parse_verifier_key

app = typer.Typer(
    name="plc-audit",
    help="Independent auditor of did:plc directories: replay, fork and split-view checks.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

_STATE_HELP = (
    "State file (default: plc-audit-<16 hex digits of the source's SHA-256>.sqlite3 in the cwd)."
)
_FINDINGS_HELP = "Write findings as JSON lines here ('-' = stdout)."
_TOLERANCE_HELP = (
    "How far an op's createdAt may be earlier than that of an op with a lower seq before it "
    "is a backdated-op finding (seconds, >= 0; millisecond precision)."
)
_TOLERANCE_OPTION = typer.Option("--created-at-tolerance", min=0.0, help=_TOLERANCE_HELP)
_ALLOW_BACKDATED_OPTION = typer.Option(
    help="Report backdated-op as information (a mirror whose log holds history imported out "
    "of createdAt order)."
)


def _tolerance_ms(seconds: float) -> int:
    """``--created-at-tolerance`` in milliseconds.

    Raises:
        typer.BadParameter: not a finite number >= 0 (click's range check lets NaN and
            infinity through).
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise typer.BadParameter(
            "must be a finite number of seconds >= 0", param_hint="--created-at-tolerance"
        )
    return round(seconds * 1000)


def _finite(value: float | None, hint: str, *, low: float) -> None:
    """Refuse a number of seconds that is not finite or below ``low`` (None passes).

    Raises:
        typer.BadParameter: NaN, infinite or too small (click lets NaN through).
    """
    if value is not None and (not math.isfinite(value) or value < low):
        raise typer.BadParameter(f"must be a finite number of seconds >= {low:g}", param_hint=hint)


EXIT_INTERRUPTED = 130
"""Exit code of a run stopped with Ctrl-C (128 + SIGINT, as shells report it)."""


class Interrupted(Exception):
    """A run stopped by Ctrl-C; the message says what the state kept and how to go on."""


@contextmanager
def _resumable(path: Path, how: str) -> Iterator[None]:
    """Turn Ctrl-C during a run into :class:`Interrupted`, saying how to resume: every batch
    is committed with its cursor in one transaction and an interrupted one is rolled back,
    so the state holds a consistent prefix that ``how`` continues from."""
    try:
        yield
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted: the state file {path} keeps what was verified so far; {how} "
            "resumes from there"
        ) from None


def _stderr() -> Console:
    return Console(stderr=True)


_KEY_LINE_PREFIX = "verifier key:"


def _key_text(text: str) -> str:
    """A ``--vkey`` value as a verifier key: ``plc serve``'s whole start-up line
    (``verifier key: <key>``) is taken as well as the key alone."""
    text = text.strip()
    if text.startswith(_KEY_LINE_PREFIX):
        text = text[len(_KEY_LINE_PREFIX) :].strip()
    return text


def _verifiers(texts: Sequence[str]) -> tuple[Verifier, ...]:
    try:
        return tuple(parse_verifier_key(_key_text(t)) for t in texts)
    except VerificationError as exc:
        raise AuditFailed(f"--vkey: {exc.message}") from exc


@contextmanager
def _output(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdout.buffer
        return
    try:
        handle = open(path, "wb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise AuditFailed(f"--findings {path}: {exc.strerror or exc}") from exc
    with handle:
        yield handle


def _writable(path: str) -> None:
    """Check before a run that findings can be written to ``path`` (a run of hours must not
    end with nowhere to put them); a file this check creates is removed again.

    Raises:
        AuditFailed: ``path`` cannot be opened for writing.
    """
    if path == "-":
        return
    existed = Path(path).exists()
    try:
        with open(path, "ab"):  # append: an existing file keeps its bytes until the end
            pass
    except OSError as exc:
        raise AuditFailed(f"--findings {path}: {exc.strerror or exc}") from exc
    if not existed:
        Path(path).unlink(missing_ok=True)


def _finish(outcome: AuditOutcome, findings_path: str) -> int:
    conn = state.connect(outcome.state_path, create=False)
    try:
        new = [f for _, f in state.load_findings(conn, after_id=outcome.first_finding_id)]
        with _output(findings_path) as out:
            write_findings(new, out, state_lookup(conn))
        summary = summarize(conn)
    finally:
        conn.close()
    notes = [f"state file: {outcome.state_path}", f"{len(new)} new findings this run"]
    render_summary(
        summary,
        _stderr(),
        notes=notes + outcome.notes,
        run_ops=outcome.ops,
        run_seconds=outcome.elapsed_s,
    )
    return summary.exit_code


@app.command()
def sync(
    directory: Annotated[str, typer.Option("--directory", "-d", help="Directory URL.")],
    state_path: Annotated[Path | None, typer.Option("--state", help=_STATE_HELP)] = None,
    vkey: Annotated[list[str], typer.Option(help="The log's verifier key.")] = [],  # noqa: B006
    follow: Annotated[bool, typer.Option(help="Keep following /export/stream.")] = False,
    follow_seconds: Annotated[
        float | None, typer.Option(help="Stop following after this long (seconds).")
    ] = None,
    stream_silence: Annotated[
        float,
        typer.Option(
            help="Without /tlog/: seconds without a stream message before /export is asked "
            "for new entries (the stream is reconnected if it had some)."
        ),
    ] = STREAM_SILENCE_S,
    allow_seq_gaps: Annotated[
        bool, typer.Option(help="Report seq gaps as information (plc.directory).")
    ] = False,
    removed_cids: Annotated[
        list[Path], typer.Option(help="Announced-removal list of CIDs (JSON array or lines).")
    ] = [],  # noqa: B006
    spot_checks: Annotated[int, typer.Option(help="Random DIDs to spot-check.")] = 10,
    recheck: Annotated[
        str,
        typer.Option(
            help="Re-read of the verified prefix on resume: full, tail, none (tail and none "
            "still check the last entry read; if it changed, all is re-read)."
        ),
    ] = "full",
    workers: Annotated[int, typer.Option(min=0, help="Validation processes (0: in-process).")] = 2,
    canonical_lines: Annotated[
        bool | None, typer.Option(help="Require canonical lines (default: with a tlog).")
    ] = None,
    fresh: Annotated[bool, typer.Option(help="Discard the state and start over.")] = False,
    findings: Annotated[str, typer.Option(help=_FINDINGS_HELP)] = "-",
    progress: Annotated[bool | None, typer.Option(help="Progress bar (default: on a tty).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the spot-check sample.")] = None,
    request_deadline: Annotated[
        float,
        typer.Option(
            min=0.1, help="Longest one HTTP request may take, start to last byte (seconds)."
        ),
    ] = REQUEST_DEADLINE_S,
    max_response_bytes: Annotated[
        int,
        typer.Option(min=1024, help="Largest answer read from the directory (decoded bytes)."),
    ] = MAX_RESPONSE_BYTES,
    created_at_tolerance: Annotated[float, _TOLERANCE_OPTION] = DEFAULT_TOLERANCE_MS / 1000,
    allow_backdated: Annotated[bool, _ALLOW_BACKDATED_OPTION] = False,
) -> int:
    """Replay a directory's /export (and /tlog/), resuming from the state file."""
    if recheck not in ("full", "tail", "none"):
        raise typer.BadParameter("must be full, tail or none", param_hint="--recheck")
    _finite(follow_seconds, "--follow-seconds", low=0.0)
    _finite(stream_silence, "--stream-silence", low=0.1)
    _finite(request_deadline, "--request-deadline", low=0.1)
    spec = SourceSpec.for_url(directory)
    _writable(findings)
    options = AuditOptions(
        workers=workers,
        allow_seq_gaps=allow_seq_gaps,
        removed_cids=load_removed_cids(removed_cids),
        canonical_lines=canonical_lines,
        verifiers=_verifiers(vkey),
        spot_checks=spot_checks,
        recheck=recheck,
        follow=follow,
        follow_seconds=follow_seconds,
        stream_silence_s=stream_silence,
        progress=progress,
        seed=seed,
        http_limits=HttpLimits(request_deadline, max_response_bytes),
        created_at_tolerance_ms=_tolerance_ms(created_at_tolerance),
        allow_backdated=allow_backdated,
    )
    path = state_path or state.default_state_path(spec.location)
    with _resumable(path, "running the same sync again (without --fresh)"):
        outcome = sync_directory(spec.location, path, options, fresh=fresh)
    return _finish(outcome, findings)


@app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="JSON-lines export (sequenced_op lines).")],
    state_path: Annotated[Path | None, typer.Option("--state", help=_STATE_HELP)] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the state instead of starting over.")
    ] = False,
    checkpoint: Annotated[
        list[Path], typer.Option(help="A signed checkpoint note file to check the entries against.")
    ] = [],  # noqa: B006
    vkey: Annotated[list[str], typer.Option(help="The log's verifier key.")] = [],  # noqa: B006
    allow_seq_gaps: Annotated[bool, typer.Option(help="Report seq gaps as information.")] = False,
    removed_cids: Annotated[
        list[Path], typer.Option(help="Announced-removal list of CIDs (JSON array or lines).")
    ] = [],  # noqa: B006
    workers: Annotated[int, typer.Option(min=0, help="Validation processes (0: in-process).")] = 2,
    canonical_lines: Annotated[
        bool | None, typer.Option(help="Require canonical lines (default: with --checkpoint).")
    ] = None,
    findings: Annotated[str, typer.Option(help=_FINDINGS_HELP)] = "-",
    progress: Annotated[bool | None, typer.Option(help="Progress bar (default: on a tty).")] = None,
    batch_lines: Annotated[
        int, typer.Option(min=1, help="Lines per batch (the unit of commit and resume).")
    ] = BATCH_LINES,
    created_at_tolerance: Annotated[float, _TOLERANCE_OPTION] = DEFAULT_TOLERANCE_MS / 1000,
    allow_backdated: Annotated[bool, _ALLOW_BACKDATED_OPTION] = False,
) -> int:
    """Replay a JSON-lines export file offline (fresh unless --resume)."""
    spec = SourceSpec.for_file(file)
    if not Path(spec.location).is_file():
        raise AuditFailed(f"no such file: {file}")
    _writable(findings)
    try:
        notes = tuple(p.read_text("utf-8") for p in checkpoint)
    except OSError as exc:
        raise AuditFailed(f"cannot read a checkpoint: {exc}") from exc
    options = AuditOptions(
        workers=workers,
        allow_seq_gaps=allow_seq_gaps,
        removed_cids=load_removed_cids(removed_cids),
        canonical_lines=canonical_lines,
        verifiers=_verifiers(vkey),
        checkpoint_notes=notes,
        progress=progress,
        batch_lines=batch_lines,
        created_at_tolerance_ms=_tolerance_ms(created_at_tolerance),
        allow_backdated=allow_backdated,
    )
    path = state_path or state.default_state_path(spec.location)
    with _resumable(path, "the same verify with --resume"):
        outcome = verify_file(file, path, options, resume=resume)
    return _finish(outcome, findings)


@app.command()
def compare(
    state_a: Annotated[Path, typer.Argument(help="One auditor's state file.")],
    state_b: Annotated[Path, typer.Argument(help="Another auditor's state file.")],
    findings: Annotated[str, typer.Option(help=_FINDINGS_HELP)] = "-",
) -> int:
    """Compare two auditors' checkpoint histories and entries: find a split view (exit 1
    if the states are of different logs: checkpoints of no common origin, or of one side
    only)."""
    try:
        found = compare_states(state_a, state_b)
    except (FileNotFoundError, sqlite3.DatabaseError) as exc:
        raise AuditFailed(str(exc)) from exc
    with _output(findings) as out:
        write_findings(found, out)
    console = _stderr()
    if found:
        render_findings(found, console)
        console.print("[bold red]SPLIT VIEW[/] (exit code 2)")
        return 2
    console.print("[bold green]consistent[/]: no split view between the two states (exit code 0)")
    return 0


@app.command()
def report(
    state_path: Annotated[Path | None, typer.Option("--state", help="State file.")] = None,
    directory: Annotated[str | None, typer.Option(help="Find the state of this URL.")] = None,
    file: Annotated[Path | None, typer.Option(help="Find the state of this export file.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Findings as JSON lines.")] = False,
    limit: Annotated[int, typer.Option(help="Findings shown in the table.")] = 50,
) -> int:
    """Render the summary and findings of a state file."""
    if state_path is None:
        if directory is not None:
            state_path = state.default_state_path(SourceSpec.for_url(directory).location)
        elif file is not None:
            state_path = state.default_state_path(SourceSpec.for_file(file).location)
        else:
            raise typer.BadParameter("give --state, --directory or --file")
    try:
        conn = state.open_readonly(state_path)  # only read: never created or changed
    except (FileNotFoundError, sqlite3.DatabaseError) as exc:
        raise AuditFailed(str(exc)) from exc
    try:
        stored: list[Finding] = [f for _, f in state.load_findings(conn)]
        summary = summarize(conn)
        if as_json:
            write_findings(stored, sys.stdout.buffer, state_lookup(conn))
    except (sqlite3.Error, ValueError, KeyError) as exc:
        raise AuditFailed(f"{state_path}: unreadable auditor state ({exc})") from exc
    finally:
        conn.close()
    # With --json, stdout is JSON lines only: the summary goes to stderr.
    console = Console(stderr=as_json)
    render_summary(summary, console, notes=[f"state file: {state_path}"])
    if stored and not as_json:
        ordered = sorted(stored, key=lambda f: (f.severity != MISBEHAVIOUR, f.seq or 0))
        render_findings(ordered, console, limit)
    return summary.exit_code


@app.command("check-evidence")
def check_evidence(
    file: Annotated[Path, typer.Argument(help="Findings as JSON lines.")],
    vkey: Annotated[list[str], typer.Option(help="The log's verifier key.")] = [],  # noqa: B006
) -> int:
    """Re-verify findings' evidence with the pure core only: exit 0 if every finding is
    verified, 3 if none is rejected but some rest on the auditor's observation
    (unverifiable), 1 if any is rejected or the input cannot be read."""
    from auditor import evidence_check

    _verifiers(vkey)  # a bad key: one line, exit 1
    _readable_findings(file)
    args = [str(file)]
    for key in vkey:
        args += ["--vkey", _key_text(key)]
    try:
        return evidence_check.main(args)
    except Exception as exc:  # noqa: BLE001 - input the checks above did not foresee
        raise AuditFailed(f"{file}: cannot check: {exc!r}") from exc


def _readable_findings(path: Path) -> None:
    """Check that ``path`` holds findings as JSON lines: each non-blank line a JSON object.

    Raises:
        AuditFailed: unreadable file, or a line (named by number) that is not a JSON object.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise AuditFailed(f"cannot read {path}: {exc.strerror or exc}") from exc
    for number, raw in enumerate(data.split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise AuditFailed(f"{path}, line {number}: not JSON ({exc})") from exc
        if not isinstance(value, dict):
            raise AuditFailed(f"{path}, line {number}: not a JSON object (a finding)")


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``plc-audit``: run a command and exit with its code (usage errors 1)."""
    command = typer.main.get_command(app)
    interrupted = False
    try:
        code = command.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name="plc-audit",
            standalone_mode=False,
        )
    except typer.TyperException as exc:  # usage errors: click would exit 2, we exit 1
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            print(exc, file=sys.stderr)
        sys.exit(1)
    except (typer.Abort, typer.Exit) as exc:
        sys.exit(getattr(exc, "exit_code", 1) or 1)
    except AuditFailed as exc:
        _stderr().print(f"[bold red]audit failed:[/] {escape(str(exc))}", soft_wrap=True)
        sys.exit(1)
    except Interrupted as exc:
        print(exc, file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        interrupted = True
    # Typer turns Ctrl-C inside a command into exit code 130 (our commands return 0, 1, 2).
    if interrupted or code == EXIT_INTERRUPTED:
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
