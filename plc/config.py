"""Every setting an operator can change, read from the environment (``PLC_*``, ``DATABASE_URL``).

Each has a documented default (README, "Configuration"); command-line options of ``plc serve``
override them. Nothing else in the project reads the environment.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from plc.policy import PolicySettings

DEFAULT_DATABASE_URL = "sqlite:///plc-directory.sqlite3"


class Settings(BaseSettings):
    """Server settings. Environment names are ``PLC_<FIELD>`` unless noted."""

    model_config = SettingsConfigDict(env_prefix="PLC_", extra="ignore")

    host: str = "127.0.0.1"
    """Address ``plc serve`` binds to (``PLC_HOST``)."""
    port: int = 2582
    """TCP port (``PLC_PORT``)."""
    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        validation_alias=AliasChoices("DATABASE_URL", "PLC_DATABASE_URL"),
    )
    """``sqlite:///relative``, ``sqlite:////absolute``, ``postgresql://…`` or ``postgres://…``
    (``DATABASE_URL``). Default: a SQLite file in the working directory."""
    workers: int = 1
    """uvicorn worker processes (``PLC_WORKERS``)."""
    validation_process: bool = False
    """Validate submitted ops in a child process (per worker), so one server uses a second
    core (``PLC_VALIDATION_PROCESS``; SQLite file databases only). Worth it when many clients
    write at once: measured on 2 cores with 32 concurrent writers, updates/s rose 1.5x; with 8
    they fell by 10-20 % (the extra hop adds latency that few clients cannot hide). A child
    that dies or stops answering is replaced (``plc.validation_process.RESTART_DELAY_S``)."""
    log_level: str = "info"
    """Log level of the server (``PLC_LOG_LEVEL``)."""
    metrics: bool = True
    """Serve ``GET /metrics`` (Prometheus text format: ops committed and refused, group
    commit sizes and durations, tree size, process CPU and memory) (``PLC_METRICS``)."""
    db_pool_size: int = 16
    """Connections kept open per process (``PLC_DB_POOL_SIZE``)."""
    db_busy_timeout_ms: int = 5000
    """How long a SQLite writer waits for the lock before the request answers 503."""
    commit_batch_max: int = 256
    """Most operations grouped into one commit (group commit)."""
    max_body_bytes: int = 102_400
    """Largest accepted POST body, bytes; larger bodies answer 413 (``PLC_MAX_BODY_BYTES``).
    The reference's ``express.json({limit: '100kb'})`` reads 100kb as 102,400 bytes."""
    max_header_bytes: int = Field(default=16_384, ge=1024)
    """Largest request head (request line and headers), bytes; a larger one is answered 431
    and the connection closed (``PLC_MAX_HEADER_BYTES``). Node's default ``maxHeaderSize``,
    which the reference runs with, is 16 KiB."""
    body_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds a POST body may take to arrive once the headers are in; a slower one is
    answered 408 and the connection closed (``PLC_BODY_TIMEOUT_S``)."""
    policy_enabled: bool = True
    """False switches every admission limit off (replay and conformance only)."""
    max_op_bytes: int = 4000
    min_rotation_keys: int = 1
    max_rotation_keys: int = 5
    max_also_known_as: int = 10
    max_services: int = 10
    max_verification_methods: int = 10
    ops_per_hour: int = 10
    ops_per_day: int = 30
    ops_per_week: int = 100
    log_origin: str | None = None
    """Origin of the transparency log (``PLC_LOG_ORIGIN``, characters ``[A-Za-z0-9._/-]``).
    Default: generated on first start and stored with the log."""
    log_signing_key: str | None = None
    """Ed25519 note signer key ``PRIVATE+KEY+<origin>+<hex>+<base64>``
    (``PLC_LOG_SIGNING_KEY``). Default: generated on first start and stored with the log. A
    given key is never stored; a log refuses any key but its own
    (:func:`plc.checkpoints.load_or_create_signer`)."""
    checkpoint_interval_ms: int = 500
    """How often the log signs a checkpoint of new ops; the longest an op waits to be
    covered by a signed checkpoint (``PLC_CHECKPOINT_INTERVAL_MS``)."""
    stream_backfill_window_s: int = 7 * 24 * 3600
    """``/export/stream``: a cursor whose next op is older than this is refused with
    ``OutdatedCursor`` (page through ``/export`` instead) (``PLC_STREAM_BACKFILL_WINDOW_S``)."""
    stream_buffer: int = 500
    """``/export/stream``: live ops buffered per connection before ``ConsumerTooSlow``."""
    stream_poll_interval_ms: int = 100
    """``/export/stream``: how often to look for ops committed by other processes."""
    version: str = "0.1.0"
    """Reported by ``GET /_health``."""

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
