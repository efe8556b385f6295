"""did:plc documents for the identity resolver, straight from our own store (no network hop,
never stale)."""

from __future__ import annotations

from typing import Any

import orjson

from plc.service import Directory


class DirectoryDocumentSource:
    """A ``plc.resolve.PlcDocumentSource`` backed by the directory this server runs.

    ``get_document`` raises ``DidNotRegistered`` / ``DidNotAvailable`` (tombstoned) exactly
    as ``GET /{did}`` answers 404.
    """

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    async def get_document(self, did: str, deadline: float | None = None) -> dict[str, Any]:
        # one local read: the resolver's deadline is not needed to bound it
        body = await self.directory.run(self.directory.document, did)
        document: dict[str, Any] = orjson.loads(body)
        return document
