"""Settings of the identity resolver, read from ``PLC_RESOLVE_*`` environment variables.

Every limit the resolver applies to the network lives here (issue 5: "a setting, default 3 s";
plc-spec-notes.md §9.2). List settings accept JSON (``["1.1.1.1"]``) or a comma-separated
string (``1.1.1.1,8.8.8.8``).

The ``*_http_scheme`` / ``*_http_port`` overrides exist **only for tests** (a plain-HTTP server
on 127.0.0.1); production resolution is HTTPS on port 443, as the atproto handle and did:web
rules require.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _split_list(value: object) -> object:
    """Accept ``"a,b"`` (and ``""``) for a list setting; pass any other value through."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


_TEST_ONLY = ("handle_http_scheme", "handle_http_port", "did_web_http_scheme", "did_web_http_port")
"""The settings that exist only for tests (module docstring)."""


class ResolverSettings(BaseSettings):
    """Limits, caches and network policy of :class:`plc.resolve.IdentityResolver`.

    Durations are seconds (``_s``), sizes bytes (``_bytes``). Environment prefix
    ``PLC_RESOLVE_`` (e.g. ``PLC_RESOLVE_TIME_BUDGET_S=1.5``).
    """

    model_config = SettingsConfigDict(env_prefix="PLC_RESOLVE_", extra="ignore", frozen=True)

    time_budget_s: float = Field(default=3.0, gt=0, le=60)
    """Wall-clock budget of one resolution (handle lookup, did:web fetch, handle verification).
    A handle not verified in time is reported as ``handle.invalid``."""

    request_timeout_s: float = Field(default=2.0, gt=0, le=60)
    """Timeout of one HTTP request (connect, each read, write, pool) and of one DNS query."""

    max_body_bytes: int = Field(default=65_536, ge=256, le=16 * 1024 * 1024)
    """Largest response body read from ``/.well-known/atproto-did`` or ``did.json`` (decoded)."""

    max_redirects: int = Field(default=5, ge=0, le=20)
    """Most HTTP redirects followed per fetch; each hop is re-checked by the safety rules."""

    cache_ttl_s: float = Field(default=600.0, ge=0)
    """How long a successful handle -> DID answer or did:web document is reused."""

    negative_cache_ttl_s: float = Field(default=60.0, ge=0)
    """How long a failed handle or did:web lookup (including a timeout) is reused."""

    cache_max_entries: int = Field(default=100_000, ge=1)
    """Entries per cache (handles, did:web documents); least recently used are evicted."""

    did_web_cache_max_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    """Most bytes of did:web documents (as compact JSON) kept in the cache; least recently
    used are evicted first. Bounds the cache's memory whatever the documents' sizes."""

    max_concurrent_lookups: int = Field(default=256, ge=1, le=100_000)
    """Most handle lookups and did:web fetches in flight at once in one process (each holds a
    DNS socket and up to a few HTTPS connections; concurrent requests for the same handle or
    did:web DID share one). A lookup beyond it waits within its time budget; one that never
    gets a turn fails as timed out and is not cached."""

    max_lookups_per_domain: int = Field(default=32, ge=1, le=100_000, validate_default=False)
    """Most of those lookups in flight at once for names under one registrable domain (Public
    Suffix List, ICANN section: ``a.evil.example`` and ``b.evil.example`` count together; a
    did:web DID counts for its host's domain). Keeps one wildcard domain with a slow server
    from holding every ``max_concurrent_lookups`` slot; the others wait within their budget.
    Set explicitly, it must be at most ``max_concurrent_lookups`` (left at its default, a
    smaller ``max_concurrent_lookups`` is simply the tighter bound)."""

    allow_private_networks: bool = False
    """Fetch from loopback, private, link-local, multicast and reserved addresses too (tests,
    private deployments). Off: such hosts are refused before any connection is made."""

    allowed_networks: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """CIDR blocks allowed even though they are not public (e.g. ``10.1.0.0/16``)."""

    dns_nameservers: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """IP addresses of the DNS servers to ask; empty = the system's (``/etc/resolv.conf``)."""

    dns_port: int = Field(default=53, ge=1, le=65_535)
    """UDP/TCP port of ``dns_nameservers``."""

    handle_http_scheme: Literal["https", "http"] = "https"
    """Scheme of ``/.well-known/atproto-did`` requests; ``http`` is for tests only."""

    handle_http_port: int | None = Field(default=None, ge=1, le=65_535)
    """Port of ``/.well-known/atproto-did`` requests; ``None`` = the scheme's default (443)."""

    did_web_http_scheme: Literal["https", "http"] = "https"
    """Scheme of did:web ``/.well-known/did.json`` requests; ``http`` is for tests only."""

    did_web_http_port: int | None = Field(default=None, ge=1, le=65_535)
    """Port of did:web requests; ``None`` = the scheme's default (443)."""

    user_agent: str = "plc-directory-resolver/0.1"
    """``User-Agent`` sent with every HTTP request."""

    def test_only_overrides(self) -> dict[str, object]:
        """The settings meant for tests only that differ from their defaults, by environment
        variable name (``{"PLC_RESOLVE_HANDLE_HTTP_SCHEME": "http"}``); empty in production."""
        fields = type(self).model_fields
        return {
            f"PLC_RESOLVE_{name.upper()}": getattr(self, name)
            for name in _TEST_ONLY
            if getattr(self, name) != fields[name].default
        }

    @field_validator("allowed_networks", "dns_nameservers", mode="before")
    @classmethod
    def _accept_comma_list(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("allowed_networks")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                # Without the value: settings errors are printed, and never show values.
                raise ValueError("each entry must be an IP network (CIDR)") from None
        return value

    @field_validator("max_lookups_per_domain")
    @classmethod
    def _check_per_domain(cls, value: int, info: ValidationInfo) -> int:
        # Runs only for a value given explicitly (validate_default=False); a field validator
        # rather than a model one, so that the error names this setting and start-up reports
        # it in one line as it does every other.
        total = info.data.get("max_concurrent_lookups")
        if total is not None and value > total:
            raise ValueError("must be at most PLC_RESOLVE_MAX_CONCURRENT_LOOKUPS")
        return value

    @field_validator("dns_nameservers")
    @classmethod
    def _check_nameservers(cls, value: list[str]) -> list[str]:
        for address in value:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ValueError("each entry must be an IP address") from None
        return value
