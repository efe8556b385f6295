"""``plc health``: ask a running directory whether it is healthy, for container health checks.

It sends ``GET /_health`` to the server ``plc serve`` would run with the same settings
(``PLC_HOST``, ``PLC_PORT``; a wildcard bind address is asked on loopback), or to ``--url``.
The Dockerfile's ``HEALTHCHECK`` runs it, so an orchestrator sees the database check the
endpoint makes (``select 1``), not only that the process is alive.

Exit status (what Docker's ``HEALTHCHECK`` expects): 0 healthy (200 with a JSON object), 1
unhealthy (any other answer, no whole answer within ``--timeout``, or bad settings).
``--timeout`` bounds the whole check (a SIGALRM timer: this is a command of its own, run in
its main thread), not each network step. One line is
printed either way: the server's version, or why it is unhealthy.
"""

from __future__ import annotations

import signal
from typing import Annotated, NoReturn

import typer

MAX_BODY_BYTES = 64 * 1024
"""More than ``/_health`` ever answers; a server that sends more is not a directory."""

DEFAULT_TIMEOUT_S = 5.0
"""How long ``plc health`` waits for the answer by default (the Dockerfile's HEALTHCHECK allows
longer, so a slow answer is reported by this command, not cut off by Docker)."""

_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def health_url(host: str, port: int) -> str:
    """URL of ``/_health`` on the server bound to ``host:port`` (str), seen from this machine.

    A wildcard bind address (``0.0.0.0``, ``::``) is reached on loopback; an IPv6 literal is
    bracketed (RFC 3986 §3.2.2).

    Raises:
        ValueError: ``port`` is 0 (the server took a port this command cannot know).
    """
    if port == 0:
        raise ValueError("PLC_PORT is 0, so the server's port is unknown here: give --url")
    host = _WILDCARD_HOSTS.get(host, host)
    if ":" in host:
        host = f"[{host.replace('%', '%25')}]"  # a zone index is written %25 (RFC 6874)
    return f"http://{host}:{port}/_health"


def health_command(
    url: Annotated[
        str | None,
        typer.Option(
            help="Health URL [default http://PLC_HOST:PLC_PORT/_health, "
            "a wildcard host asked on loopback]"
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, max=300, help="Seconds the whole check may take")
    ] = DEFAULT_TIMEOUT_S,
) -> None:
    """Check a running directory's /_health: exit 0 healthy, 1 unhealthy."""
    import httpx
    import orjson
    from pydantic import ValidationError

    from plc.config import Settings, setting_error

    if url is None:
        try:
            settings = Settings()
            url = health_url(settings.host, settings.port)
        except ValidationError as exc:
            _unhealthy(setting_error(exc, None))
        except ValueError as exc:
            _unhealthy(str(exc))
    # httpx's timeout bounds each connect and read, not the whole answer: a server that
    # drips a byte a second would pass. The timer ends the whole check, name lookup included.
    previous = signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        with (
            httpx.Client(timeout=timeout, trust_env=False) as client,
            client.stream("GET", url) as response,
        ):
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    _unhealthy(f"{url}: answer larger than {MAX_BODY_BYTES} bytes")
    except _OutOfTime:
        _unhealthy(f"{url}: no whole answer within {timeout:g} s")
    except httpx.InvalidURL as exc:
        _unhealthy(f"not a URL: {str(exc)[:200]}")
    except UnicodeError:  # the host's IDNA encoding: an empty or over-long label
        _unhealthy(f"{url}: not a host name")
    except httpx.HTTPError as exc:
        _unhealthy(f"{url}: {type(exc).__name__}: {str(exc)[:200] or 'no answer'}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        answer = None
    if response.status_code != 200:
        said = answer.get("message") if isinstance(answer, dict) else None
        detail = f": {str(said)[:200]}" if said else ""
        _unhealthy(f"{url}: HTTP {response.status_code}{detail}")
    if not isinstance(answer, dict):
        _unhealthy(f"{url}: HTTP 200, but the body is not a JSON object")
    typer.echo(f"healthy: {url} (version {str(answer.get('version'))[:100]})")


class _OutOfTime(Exception):
    """The check's whole time (``--timeout``) ran out."""


def _out_of_time(_signum: int, _frame: object) -> None:
    raise _OutOfTime


def _unhealthy(message: str) -> NoReturn:
    typer.echo(f"unhealthy: {message}", err=True)
    raise typer.Exit(1)
