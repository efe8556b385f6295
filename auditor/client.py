"""HTTP client of a did:plc directory: the auditor's only network I/O besides the stream.

Endpoints used (plc.directory's API plus this project's ``/tlog/``, design.md decision 5):

- ``GET /export?after=<seq>&count=<1..1000>``: ``sequenced_op`` lines joined by ``\\n``;
  an empty body means the end.
- ``GET /tlog/checkpoint``: the newest signed checkpoint (text); 404 = no tlog.
- ``GET /tlog/proof/consistency?from=&to=`` → ``{"from","to","consistencyProof":[b64...]}``.
- ``GET /tlog/proof/inclusion?seq=&treeSize=`` → ``{"seq","leafIndex","treeSize","leafHash",
  "inclusionProof":[b64...]}``.
- ``GET /tlog/tile/...``: C2SP tlog-tiles, when a proof endpoint's answer does not verify.
- ``GET /{did}``, ``/{did}/data``, ``/{did}/log/audit`` for spot checks.

Transient failures (connection errors, 429, 5xx) are retried with exponential backoff; when
retries run out the audit fails (:class:`~auditor.errors.AuditFailed`, exit code 1).
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson

from auditor.errors import AuditFailed, DirectoryUnreachable
from plc.tlog.encoding import decode_hash_b64

EXPORT_PAGE = 1000
"""Largest ``count`` of ``/export`` (plc.directory's limit)."""


class ProofUnavailable(AuditFailed):
    """The directory did not serve a usable proof (refused, or malformed)."""


def _hashes(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise ProofUnavailable(f"{what} is not a list")
    try:
        return [decode_hash_b64(h) if isinstance(h, str) else b"" for h in value]
    except ValueError as exc:
        raise ProofUnavailable(f"{what}: {exc}") from None


def _failure(response: httpx.Response, message: str) -> AuditFailed:
    """:class:`DirectoryUnreachable` for a 429 or 5xx answer (it may pass), else
    :class:`AuditFailed`."""
    transient = response.status_code == 429 or response.status_code >= 500
    return DirectoryUnreachable(message) if transient else AuditFailed(message)


class DirectoryClient:
    """A synchronous client of one directory.

    Args:
        base_url: e.g. ``http://127.0.0.1:2582`` (a trailing ``/`` is ignored).
        timeout_s: per-request timeout.
        retries: attempts after the first for transient failures.
    """

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, retries: int = 4) -> None:
        self.base_url = base_url.rstrip("/")
        self._retries = retries
        self._http = httpx.Client(
            base_url=self.base_url,
            timeout=timeout_s,
            headers={"user-agent": "plc-audit"},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get(self, path: str, params: dict[str, str | int] | None = None) -> httpx.Response:
        """GET with retries on connection errors, 429 and 5xx (the last answer is returned
        if it is still 429/5xx).

        Raises:
            DirectoryUnreachable: the directory could not be reached.
        """
        delay = 0.2
        for attempt in range(self._retries + 1):
            try:
                response = self._http.get(path, params=params)
            except httpx.HTTPError as exc:
                if attempt == self._retries:
                    raise DirectoryUnreachable(f"GET {self.base_url}{path} failed: {exc}") from exc
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                if attempt == self._retries:
                    return response
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def export_page(self, after: int, count: int = EXPORT_PAGE) -> list[bytes]:
        """The lines of ``/export?after=<after>&count=<count>`` (blank lines dropped).

        Raises:
            AuditFailed: a non-200 answer or a network failure.
        """
        response = self.get("/export", {"after": after, "count": count})
        if response.status_code != 200:
            raise _failure(response, f"/export?after={after} answered {response.status_code}")
        body = response.content
        return [line for line in body.split(b"\n") if line.strip()] if body else []

    def probe_export(self) -> None:
        """Check that ``/export`` answers like a did:plc directory's (one request,
        ``count=1``): 200 with an empty body (nothing exported yet) or a first line that is a
        JSON object. Asked before anything is stored in a new state, so that a mistyped URL
        (a web server answering every path, a 404) is a failed run, not a directory that
        misbehaves: its answers to ``/tlog/checkpoint`` and ``/export`` would otherwise be
        findings.

        Raises:
            AuditFailed: another answer, or a network failure.
        """
        where = f"{self.base_url}/export"
        response = self.get("/export", {"after": 0, "count": 1})
        if response.status_code != 200:
            raise AuditFailed(
                f"{where} answered {response.status_code}: not a did:plc directory "
                "(check the URL); nothing was stored"
            )
        first = next((x for x in response.content.split(b"\n") if x.strip()), None)
        if first is None:
            return
        try:
            value = orjson.loads(first)
        except orjson.JSONDecodeError:
            value = None
        if not isinstance(value, dict):
            kind = response.headers.get("content-type", "no content type")
            raise AuditFailed(
                f"{where} does not serve export lines (JSON objects; it served {kind}): not "
                "a did:plc directory (check the URL); nothing was stored"
            )

    def line_at(self, seq: int) -> bytes | None:
        """The export line with ``seq`` as served now (None if the next line has another
        ``seq``)."""
        lines = self.export_page(seq - 1, 1)
        if not lines:
            return None
        try:
            value = orjson.loads(lines[0])
        except orjson.JSONDecodeError:
            return None
        return lines[0] if isinstance(value, dict) and value.get("seq") == seq else None

    def checkpoint(self) -> str | None:
        """The newest signed checkpoint note, or None when the directory has no ``/tlog/``
        (404) or has not signed one yet (503 after retries).

        Raises:
            AuditFailed: any other answer.
        """
        response = self.get("/tlog/checkpoint")
        if response.status_code in (404, 503):
            return None
        if response.status_code != 200:
            raise _failure(response, f"/tlog/checkpoint answered {response.status_code}")
        return response.text

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """The directory's consistency proof from ``old_size`` to ``new_size`` (not verified).

        Raises:
            ProofUnavailable: refused or malformed.
        """
        body = self._proof(
            "/tlog/proof/consistency",
            {"from": old_size, "to": new_size},
            f"consistency proof {old_size} -> {new_size}",
        )
        return _hashes(body.get("consistencyProof"), "consistencyProof")

    def _proof(self, path: str, params: dict[str, str | int], what: str) -> dict[str, Any]:
        """GET a JSON proof object. Raises ProofUnavailable when refused or not an object."""
        response = self.get(path, params)
        if response.status_code != 200:
            raise ProofUnavailable(f"no {what}: HTTP {response.status_code}")
        try:
            body = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise ProofUnavailable(f"{what} is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ProofUnavailable(f"{what} is not a JSON object")
        return body

    def tile(self, path: str) -> bytes:
        """A C2SP tlog-tiles resource under ``/tlog/`` (``path`` like ``tile/0/x001/067.p/9``),
        as :data:`plc.tlog.tiles.Fetch` expects (httpx undoes any gzip).

        Raises:
            ProofUnavailable: not served.
        """
        response = self.get(f"/tlog/{path}")
        if response.status_code != 200:
            raise ProofUnavailable(f"/tlog/{path} answered {response.status_code}")
        return response.content

    def inclusion_proof(self, seq: int, tree_size: int) -> tuple[bytes, list[bytes]]:
        """``(leafHash, inclusionProof)`` the directory serves for ``seq`` in the tree of
        ``tree_size`` leaves (not verified).

        Raises:
            ProofUnavailable: refused or malformed.
        """
        body = self._proof(
            "/tlog/proof/inclusion",
            {"seq": seq, "treeSize": tree_size},
            f"inclusion proof for seq {seq} in {tree_size}",
        )
        if not isinstance(body.get("leafHash"), str):
            raise ProofUnavailable("inclusion proof has no leafHash")
        try:
            leaf = decode_hash_b64(body["leafHash"])
        except ValueError as exc:
            raise ProofUnavailable(f"leafHash: {exc}") from None
        return leaf, _hashes(body.get("inclusionProof"), "inclusionProof")
