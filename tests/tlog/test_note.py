"""C2SP signed-note with Ed25519 (plc.tlog.note)."""

from __future__ import annotations

import re

import pytest

from plc.tlog.encoding import decode_b64, encode_b64
from plc.tlog.errors import (
    InvalidTlogRequest,
    MalformedKey,
    MalformedNote,
    SignatureError,
    UnknownKey,
)
from plc.tlog.note import (
    Signer,
    Verifier,
    generate_signer,
    key_id,
    open_note,
    parse_note_unsafe,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
)

# Known answer from the golang.org/x/mod/sumdb/note package documentation (note.go, "Here is
# a well-formed signed note"): Go's key texts and the exact note Go's Sign produces.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n\u2014 PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

TEXT = "example.com/log\n7\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"


def test_go_known_answer() -> None:
    signer = parse_signer_key(GO_SKEY)
    verifier = parse_verifier_key(GO_VKEY)
    assert signer.verifier == verifier
    assert verifier.key_id == 0xC74F20A3 == key_id("PeterNeumann", verifier.public_key)
    assert signer.key_text == GO_SKEY
    assert verifier.key_text == GO_VKEY
    assert sign_note(GO_TEXT, signer) == GO_NOTE  # Ed25519 is deterministic
    note = open_note(GO_NOTE, verifier)
    assert note.text == GO_TEXT
    assert [(s.name, s.key_id) for s in note.signatures] == [("PeterNeumann", 0xC74F20A3)]
    assert note.unverified_signatures == ()


def test_generate_round_trip() -> None:
    skey, vkey = generate_signer("example.com/log")
    assert re.fullmatch(r"PRIVATE\+KEY\+example\.com/log\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}", skey)
    assert re.fullmatch(r"example\.com/log\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}", vkey)
    signer, verifier = parse_signer_key(skey), parse_verifier_key(vkey)
    assert signer.verifier == verifier
    assert skey.split("+")[3] == vkey.split("+")[1]
    assert decode_b64(vkey.split("+", 2)[2])[0] == 0x01
    note = sign_note(TEXT, signer)
    assert open_note(note, [verifier]).text == TEXT
    assert open_note(note.encode("utf-8"), verifier).text == TEXT
    assert "PRIVATE" not in repr(signer) and skey.split("+")[4] not in repr(signer)


def test_wrong_key_is_unknown() -> None:
    note = sign_note(TEXT, Signer.generate("example.com/log"))
    other = Signer.generate("example.com/log").verifier  # same name, different key ID
    with pytest.raises(UnknownKey) as info:
        open_note(note, other)
    assert info.value.expected == (("example.com/log", other.key_id),)
    assert info.value.actual[0][0] == "example.com/log"


def test_known_name_and_id_with_wrong_key_fails_signature() -> None:
    signer = Signer.generate("example.com/log")
    note = sign_note(TEXT, signer)
    impostor = Verifier(signer.name, signer.key_id, Signer.generate("x").public_key)
    with pytest.raises(SignatureError) as info:
        open_note(note, impostor)
    assert (info.value.key_name, info.value.key_id) == (signer.name, signer.key_id)


def test_tampered_text_fails() -> None:
    signer = Signer.generate("example.com/log")
    note = sign_note(TEXT, signer)
    with pytest.raises(SignatureError):
        open_note(note.replace("\n7\n", "\n8\n"), signer.verifier)


def test_unknown_signatures_are_ignored() -> None:
    log, witness = Signer.generate("example.com/log"), Signer.generate("witness.example/w1")
    note = sign_note(TEXT, witness, log)
    opened = open_note(note, log.verifier)
    assert [s.name for s in opened.signatures] == ["example.com/log"]
    assert [s.name for s in opened.unverified_signatures] == ["witness.example/w1"]
    both = open_note(note, [log.verifier, witness.verifier])
    assert len(both.signatures) == 2
    with pytest.raises(UnknownKey):
        open_note(sign_note(TEXT, witness), log.verifier)


def test_a_failing_known_signature_rejects_the_note() -> None:
    good, bad = Signer.generate("a.example/k"), Signer.generate("b.example/k")
    note = sign_note(TEXT, good, bad)
    lines = note.split("\n")
    blob = bytearray(decode_b64(lines[-2].split(" ")[2]))
    blob[10] ^= 1
    lines[-2] = f"\u2014 b.example/k {encode_b64(bytes(blob))}"
    with pytest.raises(SignatureError):
        open_note("\n".join(lines), [good.verifier, bad.verifier])


