"""Admission policy for new operations: today's limits, kept apart from validity.

Only the server applies this, and only when an op is submitted. History that broke a limit
stays valid (``plc.rules`` and the auditor never look here). Values are plc.directory's
(``packages/server/src/constraints.ts``, plc-spec-notes.md §3.1/§3.4) except rotation keys,
where the spec's rule applies: 1 to 5 distinct k256/p256 keys (design.md decision 2). Messages
keep the reference's text, typos included, because clients match on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from plc.codec import encode_dag_cbor
from plc.errors import (
    InvalidInput,
    MalformedEncoding,
    OperationTooLarge,
    PolicyViolation,
    RateLimited,
    UnsupportedKeyType,
    echo,
)
from plc.keys import is_valid_multikey_text, parse_did_key
from plc.operation import LEGACY_CREATE, PLC_OPERATION, Operation


class PolicySettings(BaseModel):
    """Every admission limit, with plc.directory's values as defaults."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    """False switches every check off (replaying history, conformance tests)."""
    max_op_bytes: int = 4000
    """Largest DAG-CBOR encoding of a signed op, bytes."""
    min_rotation_keys: int = 1
    max_rotation_keys: int = 5
    max_also_known_as: int = 10
    max_also_known_as_length: int = 258
    max_services: int = 10
    max_service_id_length: int = 32
    max_service_type_length: int = 256
    max_service_endpoint_length: int = 512
    max_verification_methods: int = 10
    max_verification_method_id_length: int = 32
    max_verification_method_key_length: int = 256
    ops_per_hour: int = 10
    ops_per_day: int = 30
    ops_per_week: int = 100


def validate_admission(op: Operation, settings: PolicySettings) -> None:
    """Apply the size, type and field limits to a schema-valid op submitted now.

    Raises:
        PolicyViolation: ``create`` ops (refused since 2023-09-20) and any broken limit.
        OperationTooLarge: ``Operation too large (4000 bytes maximum in cbor encoding)``.
    """
    if op.type == LEGACY_CREATE:
        raise PolicyViolation(
            "Not a valid operation: legacy create operations are no longer accepted"
        )
    if not settings.enabled:
        return
    _check_size(len(op.signed_cbor), settings)
    if op.type != PLC_OPERATION:
        return
    data = op.data
    _check_also_known_as(data["alsoKnownAs"], settings)
    _check_rotation_keys(data["rotationKeys"], settings)
    _check_services(data["services"], settings)
    _check_verification_methods(data["verificationMethods"], settings)


def validate_size(op: Operation, settings: PolicySettings) -> None:
    """The size limit alone, for a schema-valid op submitted now (the first limit the
    reference checks, plc-spec-notes.md §3.1 step 2a; :func:`validate_admission` checks it
    too).

    Raises:
        OperationTooLarge: as :func:`validate_admission`.
    """
    if settings.enabled:
        _check_size(len(op.signed_cbor), settings)


def validate_unparsed_size(value: Any, settings: PolicySettings) -> None:
    """The size limit for a submitted JSON value that failed the schema: the reference checks
    the DAG-CBOR size before the schema (plc-spec-notes.md §3.1 step 2a), so an oversized
    invalid op is refused as too large. A value DAG-CBOR cannot encode is left to the schema
    error. (A schema-valid op's size is checked by :func:`validate_admission`.)

    Raises:
        OperationTooLarge: as :func:`validate_admission`.
    """
    if not settings.enabled:
        return
    try:
        size = len(encode_dag_cbor(value))
    except MalformedEncoding:
        return
    _check_size(size, settings)


def _check_size(size: int, settings: PolicySettings) -> None:
    if size > settings.max_op_bytes:
        raise OperationTooLarge(
            f"Operation too large ({settings.max_op_bytes} bytes maximum in cbor encoding)"
        )


def _js_length(text: str) -> int:
    """``text.length`` in JavaScript: UTF-16 code units, so a character outside the BMP (an
    emoji) counts twice. The reference's length limits are measured that way."""
    if text.isascii():
        return len(text)
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _check_also_known_as(entries: list[str], s: PolicySettings) -> None:
    if len(entries) > s.max_also_known_as:
        raise PolicyViolation(f"To many alsoKnownAs entries (max {s.max_also_known_as})")
    seen: set[str] = set()
    for entry in entries:
        if _js_length(entry) > s.max_also_known_as_length:
            raise PolicyViolation(
                f"alsoKnownAs entry too long (max {s.max_also_known_as_length}): {echo(entry)}"
            )
        if entry in seen:
            raise PolicyViolation(f"duplicate alsoKnownAs entry: {echo(entry)}")
        seen.add(entry)


