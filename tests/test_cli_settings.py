"""`plc serve` refuses a bad setting in one line, names it, and never shows its value (a
DATABASE_URL may hold a password); misspelt PLC_ names are reported, not silently ignored."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from plc.cli import app
from plc.config import unknown_settings
from plc.store.engine import redacted

pytestmark = pytest.mark.usefixtures("logging_left_as_found")


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        (
            "PLC_PORT",
            "99999",
            "invalid setting PLC_PORT: Input should be less than or equal to 65535",
        ),
        ("PLC_PORT", "-1", "invalid setting PLC_PORT: Input should be greater than or equal to 0"),
        ("PLC_PORT", "abc", "invalid setting PLC_PORT: Input should be a valid integer"),
        (
            "PLC_WORKERS",
            "0",
            "invalid setting PLC_WORKERS: Input should be greater than or equal to 1",
        ),
        ("PLC_LOG_LEVEL", "loud", "invalid setting PLC_LOG_LEVEL: Input should be 'critical'"),
        (
            "PLC_COMMIT_BATCH_MAX",
            "0",
            "invalid setting PLC_COMMIT_BATCH_MAX: Input should be greater",
        ),
        ("PLC_CHECKPOINT_INTERVAL_MS", "-5", "invalid setting PLC_CHECKPOINT_INTERVAL_MS: Input"),
        ("PLC_METRICS", "banana", "invalid setting PLC_METRICS: Input should be a valid boolean"),
        (
            "PLC_RESOLVE_ALLOW_PRIVATE_NETWORKS",
            "banana",
            "invalid setting PLC_RESOLVE_ALLOW_PRIVATE_NETWORKS: Input should be a valid boolean",
        ),
        (
            "PLC_RESOLVE_DNS_NAMESERVERS",
            "10.0.0.1,s3cret",
            "invalid setting PLC_RESOLVE_DNS_NAMESERVERS: Value error, each entry must be an IP",
        ),
        ("DATABASE_URL", "foo", "DATABASE_URL is not a database URL: expected sqlite:///"),
        ("DATABASE_URL", "", "DATABASE_URL is not a database URL"),
        (
            "DATABASE_URL",
            "postgresql://u:s3cret@h:notaport/db",
            "DATABASE_URL is not a database URL",
        ),
        ("DATABASE_URL", "sqlite:///", "DATABASE_URL names no SQLite file"),
        ("DATABASE_URL", "sqlite:///:memory:", "DATABASE_URL names no SQLite file"),
        (
            "DATABASE_URL",
            "mysql://u:s3cret@h/db",
            "DATABASE_URL has an unsupported scheme mysql: use sqlite:///path or postgresql://",
        ),
        (
            "PLC_LOG_ORIGIN",
            "bad origin!",
            "invalid setting PLC_LOG_ORIGIN: may only hold the characters A-Z a-z 0-9 . _ / -",
        ),
    ],
)
def test_a_bad_setting_stops_the_start_in_one_line(name: str, value: str, expected: str) -> None:
    result = CliRunner().invoke(app, ["serve"], env={name: value})
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: " + expected), lines[0]
    assert "s3cret" not in result.output + result.stderr
    assert result.stdout == ""  # no verifier key line: nothing started


@pytest.mark.parametrize(
    ("name", "value", "bound"),
    [
        ("PLC_WORKERS", "257", "256"),
        ("PLC_DB_POOL_SIZE", "1001", "1000"),
        ("PLC_DB_BUSY_TIMEOUT_MS", "3600001", "3600000"),
        ("PLC_DB_START_WAIT_S", "inf", "86400"),
        ("PLC_COMMIT_BATCH_MAX", "10001", "10000"),
        ("PLC_MAX_BODY_BYTES", "16777217", "16777216"),
        ("PLC_MAX_HEADER_BYTES", "1048577", "1048576"),
        ("PLC_HEAD_TIMEOUT_S", "3600.5", "3600"),
        ("PLC_BODY_TIMEOUT_S", "1e300", "3600"),
        ("PLC_MAX_OP_BYTES", "65536", "65535"),
        ("PLC_MIN_ROTATION_KEYS", "1001", "1000"),
        ("PLC_MAX_ROTATION_KEYS", "1001", "1000"),
        ("PLC_MAX_ALSO_KNOWN_AS", "1001", "1000"),
        ("PLC_MAX_SERVICES", "1001", "1000"),
        ("PLC_MAX_VERIFICATION_METHODS", "1001", "1000"),
        ("PLC_OPS_PER_HOUR", "1000001", "1000000"),
        ("PLC_OPS_PER_DAY", "1000001", "1000000"),
        ("PLC_OPS_PER_WEEK", "1000001", "1000000"),
        # the checkpointer thread died of it (Event.wait: timestamp out of range)
        ("PLC_CHECKPOINT_INTERVAL_MS", "99999999999999999999", "86400000"),
        ("PLC_CHECKPOINTS_KEPT", "1000000001", "1000000000"),
        # every /export/stream?cursor= below the head failed (now minus it: no date)
        ("PLC_STREAM_BACKFILL_WINDOW_S", "99999999999", "630720000"),
        ("PLC_STREAM_BUFFER", "100001", "100000"),
        ("PLC_STREAM_POLL_INTERVAL_MS", "60001", "60000"),
        ("PLC_STREAM_SEND_TIMEOUT_S", "inf", "3600"),
        ("PLC_SHUTDOWN_GRACE_S", "3601", "3600"),
    ],
)
def test_a_setting_past_its_bound_stops_the_start_in_one_line(
    name: str, value: str, bound: str, tmp_path: Path
) -> None:
    database = tmp_path / "never.sqlite3"
    with socket.socket() as busy:  # were the value taken, the start would stop here, not serve
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = CliRunner().invoke(
            app,
            ["serve", "--port", port, "--database-url", f"sqlite:///{database}"],
            env={name: value},
        )
    assert result.exit_code == 1, result.exception
    assert isinstance(result.exception, SystemExit)  # typer.Exit, not an error on the way
    assert result.stderr.strip() == (
        f"error: invalid setting {name}: Input should be less than or equal to {bound}"
    )
    assert result.stdout == "" and not database.exists()


def test_a_minimum_of_rotation_keys_above_the_maximum_stops_the_start(tmp_path: Path) -> None:
    # each is within its own bounds; together every new op would be refused, blaming the op
    database = tmp_path / "never.sqlite3"
    with socket.socket() as busy:  # were the values taken, the start would stop here, not serve
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = CliRunner().invoke(
            app,
            [
                "serve",
                "--port",
                str(busy.getsockname()[1]),
                "--database-url",
                f"sqlite:///{database}",
            ],
            env={"PLC_MIN_ROTATION_KEYS": "3", "PLC_MAX_ROTATION_KEYS": "2"},
        )
    assert result.exit_code == 1, result.exception
    assert result.stderr.strip() == (
        "error: invalid settings: PLC_MIN_ROTATION_KEYS is larger than PLC_MAX_ROTATION_KEYS:"
        " no op could be admitted"
    )
    assert result.stdout == "" and not database.exists()


def _command(command: str, tmp_path: Path) -> list[str]:
    """``command``'s arguments up to its options (``plc import`` needs a source)."""
    return ["import", str(tmp_path / "export.jsonl")] if command == "import" else [command]


