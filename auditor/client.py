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

Transient failures (connection errors, 5xx, a request over its deadline) are retried with
exponential backoff; rate limits (429, or a 503 with ``Retry-After``) are retried for longer,
waiting what ``Retry-After`` asks (seconds or an HTTP-date, at most
:data:`MAX_RETRY_AFTER_S`). When retries run out the audit fails
(:class:`~auditor.errors.DirectoryUnreachable`, exit code 1). Every request has a total
deadline and a cap on the decoded body (:class:`auditor.options.HttpLimits`); a body over the
cap fails the audit at once (:class:`~auditor.errors.AuditFailed`: asking again gets the same).
Answers are asked for in ``gzip`` or ``deflate`` and decoded here, in bounded steps, so the
cap holds against a compressed answer that expands a thousandfold (a "gzip bomb").
"""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from auditor.errors import AuditFailed, DirectoryUnreachable
from auditor.options import HttpLimits
from plc.content_coding import ACCEPT_ENCODING, ContentCodingError, decoded
from plc.deadline import TooSlow, call_with_client
from plc.retry_after import MAX_RETRY_AFTER_S as MAX_RETRY_AFTER_S
from plc.retry_after import retry_after_seconds
from plc.tlog.encoding import decode_hash_b64

EXPORT_PAGE = 1000
"""Largest ``count`` of ``/export`` (plc.directory's limit)."""
RATE_LIMIT_RETRIES = 10
"""Retries of a rate-limited request (429, or 503 with ``Retry-After``), on top of
``retries``: without ``Retry-After`` the waits (1 s doubling to 60 s) add up to over 5
minutes, plc.directory's rate-limit window."""


def retry_after_s(response: httpx.Response, now: float | None = None) -> float | None:
    """The wait ``Retry-After`` asks for on a 429 or 503 (RFC 9110 §10.2.3: delay seconds or
    an HTTP-date), in seconds, capped at :data:`MAX_RETRY_AFTER_S` (a date in the past: 0).

    Args:
        response: the answer.
        now: the Unix time an HTTP-date is counted from (default: now).

    Returns:
        Seconds, or None: another status, no header, or one that is neither form.
    """
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after", "").strip()
    seconds = retry_after_seconds(response.status_code, value)
    if seconds is not None:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000": RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    start = datetime.now(UTC).timestamp() if now is None else now
    return min(max(0.0, when.timestamp() - start), MAX_RETRY_AFTER_S)


_FRAMING = (b"content-encoding", b"content-length", b"transfer-encoding")


class _TooSlow(Exception):
    """A request that did not finish within its deadline (retried like a timeout)."""


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
        timeout_s: timeout of each connect, read and write, seconds.
        retries: attempts after the first for transient failures.
        limits: the total deadline of a request and the cap on its decoded body.
        rate_limit_retries: further attempts for rate-limited answers.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 30.0,
        retries: int = 4,
        limits: HttpLimits | None = None,
        rate_limit_retries: int = RATE_LIMIT_RETRIES,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._retries = retries
        self._rate_limit_retries = rate_limit_retries
        self._limits = limits or HttpLimits()
        self._timeout_s = timeout_s
        self._http = self._new_http()

    def _new_http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.base_url,
            timeout=self._timeout_s,
            headers={"user-agent": "plc-audit", "accept-encoding": ACCEPT_ENCODING},
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def get(self, path: str, params: dict[str, str | int] | None = None) -> httpx.Response:
        """GET with retries: on connection errors, 5xx and a request over its deadline
        (``retries`` times, backing off 0.2 s doubling to 5 s), and on rate limits (429, or
        503 with ``Retry-After``: ``rate_limit_retries`` more times, waiting what
        ``Retry-After`` asks, else 1 s doubling to 60 s). The last answer is returned if it is
        still 429/5xx. The body is read whole (``response.content``).

        Raises:
            DirectoryUnreachable: the directory could not be reached, or did not answer
                within the deadline, after the retries.
            AuditFailed: the decoded body is larger than the cap (not retried).
        """
        url = f"{self.base_url}{path}"
        delay, limited_delay = 0.2, 1.0
        failures = limited = 0
        while True:
            try:
                response = self._fetch(path, params)
            except (httpx.HTTPError, _TooSlow) as exc:
                failures += 1
                if failures > self._retries:
                    raise DirectoryUnreachable(f"GET {url} failed: {exc}") from exc
                pause = delay
                delay = min(delay * 2, 5.0)
            else:
                status = response.status_code
                if status != 429 and status < 500:
                    return response
                asked = retry_after_s(response)
                if status == 429 or asked is not None:
                    limited += 1
                    if limited > self._rate_limit_retries:
                        return response
                    # a Retry-After of 0 or a past date still waits a little, not 10 quick tries
                    pause = limited_delay if asked is None else max(asked, 0.5)
                    limited_delay = min(limited_delay * 2, 60.0)
                else:
                    failures += 1
                    if failures > self._retries:
                        return response
                    pause = delay
                    delay = min(delay * 2, 5.0)
            time.sleep(pause)

    def _fetch(self, path: str, params: dict[str, str | int] | None) -> httpx.Response:
        """One GET within the deadline as a whole, head included (httpx bounds each read
        only: a head sent a byte at a time passed every read's timeout); a request too slow
        is left to its thread with the client it uses, and the next one takes a new client.

        Raises:
            _TooSlow: the request took longer than the deadline.
            AuditFailed: the decoded body is larger than the cap.
            httpx.HTTPError: a transport failure, or a body that does not decode.
        """
        deadline_s = self._limits.deadline_s
        fetch = self._fetch_with
        try:
            return call_with_client(self._http, lambda http: fetch(http, path, params), deadline_s)
        except TooSlow:
            self._http = self._new_http()
            raise _TooSlow(
                f"the answer took longer than {deadline_s:g} s (the deadline is "
                "HttpLimits.deadline_s, --request-deadline)"
            ) from None

    def _fetch_with(
        self, http: httpx.Client, path: str, params: dict[str, str | int] | None
    ) -> httpx.Response:
        """:meth:`_fetch`'s request on ``http``, its body counted as it is decoded."""
        limits = self._limits
        deadline = time.monotonic() + limits.deadline_s
        url = f"{self.base_url}{path}"
        with http.stream("GET", path, params=params) as response:
            body = bytearray()
            coding = response.headers.get("content-encoding", "")
            try:
                for chunk in decoded(response.iter_raw(), coding):
                    body += chunk
                    if len(body) > limits.max_body_bytes:
                        raise AuditFailed(
                            f"GET {url}: the answer is larger than {limits.max_body_bytes} "
                            "bytes (decoded): refused (the limit is HttpLimits.max_body_bytes, "
                            "--max-response-bytes)"
                        )
                    if time.monotonic() > deadline:  # a request given up on ends here too
                        raise _TooSlow(f"the answer took longer than {limits.deadline_s:g} s")
            except ContentCodingError as exc:
                raise httpx.DecodingError(str(exc)) from exc
        return httpx.Response(
            response.status_code,
            # raw bytes: a header value that is not ASCII must not fail the rebuild; the
            # framing headers described the encoded body, not this decoded one
            headers=[(k, v) for k, v in response.headers.raw if k.lower() not in _FRAMING],
            content=bytes(body),
            request=response.request,
        )

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
