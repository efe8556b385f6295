#!/usr/bin/env python3
"""Run the same HTTP load against the reference did:plc server and ours, in one run, and print
the ratio per phase (creates/s, updates/s, ``GET /{did}``/s).

- Ours: started here, ``plc serve --port P --database-url sqlite:///<tmp>/x.sqlite3`` on a
  fresh database in a temporary directory (``--workers``, default ``$PLC_WORKERS`` or 1), and
  stopped at the end.
- The reference (``@did-plc/server`` on PostgreSQL, ``../shared/refserver/``): expected at
  ``--reference-url``; with ``--start-reference`` it is started here on a fresh database
  (``RESET=1 PLC_PORT=<port> start.sh``) and stopped at the end (``stop.sh``).
- The driver: the reference's own load generator (``node loadgen.mjs``, default) or our
  ``benchmarks/load.py`` (``--driver python``), with the same numbers of ops for both servers.
  Writes to the reference are retried up to ``--reference-retries`` times (default 10) on 500 /
  no answer: it answers 500 when PostgreSQL aborts a SERIALIZABLE transaction. Writes to ours
  are not retried (``--ours-retries``, default 0), so any failure of ours shows.

Every target is on 127.0.0.1 and every phase is bounded in count and time.

Example::

    .venv/bin/python benchmarks/compare_reference.py --creates 3000 --updates 3000 \\
        --resolves 10000 --concurrency 8 --workers 1 --out results/compare-w1.json
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCHMARKS = str(Path(__file__).resolve().parent)
if _BENCHMARKS not in sys.path:  # make ``loadkit`` importable however this file is run
    sys.path.insert(0, _BENCHMARKS)

from loadkit.compare_main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