@pytest.mark.parametrize("command", ["serve", "import", "log-key", "refresh-documents"])
@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("garbage", "is not a database URL: expected sqlite:///relative/path, "),
        ("postgresql://u:s3cret@h:notaport/db", "is not a database URL: expected "),
        ("mysql://u:s3cret@h/db", "has an unsupported scheme mysql: use sqlite:///path"),
        ("sqlite:///:memory:", "names no SQLite file (in-memory databases are not supported)"),
    ],
)
def test_a_bad_database_url_is_named_as_it_was_given(
    command: str, url: str, said: str, tmp_path: Path
) -> None:
    arguments = _command(command, tmp_path)
    given = CliRunner().invoke(app, [*arguments, "--database-url", url])
    assert given.exit_code == 1
    assert given.stderr.strip().startswith(f"error: --database-url (DATABASE_URL) {said}")
    from_environment = CliRunner().invoke(app, arguments, env={"DATABASE_URL": url})
    assert from_environment.exit_code == 1
    assert from_environment.stderr.strip().startswith(f"error: DATABASE_URL {said}")
    for result in (given, from_environment):
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "s3cret" not in result.output + result.stderr
        assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no database, no file


def test_a_bad_option_is_named_as_the_option(tmp_path: Path) -> None:
    database = tmp_path / "never.sqlite3"
    result = CliRunner().invoke(
        app, ["serve", "--port", "70000", "--database-url", f"sqlite:///{database}"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: invalid setting --port (PLC_PORT): Input should be less than or equal to 65535"
    )
    assert not database.exists()


@pytest.mark.parametrize(
    ("host", "why"),
    [
        ("192.0.2.1", "Cannot assign requested address"),  # TEST-NET-1: no address of ours
        ("bad..host", "not a host name"),  # an empty label: a UnicodeError traceback before
        ("a" * 64 + ".example", "not a host name"),  # a label over 63 characters
    ],
)
def test_a_host_that_cannot_be_bound_stops_a_start_on_any_port(
    tmp_path: Path, host: str, why: str
) -> None:
    database = tmp_path / "never.sqlite3"
    url = f"sqlite:///{database}"
    result = CliRunner().invoke(
        app, ["serve", "--host", host, "--port", "0", "--database-url", url]
    )
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: cannot listen on {host}: {why}"
    assert result.stdout == "" and not database.exists()


def test_misspelt_settings_are_named() -> None:
    environ = {
        "PLC_PROT": "3000",
        "PLC_PORT": "1",
        "PLC_RESOLVE_TIME_BUDGET_S": "2",
        "PLC_RESOLVE_TIMEBUDGET": "2",
        "PLC_DATABASE_URL": "sqlite:///x",
        "DATABASE_URL": "sqlite:///x",
        "HOME": "/root",
        "PLC_Port": "2",  # read by pydantic-settings in any case: known
        "plc_prot": "3",
    }
    assert unknown_settings(environ) == ["PLC_PROT", "PLC_RESOLVE_TIMEBUDGET", "plc_prot"]


def test_a_busy_port_stops_the_start_before_anything_is_said_or_created(
    tmp_path: Path,
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        database = f"{tmp_path}/never.sqlite3"
        result = CliRunner().invoke(
            app, ["serve", "--port", str(port), "--database-url", f"sqlite:///{database}"]
        )
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert result.stdout == ""  # no verifier key line
    assert not os.path.exists(database)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@db.example/plc", "postgresql://u:***@db.example/plc"),
        (
            "postgresql://u@db.example/plc?password=TopSecret1&sslmode=require",
            "postgresql://u@db.example/plc?password=***&sslmode=require",
        ),
        (
            "postgresql://db.example/plc?sslpassword=k3y&options=-c%20x&api_token=t",
            "postgresql://db.example/plc?api_token=***&options=-c+x&sslpassword=***",
        ),
        ("sqlite:///plc-directory.sqlite3", "sqlite:///plc-directory.sqlite3"),
    ],
)
def test_database_urls_are_logged_without_their_secrets(url: str, shown: str) -> None:
    # libpq also takes the password as a query parameter; the start-up line and every error
    # that names the database go through redacted()
    assert redacted(url) == shown