def test_repeated_lines_count_once_and_short_signature_fails() -> None:
    signer = Signer.generate("example.com/log")
    note = sign_note(TEXT, signer)
    sig_line = note.split("\n\n")[1]
    assert len(open_note(note + sig_line, signer.verifier).signatures) == 1
    short = signer.key_id.to_bytes(4, "big") + b"\x00" * 63
    with pytest.raises(SignatureError):
        open_note(f"{TEXT}\n\u2014 example.com/log {encode_b64(short)}\n", signer.verifier)


def _valid_note() -> tuple[str, Verifier]:
    signer = Signer.generate("example.com/log")
    return sign_note(TEXT, signer), signer.verifier


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda n: n.replace("\n\n", "\n"), id="no-blank-line"),
        pytest.param(lambda n: n[:-1], id="no-final-newline"),
        pytest.param(lambda n: n.replace("\u2014 ", "-- "), id="ascii-dash"),
        pytest.param(lambda n: n.replace("\u2014 ", "\u2014"), id="no-space-after-dash"),
        pytest.param(lambda n: n.replace(" example.com/log ", " example.com/log  "), id="2-spaces"),
        pytest.param(
            lambda n: n.replace("\u2014 example.com/log", "\u2014 a+b"), id="plus-in-name"
        ),
        pytest.param(lambda n: n[:-2] + "\n", id="unpadded-base64"),
        pytest.param(lambda n: n[:-1] + "\r\n", id="cr-in-signature"),
        pytest.param(lambda n: n.replace("log\n7", "log\t\n7"), id="control-char-in-text"),
        pytest.param(lambda n: n + "\n", id="trailing-blank-line"),
        pytest.param(lambda n: n + "extra\n", id="junk-signature-line"),
        pytest.param(lambda n: n.replace("log\n7", "log\ud800\n7"), id="lone-surrogate"),
        pytest.param(
            lambda n: n.split("\n\n")[0] + "\n\n\u2014 example.com/log AAAA\n", id="sig-too-short"
        ),
        pytest.param(lambda n: n + (n.split("\n\n")[1] * 100), id="more-than-100-signatures"),
    ],
)
def test_malformed_notes(mangle: object) -> None:
    note, verifier = _valid_note()
    assert callable(mangle)
    with pytest.raises(MalformedNote):
        open_note(mangle(note), verifier)


def test_malformed_note_bytes_and_unsafe_parse() -> None:
    note, verifier = _valid_note()
    with pytest.raises(MalformedNote):
        open_note(b"\xff" + note.encode(), verifier)
    unsafe = parse_note_unsafe(note)
    assert unsafe.text == TEXT and unsafe.signatures == ()
    assert len(unsafe.unverified_signatures) == 1


def test_sign_note_rejects_bad_text() -> None:
    signer = Signer.generate("example.com/log")
    for text in ["", "no newline", "tab\there\n"]:
        with pytest.raises(MalformedNote):
            sign_note(text, signer)
    with pytest.raises(InvalidTlogRequest):
        sign_note(TEXT)


def test_ambiguous_verifiers_rejected() -> None:
    note, verifier = _valid_note()
    with pytest.raises(MalformedKey):
        open_note(note, [verifier, Verifier(verifier.name, verifier.key_id, b"\x00" * 32)])


@pytest.mark.parametrize(
    "text",
    [
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # uppercase hex
        "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # 7 hex digits
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T",  # unpadded
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW",  # url alphabet
        "PeterNeumann+c74f20a3",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        # wrong length key and unknown algorithm, with adjusted key IDs (Go's note_test.go)
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys(text: str) -> None:
    with pytest.raises(MalformedKey):
        parse_verifier_key(text)


def _manglings(text: str) -> list[str]:
    """Every proper substring and every one-character increment of ``text``."""
    out = {text[i:j] for i in range(len(text)) for j in range(i + 1, len(text) + 1)}
    out |= {text[:i] + chr(ord(text[i]) + 1) + text[i + 1 :] for i in range(len(text))}
    out.discard(text)
    return sorted(out)


def test_every_mangled_key_text_is_rejected() -> None:
    # The idea of Go's TestNewVerifier / TestNewSigner: no substring or single-character
    # change of a valid key text parses.
    for bad in _manglings(GO_VKEY):
        with pytest.raises(MalformedKey):
            parse_verifier_key(bad)
    for bad in _manglings(GO_SKEY):
        with pytest.raises(MalformedKey):
            parse_signer_key(bad)


def test_signer_rejects_bad_names_and_seeds() -> None:
    for name in ["", "a b", "a+b", "a\nb", "a\u00a0b"]:
        with pytest.raises(MalformedKey):
            Signer(name, b"\x00" * 32)
    with pytest.raises(MalformedKey):
        Signer("ok", b"\x00" * 31)
