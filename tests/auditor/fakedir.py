"""A small, real HTTP directory for auditor tests, serving whatever lines it is given.

It speaks the directory API the auditor reads (``/export``, ``/export/stream``, ``/tlog/*``
with hash tiles on request, ``/{did}``, ``/{did}/data``, ``/{did}/log/audit``) from a list of
export lines, computing
everything else honestly with the pure core: the RFC 6962 tree over ``tree_lines`` (default:
the served lines), checkpoints signed with the given signer, proofs from that tree, DID
documents and audit logs from replaying each DID's ops. Tests tamper with it by changing
``lines`` / ``tree_lines`` or by setting the ``*_override`` fields — the way a misbehaving
directory would, without touching the real server's code. Three switches make it behave like
the old reference server (``@did-plc/server`` 0.0.1, plc-spec-notes.md §4-5): ``legacy_export``
(``/export`` without seq mode), ``stream_status`` (no ``/export/stream``) and
``legacy_documents`` (pre-2023-09 DID documents).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import base58
import coincurve
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from plc.audit_log import apply_prepared
from plc.document import canonical_items, format_data, format_did_document
from plc.errors import PlcError
from plc.keys import Curve, parse_did_key
from plc.operation import DocumentData, normalize, parse_operation
from plc.rules import LogEntry, validate_next_op
from plc.timestamps import parse_timestamp
from plc.tlog.checkpoint import Checkpoint, sign_checkpoint
from plc.tlog.encoding import encode_b64
from plc.tlog.hashing import leaf_hash
from plc.tlog.memory import MemoryHashStore
from plc.tlog.note import Signer
from plc.tlog.proof import consistency_proof, inclusion_proof
from plc.tlog.tiles import is_tile_in_tree, parse_tile_path, tile_hashes


def _seq(line: bytes) -> int:
    try:
        value = orjson.loads(line)
        return int(value["seq"])
    except Exception:  # noqa: BLE001 - malformed lines have no seq
        return 0


@dataclass
class FakeLog:
    """What the fake directory publishes.

    Attributes:
        lines: the export lines, in served order.
        signer: the log's signer (None: no ``/tlog/``).
        tree_lines: the leaves the checkpoints commit to (None: ``lines``).
        checkpoint_override: a note to serve instead of a fresh checkpoint.
        checkpoint_queue: notes to serve, one per ``/tlog/checkpoint`` request, before any
            other (a lagging replica answering first, say).
        export_override: after -> the lines ``/export?after=`` serves instead.
        checkpoint_status: answer ``/tlog/checkpoint`` with this status and no note.
        responses_override: path -> (status, JSON body) for DID endpoints.
        stream_close_reason: close the stream with this reason after the backfill.
        stream_redeliver: re-send the last N backfilled messages before going live.
        stream_rewrite: applied to each stream message before it is sent (the reference
            server's key order, say); None: the export line as it is.
        stream_silent: accept the stream and never send a message (answering pings).
        stream_handshakes: stream connections accepted so far.
        stream_rewind: start the stream this many ``seq`` before the cursor asked for (a
            directory redelivering ops the client already has, after a resume).
        consistency_refusals: answer this many ``/tlog/proof/consistency`` requests with
            404 first (a replica that has not caught up), then serve proofs.
        consistency_override: ``"short"`` (drop the proof's last hash) or an HTTP status to
            answer ``/tlog/proof/consistency`` with.
        tiles: serve the C2SP hash tiles of the tree under ``/tlog/tile/``.
        refetch: seq -> the line (None: nothing) a one-line ``/export?after=seq-1&count=1``
            serves, the request the auditor fetches a line again with.
        legacy_export: serve ``/export`` as a directory without seq mode does: lines
            ``{"did","operation","cid","nullified","createdAt"}``, ``after`` read as a
            timestamp (an integer one gives the first page again), ``count`` ignored.
        stream_status: answer the ``/export/stream`` handshake with this HTTP status.
        legacy_documents: serve ``/{did}`` in the pre-2023-09 form (:func:`legacy_document`).
        page_delay_s: seconds each seq-mode ``/export`` page waits before it is answered (a
            run that must last a while however fast the machine replays).
        export_upto: seq-mode ``/export`` serves no op past this ``seq`` (None: all of
            them), while the stream sends them: an export that lags the stream.
        export_requests: ``(time.monotonic(), after)`` of every seq-mode ``/export``
            request so far.
    """

    lines: list[bytes]
    signer: Signer | None = None
    tree_lines: list[bytes] | None = None
    checkpoint_override: str | None = None
    checkpoint_queue: list[str] = field(default_factory=list)
    checkpoint_status: int | None = None
    export_override: dict[int, list[bytes]] = field(default_factory=dict)
    responses_override: dict[str, tuple[int, Any]] = field(default_factory=dict)
    stream_close_reason: str | None = None
    stream_redeliver: int = 0
    stream_rewind: int = 0
    stream_rewrite: Callable[[bytes], bytes] | None = None
    stream_silent: bool = False
    stream_handshakes: int = 0
    consistency_override: str | int | None = None
    consistency_refusals: int = 0
    tiles: bool = False
    refetch: dict[int, bytes | None] = field(default_factory=dict)
    legacy_export: bool = False
    stream_status: int | None = None
    stream_denials: int = 0
    """Handshakes answered with ``stream_status`` so far."""
    legacy_documents: bool = False
    page_delay_s: float = 0.0
    export_upto: int | None = None
    export_requests: list[tuple[float, int]] = field(default_factory=list)
    _cache: dict[str, Any] = field(default_factory=dict)

    def changed(self) -> None:
        """Forget derived data (call after changing ``lines`` or ``tree_lines``)."""
        self._cache.clear()

    @property
    def tree(self) -> MemoryHashStore:
        tree: MemoryHashStore | None = self._cache.get("tree")
        if tree is None:
            tree = MemoryHashStore()
            tree.append([leaf_hash(x) for x in (self.tree_lines or self.lines)])
            self._cache["tree"] = tree
        return tree

    @property
    def seqs(self) -> list[int]:
        seqs: list[int] | None = self._cache.get("seqs")
        if seqs is None or len(seqs) != len(self.lines):
            seqs = [_seq(x) for x in self.lines]
            self._cache["seqs"] = seqs
        return seqs

    def page(self, after: int, count: int) -> list[bytes]:
        if after in self.export_override:
            return self.export_override[after][:count]
        seqs = self.seqs
        start = next((i for i, s in enumerate(seqs) if s > after), len(self.lines))
        upto = self.export_upto
        return [
            line
            for line, seq in zip(
                self.lines[start : start + count], seqs[start : start + count], strict=True
            )
            if upto is None or seq <= upto
        ]

    def legacy_page(self, after: str) -> list[bytes]:
        """What an ``/export`` without seq mode serves: ops created after the timestamp
        ``after`` (anything else, such as ``0``, is "from the start"), 1000 at most."""
        try:
            since = parse_timestamp(after)
        except (PlcError, ValueError):
            since = None
        out = []
        for line in self.lines:
            value = orjson.loads(line)
            if since is None or parse_timestamp(value["createdAt"]) > since:
                out.append(
                    orjson.dumps(
                        {
                            "did": value["did"],
                            "operation": value["operation"],
                            "cid": value["cid"],
                            "nullified": False,
                            "createdAt": value["createdAt"],
                        }
                    )
                )
        return out[:LEGACY_PAGE]

    def checkpoint(self) -> str:
        if self.checkpoint_queue:
            return self.checkpoint_queue.pop(0)
        if self.checkpoint_override is not None:
            return self.checkpoint_override
        assert self.signer is not None
        tree = self.tree
        return sign_checkpoint(
            Checkpoint(self.signer.name, tree.tree_size, tree.root_hash()), self.signer
        )

    def histories(self) -> dict[str, list[LogEntry]]:
        """Each DID's audit log as an honest directory derives it (refused ops left out)."""
        cached = self._cache.get("histories")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        result: dict[str, list[LogEntry]] = defaultdict(list)
        for line in self.lines:
            try:
                value = orjson.loads(line)
                op = parse_operation(value["operation"])
                did = value["did"]
                created = parse_timestamp(value["createdAt"])
                prepared = validate_next_op(result[did], did, op, created)
            except (PlcError, KeyError, TypeError, ValueError):
                continue
            result[did] = apply_prepared(result[did], prepared)
        self._cache["histories"] = dict(result)
        return dict(result)


LEGACY_PAGE = 1000
"""Lines per legacy ``/export`` page (the old reference ignores ``count``)."""

_LEGACY_FORMS = {
    Curve.K256: ("EcdsaSecp256k1VerificationKey2019", "secp256k1-2019"),
    Curve.P256: ("EcdsaSecp256r1VerificationKey2019", "ecdsa-2019"),
}


def uncompressed_point(did_key: str) -> bytes:
    """The 65-byte ``04‖X‖Y`` point of a k256 or p256 did:key."""
    key = parse_did_key(did_key)
    if key.curve is Curve.K256:
        return coincurve.PublicKey(key.compressed).format(compressed=False)
    point = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key.compressed)
    return point.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


def legacy_document(did: str, data: DocumentData) -> dict[str, Any]:
    """The DID document as ``@did-plc/lib`` before 2023-09 formats it (``formatDidDoc``):
    ``#name`` method ids, legacy key types, ``z`` + base58btc of the uncompressed point, no
    multicodec, contexts ``did/v1`` and the key suites (plc-spec-notes.md §2, §5)."""
    context = ["https://www.w3.org/ns/did/v1"]
    methods = []
    for name, did_key in canonical_items(data.verification_methods):
        kind, suite = _LEGACY_FORMS[parse_did_key(did_key).curve]
        url = f"https://w3id.org/security/suites/{suite}/v1"
        if url not in context:
            context.append(url)
        multibase = "z" + base58.b58encode(uncompressed_point(did_key)).decode()
        methods.append(
            {"id": f"#{name}", "type": kind, "controller": did, "publicKeyMultibase": multibase}
        )
    return {
        "@context": context,
        "id": did,
        "alsoKnownAs": list(data.also_known_as),
        "verificationMethod": methods,
        "service": [
            {"id": f"#{name}", "type": svc["type"], "serviceEndpoint": svc["endpoint"]}
            for name, svc in canonical_items(data.services)
        ],
    }


def _did_response(log: FakeLog, did: str, kind: str) -> Response:
    path = f"/{did}" if kind == "doc" else f"/{did}/{kind}"
    override = log.responses_override.get(path)
    if override is not None:
        return JSONResponse(override[1], status_code=override[0])
    history = log.histories().get(did)
    if not history:
        return JSONResponse({"message": f"DID not registered: {did}"}, status_code=404)
    if kind == "log/audit":
        return Response(
            orjson.dumps(
                [
                    {
                        "did": did,
                        "operation": orjson.Fragment(e.operation.canonical_json()),
                        "cid": e.cid,
                        "nullified": e.nullified,
                        "createdAt": e.created_at.strftime("%Y-%m-%dT%H:%M:%S.")
                        + f"{e.created_at.microsecond // 1000:03d}Z",
                    }
                    for e in history
                ]
            ),
            media_type="application/json",
        )
    head = [e for e in history if not e.nullified][-1]
    data = normalize(head.operation)
    if data is None:
        return JSONResponse({"message": f"DID not available: {did}"}, status_code=404)
    if kind == "doc":
        form = legacy_document if log.legacy_documents else format_did_document
        body = form(did, data)
    else:
        body = format_data(did, data)
    return Response(orjson.dumps(body), media_type="application/json")


def make_app(log: FakeLog) -> Starlette:
    """The ASGI app serving ``log``."""

    async def export(request: Request) -> Response:
        if log.legacy_export:
            page = log.legacy_page(request.query_params.get("after", ""))
            return Response(b"\n".join(page), media_type="application/jsonlines")
        after = int(request.query_params.get("after", "0"))
        count = int(request.query_params.get("count", "1000"))
        log.export_requests.append((time.monotonic(), after))
        if count == 1 and after + 1 in log.refetch:
            line = log.refetch[after + 1]
            return Response(line or b"", media_type="application/jsonlines")
        if log.page_delay_s:
            await asyncio.sleep(log.page_delay_s)
        return Response(b"\n".join(log.page(after, count)), media_type="application/jsonlines")

    async def checkpoint(request: Request) -> Response:
        if log.checkpoint_status is not None:
            return JSONResponse({"message": "unavailable"}, status_code=log.checkpoint_status)
        if log.signer is None and log.checkpoint_override is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        return PlainTextResponse(log.checkpoint())

    async def consistency(request: Request) -> Response:
        old, new = int(request.query_params["from"]), int(request.query_params["to"])
        if old == 0 or old > new or new > log.tree.tree_size:
            return JSONResponse({"message": "Invalid from or to parameter"}, status_code=400)
        if log.consistency_refusals > 0:
            log.consistency_refusals -= 1
            return JSONResponse({"message": "no such tree yet"}, status_code=404)
        if isinstance(log.consistency_override, int):
            return JSONResponse({"message": "busy"}, status_code=log.consistency_override)
        proof = [] if old == new else consistency_proof(old, new, log.tree)
        if log.consistency_override == "short":
            proof = proof[:-1]
        body = {"from": old, "to": new, "consistencyProof": [encode_b64(h) for h in proof]}
        return JSONResponse(body)

    async def inclusion(request: Request) -> Response:
        seq, size = int(request.query_params["seq"]), int(request.query_params["treeSize"])
        if not 1 <= seq <= size <= log.tree.tree_size:
            return JSONResponse({"message": "Invalid seq or treeSize"}, status_code=400)
        index = seq - 1
        body = {
            "seq": seq,
            "leafIndex": index,
            "treeSize": size,
            "leafHash": encode_b64(log.tree.read_hashes([_leaf_index(index)])[0]),
            "inclusionProof": [encode_b64(h) for h in inclusion_proof(index, size, log.tree)],
        }
        return JSONResponse(body)

    async def tile(request: Request) -> Response:
        path = "tile/" + request.path_params["rest"]
        tile = parse_tile_path(path)
        if not log.tiles or tile.entries or not is_tile_in_tree(tile, log.tree.tree_size):
            return JSONResponse({"message": "Not Found"}, status_code=404)
        return Response(tile_hashes(tile, log.tree), media_type="application/octet-stream")

    async def did_doc(request: Request) -> Response:
        return _did_response(log, request.path_params["did"], "doc")

    async def did_data(request: Request) -> Response:
        return _did_response(log, request.path_params["did"], "data")

    async def did_audit(request: Request) -> Response:
        return _did_response(log, request.path_params["did"], "log/audit")

    async def stream(ws: WebSocket) -> None:
        if log.stream_status is not None:
            log.stream_denials += 1
            denial = JSONResponse({"message": "Not Found"}, status_code=log.stream_status)
            await ws.send_denial_response(denial)
            return
        cursor = max(0, int(ws.query_params.get("cursor", "0")) - log.stream_rewind)
        await ws.accept()
        log.stream_handshakes += 1
        sent = [x for x in log.lines if _seq(x) > cursor]
        rewrite = log.stream_rewrite
        if rewrite is not None:
            sent = [rewrite(x) for x in sent]
        try:
            while log.stream_silent:  # open, answering pings, sending nothing
                if (await ws.receive()).get("type") == "websocket.disconnect":
                    return
            for line in sent:
                await ws.send_text(line.decode("utf-8"))
            for line in sent[len(sent) - log.stream_redeliver :] if log.stream_redeliver else []:
                await ws.send_text(line.decode("utf-8"))
            if log.stream_close_reason:
                await ws.close(code=1000, reason=log.stream_close_reason)
                return
            last = max([cursor, *(_seq(x) for x in sent)])
            while True:  # live: send lines appended later, until the client goes away
                try:
                    message = await asyncio.wait_for(ws.receive(), timeout=0.05)
                except TimeoutError:
                    message = {}
                if message.get("type") == "websocket.disconnect":
                    return
                new = [x for x in log.lines if _seq(x) > last]
                if rewrite is not None:
                    new = [rewrite(x) for x in new]
                for line in new:
                    await ws.send_text(line.decode("utf-8"))
                    last = max(last, _seq(line))
                for line in new[len(new) - log.stream_redeliver :] if log.stream_redeliver else []:
                    await ws.send_text(line.decode("utf-8"))  # a redelivery (same bytes)
        except (WebSocketDisconnect, RuntimeError):
            return

    routes = [
        Route("/export", export),
        WebSocketRoute("/export/stream", stream),
        Route("/tlog/checkpoint", checkpoint),
        Route("/tlog/proof/consistency", consistency),
        Route("/tlog/proof/inclusion", inclusion),
        Route("/tlog/tile/{rest:path}", tile),
        Route("/{did}", did_doc),
        Route("/{did}/data", did_data),
        Route("/{did}/log/audit", did_audit),
    ]
    return Starlette(routes=routes)


def make_split_app(a: FakeLog, b: FakeLog) -> Starlette:
    """One server showing history ``a`` under ``/a`` and history ``b`` under ``/b``."""
    return Starlette(routes=[Mount("/a", app=make_app(a)), Mount("/b", app=make_app(b))])


def _leaf_index(index: int) -> int:
    from plc.tlog.tree import stored_hash_index

    return stored_hash_index(0, index)


def grow_later(
    log: FakeLog,
    lines: list[bytes],
    begin: Callable[[], object],
    *,
    group: int = 50,
    pause_s: float = 0.02,
) -> threading.Thread:
    """Append ``lines`` to ``log`` in groups of ``group``, ``pause_s`` apart, in a daemon
    thread, once ``begin()`` has returned (a sleep, an event's wait, a state's progress)."""

    def grow() -> None:
        begin()
        for i in range(0, len(lines), group):
            log.lines.extend(lines[i : i + group])
            log.changed()
            time.sleep(pause_s)

    thread = threading.Thread(target=grow, daemon=True)
    thread.start()
    return thread
