"""Write the app's OpenAPI document (`make openapi`)."""

from __future__ import annotations

import sys
from pathlib import Path

import orjson

from plc.api.app import create_app
from plc.config import Settings


def render() -> bytes:
    """The OpenAPI document of the app with default settings, as stable pretty JSON.

    The defaults themselves, not the environment's settings: ``PLC_METRICS=false`` in the
    caller's shell left ``/metrics`` out of the committed document."""
    app = create_app(Settings.model_construct())
    return orjson.dumps(app.openapi(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "openapi/plc-directory.json")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(render())
    print(f"wrote {target}")


if __name__ == "__main__":
    main()
