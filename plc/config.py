"""Every setting an operator can change, read from the environment (``PLC_*``, ``DATABASE_URL``).

Each has a documented default (README, "Configuration"); command-line options of ``plc serve``
override them. Nothing else in the project reads the environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from plc.policy import PolicySettings

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

ORIGIN_PATTERN = r"[A-Za-z0-9._/-]+"
"""The characters a log origin may hold (``PLC_LOG_ORIGIN``, ``plc keygen``)."""
ORIGIN_RULE = "may only hold the characters A-Z a-z 0-9 . _ / -"
"""What is said of an origin that breaks :data:`ORIGIN_PATTERN`."""
_PATTERN_RULES = {"log_origin": ORIGIN_RULE}
"""Fields whose pattern is said in words when a value breaks it (pydantic would print the
regular expression)."""

DEFAULT_DATABASE_URL = "sqlite:///plc-directory.sqlite3"

# Upper bounds of the numeric settings: far past what any deployment wants, and far below
# what would overflow where the value is used (a datetime minus the backfill window, a
# thread's wait, a C int of SQLite or PostgreSQL), so that a mistyped value stops plc serve
# with one line instead of failing later, on a request or in a background thread.
HOUR_S = 3600
DAY_S = 24 * HOUR_S
HOUR_MS = HOUR_S * 1000
MIB = 1024 * 1024
MAX_WORKERS = 256
MAX_ENTRY_BYTES = 65_535
"""A transparency log entry's limit (C2SP tlog-tiles): no op larger than this can be logged."""
MAX_LIST_ENTRIES = 1000
"""Bound of every list-length limit of the admission policy (keys, aliases, services)."""
MAX_RATE = 1_000_000
"""Bound of the per-DID rate limits (ops per hour, day and week)."""
MAX_BACKFILL_WINDOW_S = 20 * 365 * DAY_S
"""20 years (365-day): a window past the whole history of did:plc (2022 on), yet short enough
that now minus the window is a date."""


