#!/usr/bin/env python3
"""Load generator for any did:plc directory (ours, the reference server, a mirror).

Phases, each bounded in count and in time (``--phase-seconds``):

1. ``create``: ``--creates`` genesis ops (``POST /{did}``) from ``--concurrency`` clients.
2. ``update``: ``--updates`` updates spread over the created DIDs (update ``j`` goes to DID
   ``j mod creates``; kinds cycle through handle, PDS, handle + alsoKnownAs, rotation-key
   rotation); the ops of one DID are sent in order by one client.
3. ``verify``: a sample of DIDs is read back (``GET /{did}/data``) and compared with the state
   the generator expects (correctness, untimed).
4. ``resolve``: ``--resolves`` × ``GET /{did}`` of random created DIDs.
5. ``export``: ``GET /export?count=1000`` paging, by ``after=<seq>`` when the server returns
   ``seq`` on each line, else by ``after=<createdAt>`` (``--export-mode``).

Every op is built and signed (``plc.signing``, ``plc.keys``) before the timed phases, so the
timed phases measure the server, not the client's signing. Keys are fresh for every run (new
DIDs each time, so runs against a non-empty server never collide). The target must be on
loopback unless ``--allow-remote`` is given.

Per phase it prints ok/s, requests/s, latency p50/p90/p99/max (ms, whole retry sequence for
writes) and errors by status and message; ``--out`` writes everything as JSON, in the same
shape as ``../shared/refserver/loadgen.mjs --out`` (so the two are interchangeable for
``compare_reference.py``).

Example::

    .venv/bin/python benchmarks/load.py --url http://127.0.0.1:2582 \\
        --creates 3000 --updates 3000 --resolves 10000 --concurrency 8 --out results/load.json
"""

from __future__ import annotations

import sys
from pathlib import Path

_BENCHMARKS = str(Path(__file__).resolve().parent)
if _BENCHMARKS not in sys.path:  # make ``loadkit`` importable however this file is run
    sys.path.insert(0, _BENCHMARKS)

from loadkit.load_main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
