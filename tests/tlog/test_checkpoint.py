"""C2SP tlog-checkpoint bodies: format, strict parse, sign and open (plc.tlog.checkpoint)."""

from __future__ import annotations

import pytest

from plc.tlog.checkpoint import (
    MAX_TREE_SIZE,
    Checkpoint,
    format_checkpoint,
    open_checkpoint,
    parse_checkpoint,
    parse_checkpoint_unsafe,
    sign_checkpoint,
)
from plc.tlog.errors import MalformedCheckpoint, OriginMismatch, SignatureError
from plc.tlog.hashing import EMPTY_ROOT
from plc.tlog.note import Signer, sign_note

ROOT_B64 = "rKbDipCvhuX1GZ7g5BBe8sA6BbJ7ja/1nk427v383cs="  # Tessera testdata, size 15
GOOD = f"example.com/log/testdata\n15\n{ROOT_B64}\n"


def test_golden_format_and_round_trip() -> None:
    checkpoint = parse_checkpoint(GOOD)
    assert checkpoint.origin == "example.com/log/testdata"
    assert checkpoint.tree_size == 15
    assert checkpoint.root_hash.hex().startswith("aca6c38a")
    assert checkpoint.extensions == ()
    assert format_checkpoint(checkpoint) == GOOD
    empty = Checkpoint("plc.example/log", 0, EMPTY_ROOT)
    assert format_checkpoint(empty) == (
        "plc.example/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
    )
    with_ext = Checkpoint("o", MAX_TREE_SIZE, EMPTY_ROOT, ("ext one", "ext two"))
    assert parse_checkpoint(format_checkpoint(with_ext)) == with_ext


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(GOOD[:-1], id="missing-trailing-newline"),
        pytest.param(GOOD.replace("\n15\n", "\n015\n"), id="leading-zero-size"),
        pytest.param(GOOD.replace("\n15\n", "\n00\n"), id="double-zero-size"),
        pytest.param(GOOD.replace("\n15\n", "\n+15\n"), id="plus-sign"),
        pytest.param(GOOD.replace("\n15\n", "\n-1\n"), id="negative-size"),
        pytest.param(GOOD.replace("\n15\n", "\n 15\n"), id="space-before-size"),
        pytest.param(GOOD.replace("\n15\n", "\n15 \n"), id="space-after-size"),
        pytest.param(GOOD.replace("\n15\n", "\n1_5\n"), id="underscore-size"),
        pytest.param(GOOD.replace("\n15\n", "\n\uff11\uff15\n"), id="fullwidth-digits"),
        pytest.param(GOOD.replace("\n15\n", "\n\n"), id="empty-size"),
        pytest.param(GOOD.replace("\n15\n", f"\n{MAX_TREE_SIZE + 1}\n"), id="size-too-big"),
        # Past 4,300 digits int() raises ValueError, which no caller of the parser catches.
        pytest.param(GOOD.replace("\n15\n", "\n" + "9" * 5000 + "\n"), id="size-5000-digits"),
        pytest.param(GOOD.replace(ROOT_B64, ROOT_B64[:-1]), id="root-unpadded"),
        pytest.param(GOOD.replace(ROOT_B64, ROOT_B64[:-2] + "t="), id="root-padding-bits"),
        pytest.param(GOOD.replace(ROOT_B64, ROOT_B64.replace("/", "_")), id="root-urlsafe"),
        pytest.param(GOOD.replace(ROOT_B64, "AAAA" + ROOT_B64), id="root-35-bytes"),
        pytest.param(GOOD.replace(ROOT_B64, ROOT_B64[4:]), id="root-29-bytes"),
        pytest.param(GOOD.replace(ROOT_B64, ROOT_B64 + " "), id="root-trailing-space"),
        pytest.param(GOOD.replace(ROOT_B64, "not base64!"), id="root-garbage"),
        pytest.param(GOOD.replace(ROOT_B64 + "\n", ""), id="two-lines"),
        pytest.param("\n" + GOOD.split("\n", 1)[1], id="empty-origin"),
        pytest.param(GOOD + "\n", id="empty-extension-line"),
        pytest.param(GOOD.replace("testdata", "test\rdata"), id="cr-in-origin"),
        pytest.param(GOOD + "ext\x00\n", id="nul-in-extension"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_rejects_non_canonical(text: str) -> None:
    with pytest.raises(MalformedCheckpoint):
        parse_checkpoint(text)


@pytest.mark.parametrize(
    "checkpoint",
    [
        Checkpoint("", 1, EMPTY_ROOT),
        Checkpoint("o\nx", 1, EMPTY_ROOT),
        Checkpoint("o", -1, EMPTY_ROOT),
        Checkpoint("o", MAX_TREE_SIZE + 1, EMPTY_ROOT),
        Checkpoint("o", 1, EMPTY_ROOT[:31]),
        Checkpoint("o", 1, EMPTY_ROOT, ("",)),
    ],
)
def test_format_rejects_invalid_values(checkpoint: Checkpoint) -> None:
    with pytest.raises(MalformedCheckpoint):
        format_checkpoint(checkpoint)


def test_sign_open_and_origin() -> None:
    signer = Signer.generate("plc.example/log")
    checkpoint = Checkpoint("plc.example/log", 42, EMPTY_ROOT)
    note = sign_checkpoint(checkpoint, signer)
    assert note.startswith(format_checkpoint(checkpoint) + "\n\u2014 plc.example/log ")
    assert open_checkpoint(note, signer.verifier) == checkpoint
    assert open_checkpoint(note, signer.verifier, origin="plc.example/log") == checkpoint
    with pytest.raises(OriginMismatch) as info:
        open_checkpoint(note, signer.verifier, origin="other.example/log")
    assert (info.value.expected, info.value.actual) == ("other.example/log", "plc.example/log")
    with pytest.raises(SignatureError):
        open_checkpoint(note.replace("\n42\n", "\n43\n"), signer.verifier)
    assert parse_checkpoint_unsafe(note) == checkpoint


def test_signed_text_that_is_not_a_checkpoint() -> None:
    signer = Signer.generate("plc.example/log")
    note = sign_note("plc.example/log\n042\n" + ROOT_B64 + "\n", signer)
    with pytest.raises(MalformedCheckpoint):
        open_checkpoint(note, signer.verifier)
