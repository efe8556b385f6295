"""The server's log is JSON lines only: records, and exceptions Python could not raise."""

from __future__ import annotations

import subprocess
import sys

import orjson

# A body any client may POST: a value nested 1000 deep, which pydantic-core fails to repr
# while it builds its error (Python reports that through sys.unraisablehook); the op is still
# refused with a 400 (tests/api/test_bad_input.py).
_SCRIPT = """
import logging

import orjson
from plc.errors import MalformedOperation
from plc.logging_setup import configure_logging
from plc.operation import parse_operation

configure_logging()
print("access log:", logging.getLogger("uvicorn.access").hasHandlers())
body = b'{"type":' + b'[' * 1000 + b']' * 1000 + b'}'
try:
    parse_operation(orjson.loads(body), json_text=body)
except MalformedOperation:
    print("refused")
"""


def test_an_exception_python_could_not_raise_is_one_json_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=60, check=True
    )
    # uvicorn writes its access log (a line per request) only if this logger has handlers.
    assert done.stdout == "access log: False\nrefused\n"
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # not Python's multi-line "Exception ignored in: ..."
    record = orjson.loads(lines[0])
    assert record["logger"] == "plc.unraisable" and record["level"] == "warning"
    assert record["exc_type"] == "RecursionError"
    assert len(record["exc"]) <= 200
    assert record["where"].endswith(".py:" + record["where"].rsplit(":", 1)[1])
    assert "pydantic" in record["where"]  # the innermost frame: where it was raised


def test_a_repeated_failure_is_due_once_per_window_and_again_after_forget() -> None:
    from plc.logging_setup import RepeatLimit

    repeat = RepeatLimit(every_s=3600, keep=3)
    assert [repeat.due(t) for t in ("a", "a", "b", "a")] == [True, False, True, False]
    repeat.forget()  # the outage ended: the next one is news
    assert repeat.due("a")
    assert [repeat.due(t) for t in ("c", "d", "a")] == [True, True, False]
    assert repeat.due("e") and repeat.due("a")  # over `keep` texts the memory starts over