def _check_rotation_keys(keys: list[str], s: PolicySettings) -> None:
    if len(keys) > s.max_rotation_keys:
        raise PolicyViolation(f"Too many rotationKey entries (max {s.max_rotation_keys})")
    if len(keys) < s.min_rotation_keys:
        raise PolicyViolation(f"Too few rotationKey entries (min {s.min_rotation_keys})")
    seen: set[str] = set()
    for key in keys:
        try:
            parse_did_key(key)
        except (InvalidInput, UnsupportedKeyType) as exc:
            raise PolicyViolation(f"Invalid rotationKey: {echo(key)}") from exc
        if key in seen:
            raise PolicyViolation(f"duplicate rotationKey entry: {echo(key)}")
        seen.add(key)


def _check_services(services: dict[str, dict[str, str]], s: PolicySettings) -> None:
    if len(services) > s.max_services:
        raise PolicyViolation(f"To many service entries (max {s.max_services})")
    for name, service in services.items():
        if _js_length(name) > s.max_service_id_length:
            raise PolicyViolation(
                f"Service id too long (max {s.max_service_id_length}): {echo(name)}"
            )
        if _js_length(service["type"]) > s.max_service_type_length:
            raise PolicyViolation(f"Service type too long (max {s.max_service_type_length})")
        if _js_length(service["endpoint"]) > s.max_service_endpoint_length:
            raise PolicyViolation(
                f"Service endpoint too long (max {s.max_service_endpoint_length})"
            )


def _check_verification_methods(methods: dict[str, str], s: PolicySettings) -> None:
    if len(methods) > s.max_verification_methods:
        raise PolicyViolation(
            f"Too many Verification Method entries (max {s.max_verification_methods})"
        )
    for name, key in methods.items():
        if _js_length(name) > s.max_verification_method_id_length:
            raise PolicyViolation(
                "Verification Method id too long "
                f"(max {s.max_verification_method_id_length}): {echo(name)}"
            )
        if _js_length(key) > s.max_verification_method_key_length:
            raise PolicyViolation(
                "Verification Method key too long "
                f"(max {s.max_verification_method_key_length}): {echo(key)}"
            )
        if not is_valid_multikey_text(key):
            raise PolicyViolation(f"Invalid verificationMethod key: {echo(key)}")


def validate_rate_limit(
    active_created_at: Iterable[datetime], now: datetime, settings: PolicySettings
) -> None:
    """Refuse a non-recovery op when the DID already has the maximum number of non-nullified
    ops in the last hour, day or week (so at most N in a window, the new one included).

    Args:
        active_created_at: ``createdAt`` of the DID's non-nullified ops.
        now: the time of the new op.

    Raises:
        RateLimited: with ``retry_after_s``, the seconds until the new op would be admitted:
            when several windows are full, the longest wait, and the message names that
            window.
    """
    if not settings.enabled:
        return
    stamps = list(active_created_at)
    if len(stamps) < min(settings.ops_per_hour, settings.ops_per_day, settings.ops_per_week):
        return  # no window can be full (the common case: a DID with a short history)
    stamps.sort()
    windows = (
        ("hour", timedelta(hours=1), settings.ops_per_hour),
        ("day", timedelta(days=1), settings.ops_per_day),
        ("week", timedelta(weeks=1), settings.ops_per_week),
    )
    # Several windows can be full at once; the answer names the one that frees up last, so
    # that a client retrying after Retry-After is not refused again by another window.
    longest: tuple[timedelta, str, int] | None = None
    for label, span, limit in windows:
        recent = [t for t in stamps if t > now - span]
        if len(recent) >= limit:
            wait = recent[len(recent) - limit] + span - now
            if longest is None or wait > longest[0]:
                longest = (wait, label, limit)
    if longest is not None:
        wait, label, limit = longest
        retry_after = max(1, int(wait.total_seconds()) + 1)
        raise RateLimited(f"To many operations within last {label} (max {limit})", retry_after)
