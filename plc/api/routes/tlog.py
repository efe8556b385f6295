"""Transparency-log endpoints under ``/tlog/`` and ``GET /{did}/log/proof``.

- ``/tlog/checkpoint``: the newest signed checkpoint (C2SP tlog-checkpoint signed note).
- ``/tlog/tile/<L>/<N>[.p/<W>]`` and ``/tlog/tile/entries/<N>[.p/<W>]``: C2SP tlog-tiles;
  every tile path, partial ones included, names bytes that never change (cacheable for a year,
  as the spec asks of both); entry bundles are gzipped when the request accepts gzip.
- ``/tlog/proof/inclusion`` and ``/tlog/proof/consistency``: RFC 6962 proofs as JSON,
  hashes in standard padded base64 (design.md decision 5).
"""

from __future__ import annotations

import asyncio
import gzip
import re
import time
from typing import Any

import orjson
from fastapi import APIRouter, Path, Query, Request
from starlette.responses import Response

from plc.api.deps import directory_of
from plc.api.responses import JSON, TEXT, accepts_gzip, error_responses, query_parameter
from plc.checkpoints import Checkpointer
from plc.errors import InvalidInput, Unavailable, echo
from plc.store.tlog_store import StoredCheckpoint, TlogStore
from plc.tlog import leaf_index_for_seq
from plc.tlog.encoding import encode_b64
from plc.tlog.errors import MalformedTilePath
from plc.tlog.proof import consistency_proof, inclusion_proof, inclusion_proofs
from plc.tlog.tiles import encode_entry_bundle, is_tile_in_tree, parse_tile_path, tile_hashes
from plc.tlog.tree import stored_hash_index

router = APIRouter()

IMMUTABLE = "public, max-age=31536000, immutable"
_INT = re.compile(r"[0-9]{1,18}")
_TILE_PATH_PATTERN = (
    r"^(entries|[1-5]?[0-9]|6[0-3])/"  # level 0-63, or an entry bundle
    r"(x(00[1-9]|0[1-9][0-9]|[1-9][0-9]{2})/(x[0-9]{3}/){0,5})?[0-9]{3}"  # no leading x000/
    r"(\.p/([1-9][0-9]?|1[0-9]{2}|2[0-4][0-9]|25[0-5]))?$"  # partial width 1-255
)
"""A tile path after ``tile/`` exactly as :func:`plc.tlog.tiles.parse_tile_path` accepts it
(C2SP tlog-tiles)."""
_INT_SCHEMA: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": 10**18 - 1}
"""What :data:`_INT` accepts where 0 is refused too (a seq or a tree size of the proofs)."""
PROOF_WAIT_S = 5.0
"""Longest a proof against the newest checkpoint waits for one that covers its op (503 after)."""
PROOF_POLL_S = (0.02, 1.0)
"""Bounds of the pause between two looks for that checkpoint (a fifth of the signing
interval, the setting's extremes being 1 ms and a day)."""
_PROOF_RESPONSE: dict[str, Any] = {"description": "Proof", "content": {"application/json": {}}}


def _tlog(request: Request) -> TlogStore:
    tlog: TlogStore = request.app.state.tlog
    return tlog


def _checkpointer(request: Request) -> Checkpointer:
    checkpointer: Checkpointer = request.app.state.checkpointer
    return checkpointer


def _int_param(value: str | None, name: str) -> int:
    if value is None or not _INT.fullmatch(value):
        raise InvalidInput(f"Invalid {name} parameter")
    return int(value)


def _json(body: Any, cache: str | None = None) -> Response:
    headers = {"cache-control": cache} if cache else None
    return Response(orjson.dumps(body), media_type=JSON, headers=headers)


@router.get(
    "/tlog/checkpoint",
    summary="The newest signed checkpoint (C2SP tlog-checkpoint signed note)",
    response_class=Response,
    responses={
        200: {"description": "Signed note", "content": {"text/plain": {}}},
        503: error_responses(503)[503]
        | {"description": "No checkpoint signed yet (just after start); retry"},
    },
)
async def get_checkpoint(request: Request) -> Response:
    directory = directory_of(request)
    latest = await directory.run(_tlog(request).latest_checkpoint)
    if latest is None:
        raise Unavailable("No checkpoint has been signed yet")
    return Response(latest.note, media_type=TEXT, headers={"cache-control": "no-cache"})


