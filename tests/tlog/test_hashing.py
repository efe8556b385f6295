"""Known answers for RFC 6962 §2.1 hashing; each constant has the command that regenerates it."""

from __future__ import annotations

from plc.tlog.hashing import EMPTY_ROOT, HASH_SIZE, leaf_hash, node_hash

from . import reference

# The classic RFC 6962 8-leaf tree (transparency-dev/merkle testonly; ../shared/vectors
# README): leaf inputs, hex.
RFC6962_LEAVES = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]


def test_empty_root() -> None:
    # printf '' | sha256sum
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_leaf_hash_known_answers() -> None:
    # printf '\x00' | sha256sum
    assert leaf_hash(b"").hex() == (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )
    # echo -n 004C313233343536 | xxd -r -p | sha256sum
    assert leaf_hash(b"L123456").hex() == (
        "395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56"
    )


def test_node_hash_known_answer() -> None:
    # echo -n 014E3132334E343536 | xxd -r -p | sha256sum
    assert node_hash(b"N123", b"N456").hex() == (
        "aa217fe888e47007fa15edab33c2b492a722cb106c64667fc2b044444de66bbb"
    )


def test_rfc6962_eight_leaf_root() -> None:
    # Root of the 8-leaf tree as stated in ../shared/vectors/README.md (merkle section).
    leaves = [leaf_hash(bytes.fromhex(h)) for h in RFC6962_LEAVES]
    assert reference.mth(leaves).hex() == (
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    )


def test_leaf_and_node_differ_by_prefix() -> None:
    # A leaf whose data is l || r must not hash like the node (l, r).
    left, right = leaf_hash(b"a"), leaf_hash(b"b")
    assert leaf_hash(left + right) != node_hash(left, right)
    assert len(leaf_hash(b"x")) == len(node_hash(left, right)) == HASH_SIZE
