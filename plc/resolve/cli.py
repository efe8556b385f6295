"""``plc resolve <handle|did>``: print a verified identity as JSON (issue 5, "Library and CLI").

Registered by the CLI module with ``app.command("resolve")(resolve_command)``. did:plc
documents are read from ``--plc-url`` (default https://plc.directory); every other setting
comes from the ``PLC_RESOLVE_*`` environment variables (:class:`ResolverSettings`).

Output and exit status:

- 0: the identity resolved; ``{"did", "handle", "didDoc"}`` on stdout. For a DID, ``handle``
  may be ``handle.invalid`` (the DID resolved, its handle did not verify).
- 1: it did not resolve: the identifier is malformed, the handle resolves to no DID, the DID
  has no document or is deactivated, the directory is unavailable or does not answer within
  the time budget, or a *handle* was given whose DID document does not claim it back (the
  identity is still printed, with ``handle.invalid``). Errors are printed to stderr as
  ``{"error", "message"}``. A refused setting (``PLC_RESOLVE_*`` or ``--timeout``) is one line
  ``error: invalid setting ...`` on stderr, without its value, as ``plc serve`` reports it.

The time budget (``--timeout``) bounds the whole resolution, the did:plc document's fetch
from ``--plc-url`` included.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Annotated

import orjson
import typer
from pydantic import ValidationError

from plc.config import setting_error
from plc.errors import PlcError
from plc.resolve.did import HttpPlcDocumentSource
from plc.resolve.errors import HandleNotFound
from plc.resolve.resolver import IdentityInfo, IdentityResolver
from plc.resolve.settings import ResolverSettings
from plc.resolve.syntax import INVALID_HANDLE

EXIT_OK = 0
EXIT_NOT_RESOLVED = 1


def run_resolve(
    identifier: str,
    plc_url: str = "https://plc.directory",
    timeout_s: float | None = None,
    settings: ResolverSettings | None = None,
) -> int:
    """Resolve ``identifier``, print the result, and return the exit status (0 or 1).

    Args:
        identifier: a handle or a DID.
        plc_url: base URL of the PLC directory for did:plc documents.
        timeout_s: time budget override (seconds, at most 60); default
            ``PLC_RESOLVE_TIME_BUDGET_S``.
        settings: explicit settings (tests); default: read from the environment. With
            ``timeout_s`` they are built again with it (unset fields from the environment).

    A refused setting is reported as ``error: invalid setting ...`` (exit status 1).
    """
    overrides = {} if timeout_s is None else {"time_budget_s": timeout_s}
    try:
        if settings is None:
            settings = ResolverSettings(**overrides)  # type: ignore[arg-type]
        elif overrides:
            # built again so that the override is checked (model_copy would not check it)
            explicit = settings.model_dump(exclude_unset=True)
            settings = ResolverSettings(**{**explicit, **overrides})
    except ValidationError as err:
        options = {"time_budget_s": "--timeout"} if overrides else None
        typer.echo(f"error: {setting_error(err, options)}", err=True)
        return EXIT_NOT_RESOLVED
    # the resolver ends the fetch at its deadline; this bound only matters without one
    source = HttpPlcDocumentSource(plc_url, timeout_s=settings.time_budget_s)
    resolver = IdentityResolver(settings, source)
    try:
        info = asyncio.run(resolver.resolve_identity(identifier))
    except PlcError as err:
        _print_error(err)
        return EXIT_NOT_RESOLVED
    sys.stdout.write(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()
    return EXIT_NOT_RESOLVED if _unverified_handle(identifier, info) else EXIT_OK


def resolve_command(
    identifier: Annotated[str, typer.Argument(help="A handle (alice.example.com) or a DID.")],
    plc_url: Annotated[
        str, typer.Option("--plc-url", help="PLC directory serving did:plc documents.")
    ] = "https://plc.directory",
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=0.01,
            help="Time budget in seconds, at most 60 (default PLC_RESOLVE_TIME_BUDGET_S, 3).",
        ),
    ] = None,
) -> int:
    """Resolve a handle or DID and print the verified identity as JSON (exit 1 when it does
    not resolve)."""
    # typer ignores a command's return value: a failure status travels as typer.Exit.
    status = run_resolve(identifier, plc_url, timeout)
    if status != EXIT_OK:
        raise typer.Exit(code=status)
    return status


def _unverified_handle(identifier: str, info: IdentityInfo) -> bool:
    """A handle was asked for and did not verify."""
    return not identifier.startswith("did:") and info["handle"] == INVALID_HANDLE


def _print_error(err: PlcError) -> None:
    name: str = getattr(err, "xrpc_error", type(err).__name__)
    body = {"error": name, "message": err.message}
    if isinstance(err, HandleNotFound):
        body["reason"] = err.reason
    sys.stderr.write(orjson.dumps(body).decode() + "\n")
    sys.stderr.flush()