@router.get(
    "/tlog/tile/{path:path}",
    summary="C2SP tlog-tiles: hash tiles and entry bundles",
    response_class=Response,
    responses={
        200: {"description": "Tile bytes", "content": {"application/octet-stream": {}}},
        **error_responses(400, 404),
    },
    openapi_extra={
        "parameters": [
            {
                "name": "path",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": _TILE_PATH_PATTERN},
                "description": "`<L>/<N>[.p/<W>]` (a hash tile of level L, 0-63) or "
                "`entries/<N>[.p/<W>]` (an entry bundle), N in groups of three digits "
                "(`x001/234`), W 1-255, as C2SP tlog-tiles spells them. A path of that "
                "form beyond the tree is 404.",
            }
        ]
    },
)
async def get_tile(request: Request, path: str = Path(include_in_schema=False)) -> Response:
    directory = directory_of(request)
    tlog = _tlog(request)
    try:
        tile = parse_tile_path("tile/" + path)
    except MalformedTilePath as exc:
        raise InvalidInput(f"Invalid tile path: {echo(path)}") from exc
    tree_size = await directory.run(tlog.store.tree_size)
    if not is_tile_in_tree(tile, tree_size):
        return Response(
            orjson.dumps({"message": f"Tile not in the tree: {echo(path)}"}),
            status_code=404,
            media_type=JSON,
        )
    if tile.entries:
        first = tile.leaf_range.start + 1
        lines = await directory.run(tlog.lines, first, first + tile.width - 1)
        body = encode_entry_bundle(lines)
        headers = {"cache-control": IMMUTABLE, "vary": "accept-encoding"}
        if accepts_gzip(request.headers.get("accept-encoding", "")):
            headers["content-encoding"] = "gzip"
            # mtime 0: the bytes of an immutable resource do not depend on when it was asked
            body = gzip.compress(body, compresslevel=5, mtime=0)
        return Response(body, media_type="application/octet-stream", headers=headers)
    data = await directory.run(tile_hashes, tile, tlog.reader)
    return Response(
        data, media_type="application/octet-stream", headers={"cache-control": IMMUTABLE}
    )


@router.get(
    "/tlog/proof/inclusion",
    summary="RFC 6962 inclusion proof of the op with `seq` in the tree of `treeSize` leaves",
    response_class=Response,
    responses={
        200: {"description": "Proof", "content": {"application/json": {}}},
        **error_responses(400, 503),
    },
    openapi_extra={
        "parameters": [
            query_parameter(
                "seq", _INT_SCHEMA, "The op's `seq` (1 <= seq <= treeSize).", required=True
            ),
            query_parameter(
                "treeSize",
                _INT_SCHEMA,
                "Size of the tree the proof is for (at most the log's); absent: the newest "
                "signed checkpoint's, once one covers `seq` (the answer then carries that "
                "checkpoint's note in `checkpoint`).",
            ),
        ]
    },
)
async def get_inclusion_proof(
    request: Request,
    seq: str | None = Query(default=None, include_in_schema=False),
    tree_size: str | None = Query(default=None, alias="treeSize", include_in_schema=False),
) -> Response:
    directory = directory_of(request)
    tlog = _tlog(request)
    seq_value = _int_param(seq, "seq")
    size = None if tree_size is None else _int_param(tree_size, "treeSize")
    current = await directory.run(tlog.store.tree_size)
    if not 1 <= seq_value <= (current if size is None else size) or (size or 0) > current:
        raise InvalidInput(
            "Invalid seq or treeSize parameter: need 1 <= seq <= treeSize <= tree size"
        )
    signed: StoredCheckpoint | None = None
    if size is None:  # a size a client can check: the signed checkpoint's, given with it
        signed = await _checkpoint_covering(request, seq_value)
        size = signed.tree_size
    index = leaf_index_for_seq(seq_value)
    # The leaf hash the tree holds (written when the op was appended), not a hash of the line
    # as stored now: a proof always matches the signed tree, and an altered line shows.
    stored_leaf = await directory.run(tlog.reader.read_hashes, [stored_hash_index(0, index)])
    proof = await directory.run(inclusion_proof, index, size, tlog.reader)
    body: dict[str, Any] = {
        "seq": seq_value,
        "leafIndex": index,
        "treeSize": size,
        "leafHash": encode_b64(stored_leaf[0]),
        "inclusionProof": [encode_b64(h) for h in proof],
    }
    if signed is not None:
        body["checkpoint"] = signed.note.decode("utf-8")
    return _json(body)


