"""Identifier syntax against the atproto interop vectors (read in place, never copied)."""

from __future__ import annotations

from pathlib import Path

import pytest

from plc.resolve import (
    DISALLOWED_TLDS,
    InvalidRequest,
    has_disallowed_tld,
    is_resolvable_handle,
    is_valid_at_identifier,
    is_valid_did,
    is_valid_handle,
    is_valid_plc_did,
    normalize_handle,
)

SYNTAX = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "vectors"
    / "atproto-interop-tests"
    / "syntax"
)


def vectors(name: str) -> list[str]:
    """Lines of a vector file, minus blank lines and ``#`` comments; other whitespace is kept
    (`` john.test`` is an invalid handle because of its space)."""
    path = SYNTAX / name
    if not path.exists():
        return []  # test_vector_files_are_present fails instead
    lines = path.read_text(encoding="utf-8").split("\n")
    return [line.rstrip("\r") for line in lines if line.strip() and not line.startswith("#")]


def test_vector_files_are_present() -> None:
    for kind in ("handle", "did", "atidentifier"):
        for result in ("valid", "invalid"):
            assert (SYNTAX / f"{kind}_syntax_{result}.txt").is_file()


@pytest.mark.parametrize("value", vectors("handle_syntax_valid.txt"))
def test_valid_handles(value: str) -> None:
    assert is_valid_handle(value)
    assert normalize_handle(value) == value.lower()


@pytest.mark.parametrize("value", vectors("handle_syntax_invalid.txt"))
def test_invalid_handles(value: str) -> None:
    assert not is_valid_handle(value)
    with pytest.raises(InvalidRequest):
        normalize_handle(value)


@pytest.mark.parametrize("value", vectors("did_syntax_valid.txt"))
def test_valid_dids(value: str) -> None:
    assert is_valid_did(value)


@pytest.mark.parametrize("value", vectors("did_syntax_invalid.txt"))
def test_invalid_dids(value: str) -> None:
    assert not is_valid_did(value)


@pytest.mark.parametrize("value", vectors("atidentifier_syntax_valid.txt"))
def test_valid_at_identifiers(value: str) -> None:
    assert is_valid_at_identifier(value)


@pytest.mark.parametrize("value", vectors("atidentifier_syntax_invalid.txt"))
def test_invalid_at_identifiers(value: str) -> None:
    assert not is_valid_at_identifier(value)


def test_vector_counts_are_plausible() -> None:
    # guards against a reader that silently drops most lines
    assert len(vectors("handle_syntax_valid.txt")) > 60
    assert len(vectors("handle_syntax_invalid.txt")) > 40
    assert len(vectors("did_syntax_valid.txt")) > 15
    assert len(vectors("did_syntax_invalid.txt")) > 15


@pytest.mark.parametrize("tld", sorted(DISALLOWED_TLDS))
def test_disallowed_tlds_are_valid_syntax_but_not_resolvable(tld: str) -> None:
    handle = f"laptop.{tld}"
    assert is_valid_handle(handle)
    assert has_disallowed_tld(handle)
    assert has_disallowed_tld(handle.upper())
    assert not is_resolvable_handle(handle)


def test_resolvable_handles() -> None:
    assert is_resolvable_handle("alice.test")
    assert is_resolvable_handle("jay.bsky.social")
    assert not is_resolvable_handle("handle.invalid")
    assert not is_resolvable_handle("john..test")


def test_trailing_newline_never_passes() -> None:
    assert not is_valid_handle("john.test\n")
    assert not is_valid_did("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa\n")
    assert not is_valid_plc_did("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa\n")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("did:plc:ewvi7nxzyoun6zhxrhs64oiz", True),
        ("did:plc:7iza6de2dwap2sbkpav7c6c6", True),
        ("did:plc:ewvi7nxzyoun6zhxrhs64oi", False),  # 23 chars
        ("did:plc:ewvi7nxzyoun6zhxrhs64oizz", False),  # 25 chars
        ("did:plc:ewvi7nxzyoun6zhxrhs64oi1", False),  # '1' is not base32
        ("did:plc:EWVI7NXZYOUN6ZHXRHS64OIZ", False),  # upper case
        ("did:web:example.com", False),
    ],
)
def test_strict_plc_did(value: str, valid: bool) -> None:
    assert is_valid_plc_did(value) is valid


def test_did_length_cap() -> None:
    assert is_valid_did("did:m:" + "v" * (2048 - 6))
    assert not is_valid_did("did:m:" + "v" * (2049 - 6))
    assert not is_valid_handle("a." * 126 + "test")  # 256 chars