class Settings(BaseSettings):
    """Server settings. Environment names are ``PLC_<FIELD>`` unless noted."""

    model_config = SettingsConfigDict(env_prefix="PLC_", extra="ignore")

    host: str = "127.0.0.1"
    """Address ``plc serve`` binds to (``PLC_HOST``)."""
    port: int = Field(default=2582, ge=0, le=65_535)
    """TCP port (``PLC_PORT``); 0 takes any free port."""
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "PLC_DATABASE_URL"),
    )
    """``sqlite:///relative``, ``sqlite:////absolute``, ``postgresql://…`` or ``postgres://…``
    (``DATABASE_URL``). Default: a SQLite file in the working directory."""
    workers: int = Field(default=1, ge=1, le=MAX_WORKERS)
    """uvicorn worker processes (``PLC_WORKERS``)."""
    validation_process: bool = False
    """Validate submitted ops in a child process (per worker), so one server uses a second
    core (``PLC_VALIDATION_PROCESS``; SQLite file databases only). Worth it when many clients
    write at once: measured on 2 cores with 32 concurrent writers, updates/s rose 1.5x; with 8
    they fell by 10-20 % (the extra hop adds latency that few clients cannot hide). A child
    that dies or stops answering is replaced (``plc.validation_process.RESTART_DELAY_S``)."""
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
    """Log level of the server (``PLC_LOG_LEVEL``; any case)."""
    metrics: bool = True
    """Serve ``GET /metrics`` (Prometheus text format: ops committed and refused, group
    commit sizes and durations, tree size, process CPU and memory) (``PLC_METRICS``)."""
    db_pool_size: int = Field(default=16, ge=1, le=1000)
    """Connections kept open per pool, as many more opened under load and closed after
    (``PLC_DB_POOL_SIZE``). A process has one pool on SQLite and two on PostgreSQL (writes,
    reads): up to four times this many PostgreSQL connections per process."""
    db_busy_timeout_ms: int = Field(default=5000, ge=0, le=HOUR_MS)
    """How long a writer waits for the write lock (SQLite's lock, PostgreSQL's log head row),
    and on PostgreSQL any statement for a lock another session holds on a table, before the
    request answers 503 (``PLC_DB_BUSY_TIMEOUT_MS``)."""
    db_timeout_s: float = Field(default=30.0, gt=0, le=HOUR_S)
    """Seconds a request waits for the database before it answers 503
    (``PLC_DB_TIMEOUT_S``): each read on PostgreSQL, and a POST's commit (which goes on: its
    503 says that the op may yet be stored). A database that stops answering without closing
    the connection (a hung server, a proxy that stopped forwarding) must not hold clients
    forever. ``/_health`` answers 503 while a commit has waited this long."""
    db_start_wait_s: float = Field(default=60.0, ge=0, le=DAY_S)
    """How long a worker starting on its own waits for a database that does not answer
    (``PLC_DB_START_WAIT_S``)."""
    commit_batch_max: int = Field(default=256, ge=1, le=10_000)
    """Most operations grouped into one commit (group commit)."""
    max_body_bytes: int = Field(default=102_400, ge=1, le=16 * MIB)
    """Largest accepted POST body, bytes; larger bodies answer 413 (``PLC_MAX_BODY_BYTES``).
    The reference's ``express.json({limit: '100kb'})`` reads 100kb as 102,400 bytes."""
    max_header_bytes: int = Field(default=16_384, ge=1024, le=MIB)
    """Largest request head (request line and headers), bytes; a larger one is answered 431
    and the connection closed (``PLC_MAX_HEADER_BYTES``). Node's default ``maxHeaderSize``,
    which the reference runs with, is 16 KiB."""
    head_timeout_s: float = Field(default=60.0, gt=0, le=HOUR_S)
    """Seconds a request head (request line and headers) may take to arrive, from the
    connection's opening or the head's first byte; a slower one is answered 408 and the
    connection closed (``PLC_HEAD_TIMEOUT_S``; Node's ``headersTimeout``, which the reference
    runs with, is 60 s)."""
    body_timeout_s: float = Field(default=60.0, gt=0, le=HOUR_S)
    """Seconds a POST body may take to arrive once the headers are in; a slower one is
    answered 408 and the connection closed (``PLC_BODY_TIMEOUT_S``)."""
    policy_enabled: bool = True
    """False switches every admission limit off (replay and conformance only)."""
    max_op_bytes: int = Field(default=4000, ge=1, le=MAX_ENTRY_BYTES)
    min_rotation_keys: int = Field(default=1, ge=0, le=MAX_LIST_ENTRIES)
    max_rotation_keys: int = Field(default=5, ge=1, le=MAX_LIST_ENTRIES)
    max_also_known_as: int = Field(default=10, ge=0, le=MAX_LIST_ENTRIES)
    max_services: int = Field(default=10, ge=0, le=MAX_LIST_ENTRIES)
    max_verification_methods: int = Field(default=10, ge=0, le=MAX_LIST_ENTRIES)
    ops_per_hour: int = Field(default=10, ge=1, le=MAX_RATE)
    ops_per_day: int = Field(default=30, ge=1, le=MAX_RATE)
    ops_per_week: int = Field(default=100, ge=1, le=MAX_RATE)
    log_origin: str | None = Field(default=None, pattern=f"^{ORIGIN_PATTERN}$")
    """Origin of the transparency log (``PLC_LOG_ORIGIN``, characters ``[A-Za-z0-9._/-]``).
    Default: generated on first start and stored with the log."""
    log_signing_key: str | None = None
    """Ed25519 note signer key ``PRIVATE+KEY+<origin>+<hex>+<base64>``
    (``PLC_LOG_SIGNING_KEY``). Default: generated on first start and stored with the log. A
    given key is never stored; a log refuses any key but its own
    (:func:`plc.checkpoints.load_or_create_signer`)."""
    checkpoint_interval_ms: int = Field(default=500, ge=1, le=DAY_S * 1000)
    """How often the log signs a checkpoint of new ops; the longest an op waits to be
    covered by a signed checkpoint (``PLC_CHECKPOINT_INTERVAL_MS``)."""
    checkpoints_kept: int = Field(default=10_000, ge=0, le=1_000_000_000)
    """Signed checkpoints kept in the database, newest first; older ones are deleted as new
    ones are signed (only the newest is served). 0 keeps every one
    (``PLC_CHECKPOINTS_KEPT``)."""
    stream_backfill_window_s: int = Field(default=7 * DAY_S, ge=0, le=MAX_BACKFILL_WINDOW_S)
    """``/export/stream``: a cursor whose next op is older than this is refused with
    ``OutdatedCursor`` (page through ``/export`` instead) (``PLC_STREAM_BACKFILL_WINDOW_S``)."""
    stream_buffer: int = Field(default=500, ge=1, le=100_000)
    """``/export/stream``: live ops queued per connection; one more and the connection reads
    on from the database until it catches up (the reference closes it: ``ConsumerTooSlow``)."""
    stream_poll_interval_ms: int = Field(default=100, ge=1, le=60_000)
    """``/export/stream``: how often to look for ops committed by other processes."""
    stream_send_timeout_s: float = Field(default=30.0, gt=0, le=HOUR_S)
    """``/export/stream``: a client that leaves what was sent to it unread this long (the
    socket's buffers full) is disconnected (``PLC_STREAM_SEND_TIMEOUT_S``)."""
    stream_compression: bool = False
    """``/export/stream``: offer permessage-deflate (``PLC_STREAM_COMPRESSION``). Off, as in
    the reference server (Node ``ws``'s default): it costs CPU per message per client."""
    shutdown_grace_s: int = Field(default=10, ge=0, le=HOUR_S)
    """On SIGTERM, seconds open connections (streams included) get to finish before they
    are closed (``PLC_SHUTDOWN_GRACE_S``)."""
    version: str = "0.1.0"
    """Reported by ``GET /_health``."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _rotation_key_bounds_meet(self) -> Settings:
        # Each bound alone is in range, but a minimum above the maximum refuses every new op
        # with a message that blames the op, not the setting.
        if self.min_rotation_keys > self.max_rotation_keys:
            raise ValueError(
                "PLC_MIN_ROTATION_KEYS is larger than PLC_MAX_ROTATION_KEYS: no op could be"
                " admitted"
            )
        return self

    def policy(self) -> PolicySettings:
        """The admission limits as the pure policy module takes them."""
        return PolicySettings(
            enabled=self.policy_enabled,
            max_op_bytes=self.max_op_bytes,
            min_rotation_keys=self.min_rotation_keys,
            max_rotation_keys=self.max_rotation_keys,
            max_also_known_as=self.max_also_known_as,
            max_services=self.max_services,
            max_verification_methods=self.max_verification_methods,
            ops_per_hour=self.ops_per_hour,
            ops_per_day=self.ops_per_day,
            ops_per_week=self.ops_per_week,
        )


def setting_error(error: ValidationError, options: Mapping[str, str] | None = None) -> str:
    """One line for a refused setting: its environment name (and ``options[field]``, the
    command-line option it came from, when given there) and what is wrong, without the value
    (it may be a secret)."""
    first = error.errors()[0]
    if not first["loc"]:  # a rule between settings, which its message names
        return f"invalid settings: {first['ctx']['error'] if 'ctx' in first else first['msg']}"
    field = str(first["loc"][0])
    title = error.title
    if title == "ResolverSettings":
        name = f"PLC_RESOLVE_{field.upper()}"
    elif field.lower() == "database_url":
        name = "DATABASE_URL"
    else:
        name = f"PLC_{field.upper()}"
    if options and field in options:
        name = f"{options[field]} ({name})"
    message = str(first["msg"])
    if first["type"] == "string_pattern_mismatch" and field in _PATTERN_RULES:
        message = _PATTERN_RULES[field]
    return f"invalid setting {name}: {message}"


def unknown_settings(environ: Mapping[str, str]) -> list[str]:
    """Names in ``environ`` that look like settings (``PLC_`` prefix) but are none: most often
    a misspelling, which would otherwise leave the default in force without a word."""
    from plc.resolve.settings import ResolverSettings

    # pydantic-settings reads names in any case: so does this check.
    known = {f"PLC_{name.upper()}" for name in Settings.model_fields}
    known |= {f"PLC_RESOLVE_{name.upper()}" for name in ResolverSettings.model_fields}
    return sorted(
        name for name in environ if name.upper().startswith("PLC_") and name.upper() not in known
    )


class SettingRefused(Exception):
    """A setting a command cannot run with; ``str()`` is the one line to print (never the
    value, which may hold a password)."""


def command_settings(database_url: str | None) -> tuple[Settings, URL]:
    """The settings of a command that takes ``--database-url`` (``database_url``: the
    option's value, None when not given), and its database URL parsed (driver chosen). Errors
    name the option when the URL came from it.

    Raises:
        SettingRefused: a setting of the environment, or the option, is refused.
    """
    from plc.errors import PlcError
    from plc.store.engine import database_url_setting, normalize_database_url

    given = database_url is not None
    try:
        settings = Settings(**({"database_url": database_url} if given else {}))  # type: ignore[arg-type]
        url = normalize_database_url(settings.database_url, database_url_setting(given))
    except ValidationError as exc:
        options = {"database_url": "--database-url"} if given else None
        raise SettingRefused(setting_error(exc, options)) from None
    except PlcError as exc:
        raise SettingRefused(exc.message) from None
    return settings, url