@router.get(
    "/tlog/proof/consistency",
    summary="RFC 6962 consistency proof between tree sizes `from` and `to`",
    response_class=Response,
    responses={
        200: {"description": "Proof", "content": {"application/json": {}}},
        **error_responses(400),
    },
    openapi_extra={
        "parameters": [
            query_parameter("from", _INT_SCHEMA, "The older tree size (<= to).", required=True),
            query_parameter(
                "to", _INT_SCHEMA, "The newer tree size (at most the log's).", required=True
            ),
        ]
    },
)
async def get_consistency_proof(
    request: Request,
    from_: str | None = Query(default=None, alias="from", include_in_schema=False),
    to: str | None = Query(default=None, include_in_schema=False),
) -> Response:
    directory = directory_of(request)
    tlog = _tlog(request)
    old = _int_param(from_, "from")
    new = _int_param(to, "to")
    current = await directory.run(tlog.store.tree_size)
    if old == 0 or old > new or new > current:
        raise InvalidInput("Invalid from or to parameter: need 0 < from <= to <= tree size")
    proof = [] if old == new else await directory.run(consistency_proof, old, new, tlog.reader)
    return _json({"from": old, "to": new, "consistencyProof": [encode_b64(h) for h in proof]})


async def _checkpoint_covering(request: Request, seq: int) -> StoredCheckpoint:
    """The newest checkpoint, once it covers ``seq`` (ops wait at most one signing interval)."""
    directory = directory_of(request)
    tlog = _tlog(request)
    deadline = time.monotonic() + PROOF_WAIT_S
    while True:
        latest = await directory.run(tlog.latest_checkpoint)
        if latest is not None and latest.tree_size >= seq:
            return latest
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Unavailable("The newest op is not yet covered by a signed checkpoint; retry")
        pause = min(max(_checkpointer(request).interval_s / 5, PROOF_POLL_S[0]), PROOF_POLL_S[1])
        await asyncio.sleep(min(pause, remaining))


@router.get(
    "/{did}/log/proof",
    summary="The DID's ops with inclusion proofs against the newest signed checkpoint",
    response_class=Response,
    responses={
        200: {"description": "Proof bundle", "content": {"application/json": {}}},
        **error_responses(404, 503),
    },
)
async def get_did_log_proof(did: str, request: Request) -> Response:
    directory = directory_of(request)
    tlog = _tlog(request)
    # The checkpoint is read before the rows: every op it covers was committed before it
    # was signed, so the rows read after it hold all of the DID's ops it covers.
    checkpoint = await directory.run(tlog.latest_checkpoint)
    rows = await directory.run(directory.rows, did)
    if checkpoint is None or checkpoint.tree_size < rows[-1].seq:
        checkpoint = await _checkpoint_covering(request, rows[-1].seq)
        # ops of the DID committed while waiting may be in the checkpoint waited for
        rows = await directory.run(directory.rows, did)
    rows = [row for row in rows if row.seq <= checkpoint.tree_size]
    proofs = await directory.run(
        inclusion_proofs,
        [leaf_index_for_seq(row.seq) for row in rows],
        checkpoint.tree_size,
        tlog.reader,
    )
    entries = [
        {
            "seq": row.seq,
            "line": row.line.decode("utf-8"),
            "inclusionProof": [encode_b64(h) for h in proof],
        }
        for row, proof in zip(rows, proofs, strict=True)
    ]
    body = {"did": did, "checkpoint": checkpoint.note.decode("utf-8"), "entries": entries}
    return _json(body)
