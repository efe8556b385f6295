"""A directory like the old reference server (``@did-plc/server`` 0.0.1): ``/export`` without
seq mode, no ``/export/stream``, no ``/tlog/``, pre-2023-09 DID documents. The auditor must
refuse what it cannot audit without recording misbehaviour, and audit the rest."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import base58
import orjson
import pytest

from auditor import follow
from auditor.audit import AuditOptions, sync_directory, verify_file
from auditor.compare import DifferentLogs, compare_states
from auditor.documents import same_document
from auditor.errors import AuditFailed
from auditor.evidence_check import check_finding
from auditor.evidence_ops import EvidenceRejected
from plc.keys import Curve, PrivateKey
from plc.operation import normalize
from plc.tlog.note import Signer

from ..conftest import free_port
from .conftest import (
    Audit,
    assert_evidence_consistent,
    classes,
    renumber,
    serve,
    stored_findings,
)
from .corpus import Corpus
from .fakedir import FakeLog, legacy_document, uncompressed_point
from .test_hostile_input import run_cli


def _meta(path: Path, key: str) -> int:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return 0 if row is None else int(row[0])


def _lone_op(lines: list[bytes], start: int) -> int:
    """Index (from ``start``) of a line whose DID has no other op: losing it breaks nothing."""
    dids = [orjson.loads(x)["did"] for x in lines]
    return next(i for i in range(start, len(lines)) if dids.count(dids[i]) == 1)


# 1. /export without seq mode


def test_a_legacy_export_is_refused_before_anything_is_stored(
    corpus: Corpus, sync: Audit, tmp_path: Path
) -> None:
    log = FakeLog(list(corpus.lines[:300]), signer=None, legacy_export=True)
    state_path = tmp_path / "state.sqlite3"
    with serve(log) as url:
        with pytest.raises(AuditFailed) as failed:
            sync(url)
        assert str(failed.value) == (
            f"{url}/export serves legacy lines without seq (a timestamp cursor): this "
            "directory cannot be audited by seq; nothing was stored"
        )
        assert not state_path.exists()  # the run made it, stored nothing, and removed it
        log.legacy_export = False  # the directory gains seq mode: the next run starts cleanly
        assert sync(url) == []
    assert _meta(state_path, "tree_size") == 300


def test_a_legacy_export_file_is_refused_and_no_state_is_written(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = FakeLog(list(corpus.lines[:50]), legacy_export=True).legacy_page("")
    export = tmp_path / "legacy.jsonl"
    export.write_bytes(b"\n\n" + b"\n".join(legacy) + b"\n")
    state_path = tmp_path / "s.sqlite3"
    with pytest.raises(AuditFailed, match="holds legacy export lines without seq"):
        verify_file(export, state_path, AuditOptions(workers=0, progress=False))
    assert not state_path.exists()
    code, out, err = run_cli(capsys, "verify", str(export), "--state", str(state_path))
    assert code == 1 and out == "" and "holds legacy export lines without seq" in err
    assert not state_path.exists()


def test_a_legacy_line_inside_a_seq_log_is_still_a_malformed_entry(
    corpus: Corpus, sync: Audit, verify: Audit
) -> None:
    lines = list(corpus.lines[:300])
    k = _lone_op(lines, 100)
    legacy = FakeLog([lines[k]], legacy_export=True).legacy_page("")[0]
    lines[k] = legacy
    assert [f.cls for f in verify(lines) if f.cls == "malformed-entry"] == ["malformed-entry"]
    log = FakeLog(lines, signer=None)
    with serve(log) as url:
        found = sync(url, allow_seq_gaps=True)
    assert [(f.cls, f.evidence["line"]) for f in found if f.cls == "malformed-entry"] == [
        ("malformed-entry", legacy.decode())
    ]
    # First on a page, followed by seq lines: a seq log with one malformed entry.
    first = FakeLog(list(corpus.lines[:200]), signer=None)
    first.export_override[0] = [legacy, *corpus.lines[:200]]
    with serve(first) as url:
        assert "malformed-entry" in classes(sync(url, state_name="first.sqlite3"))


# 2. Pre-2023-09 DID documents


EXAMPLE_DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
EXAMPLE_DOC: dict[str, Any] = {  # plc-spec-notes.md §5
    "@context": [
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/multikey/v1",
        "https://w3id.org/security/suites/secp256k1-2019/v1",
    ],
    "id": EXAMPLE_DID,
    "alsoKnownAs": ["at://atproto.com"],
    "verificationMethod": [
        {
            "id": f"{EXAMPLE_DID}#atproto",
            "type": "Multikey",
            "controller": EXAMPLE_DID,
            "publicKeyMultibase": "zQ3shXjHeiBuRCKmM36cuYnm7YEMzhGnCmCyW92sRJ9pribSF",
        }
    ],
    "service": [
        {
            "id": "#atproto_pds",
            "type": "AtprotoPersonalDataServer",
            "serviceEndpoint": "https://bsky.social",
        }
    ],
}
LEGACY_K256 = (  # the same key, uncompressed (plc-spec-notes.md §2, verified vector)
    "zQYEBzXeuTM9UR3rfvNag6L3RNAs5pQZyYPsomTsgQhsxLdEgCrPTLgFna8yqCnxPpNT7DBk6Ym3dgPKNu86vt9GR"
)


def _legacy_example(**method: str) -> dict[str, Any]:
    doc = orjson.loads(orjson.dumps(EXAMPLE_DOC))
    doc["@context"] = [
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/suites/secp256k1-2019/v1",
    ]
    doc["verificationMethod"] = [
        {
            "id": "#atproto",
            "type": "EcdsaSecp256k1VerificationKey2019",
            "controller": EXAMPLE_DID,
            "publicKeyMultibase": LEGACY_K256,
            **method,
        }
    ]
    return doc  # type: ignore[no-any-return]


def test_documents_are_compared_by_meaning_in_either_key_form() -> None:
    assert same_document(_legacy_example(), EXAMPLE_DOC)
    p256 = PrivateKey.generate(Curve.P256).did_key
    modern = {**EXAMPLE_DOC, "verificationMethod": [{**EXAMPLE_DOC["verificationMethod"][0]}]}
    modern["verificationMethod"][0]["publicKeyMultibase"] = p256.removeprefix("did:key:")
    legacy = "z" + base58.b58encode(uncompressed_point(p256)).decode()
    kind = "EcdsaSecp256r1VerificationKey2019"
    served = _legacy_example(type=kind, publicKeyMultibase=legacy)
    assert same_document(served, modern)


def _differs(change: dict[str, Any]) -> dict[str, Any]:
    return {**_legacy_example(), **change}


OTHER_KEY = "z" + base58.b58encode(uncompressed_point(PrivateKey.from_seed("x").did_key)).decode()


@pytest.mark.parametrize(
    "served",
    [
        _legacy_example(publicKeyMultibase=OTHER_KEY),  # another key
        _differs({"alsoKnownAs": ["at://someone.else"]}),  # another handle
        _differs(
            {
                "service": [
                    {
                        "id": "#atproto_pds",
                        "type": "AtprotoPersonalDataServer",
                        "serviceEndpoint": "https://evil.example",
                    }
                ]
            }
        ),
        _differs({"verificationMethod": []}),  # the method is missing
        _legacy_example(id="#other"),  # the key under another name
        _legacy_example(id="did:plc:aaaaaaaaaaaaaaaaaaaaaaaa#atproto"),  # another DID's
        _legacy_example(publicKeyMultibase=LEGACY_K256[:-1] + "1"),  # not a curve point
        _legacy_example(publicKeyMultibase=LEGACY_K256[:40]),  # cut short
        _legacy_example(type="EcdsaSecp256r1VerificationKey2019"),  # a k256 point as p256
        _differs({"controller": EXAMPLE_DID}),  # an unknown member
    ],
)
def test_a_real_difference_in_a_legacy_document_is_still_one(served: dict[str, Any]) -> None:
    assert not same_document(served, EXAMPLE_DOC)


def test_legacy_documents_pass_the_spot_checks(corpus: Corpus, sync: Audit) -> None:
    log = FakeLog(list(corpus.lines[:300]), corpus.signer, legacy_documents=True)
    with serve(log) as url:
        assert sync(url, spot_checks=20, verifiers=(corpus.signer.verifier,)) == []


def test_a_legacy_document_naming_another_handle_is_a_mismatch(corpus: Corpus, sync: Audit) -> None:
    log = FakeLog(list(corpus.lines[:300]), corpus.signer)
    for did, history in log.histories().items():
        data = normalize([e for e in history if not e.nullified][-1].operation)
        if data is not None:
            doc = legacy_document(did, data)
            log.responses_override[f"/{did}"] = (200, {**doc, "alsoKnownAs": ["at://x.test"]})
    with serve(log) as url:
        found = sync(url, spot_checks=5, verifiers=(corpus.signer.verifier,))
    assert classes(found) == {"served-state-mismatch"}
    assert_evidence_consistent(found, "served-state-mismatch")
    # The standalone checker compares by meaning too: the true legacy document is no claim.
    doctored = orjson.loads(found[0].dumps())
    served = doctored["evidence"]["served"]
    doctored["evidence"]["served"] = {
        **served,
        "alsoKnownAs": doctored["evidence"]["expected"]["alsoKnownAs"],
    }
    with pytest.raises(EvidenceRejected, match="matches the replay"):
        check_finding(doctored)


# 3. No /export/stream


@pytest.mark.parametrize("status", [404, 405])
def test_follow_stops_at_once_without_a_stream(corpus: Corpus, tmp_path: Path, status: int) -> None:
    log = FakeLog(list(corpus.lines[:300]), signer=None, stream_status=status)
    options = AuditOptions(workers=0, progress=False, follow=True, follow_seconds=30, seed=1)
    with serve(log) as url:
        started = time.monotonic()
        outcome = sync_directory(url, tmp_path / "s.sqlite3", options)
    assert time.monotonic() - started < 5  # no retries
    assert follow.NO_STREAM in outcome.notes
    assert stored_findings(tmp_path / "s.sqlite3") == []
    assert _meta(tmp_path / "s.sqlite3", "finished") == 1


def test_other_stream_failures_are_retried_while_following(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unlike 404/405, a 503 handshake is a directory restarting: retried (not a failure)
    until the run stops following; the run then ends as usual."""
    monkeypatch.setattr(follow, "RETRY_MAX_S", 0.1)
    log = FakeLog(list(corpus.lines[:100]), signer=None, stream_status=503)
    options = AuditOptions(workers=0, progress=False, follow=True, follow_seconds=1.5)
    with serve(log) as url:
        outcome = sync_directory(url, tmp_path / "s.sqlite3", options)
    assert follow.NO_STREAM not in outcome.notes
    assert _meta(tmp_path / "s.sqlite3", "finished") == 1


def test_a_future_cursor_again_and_again_fails(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(follow, "MAX_FUTURE_CURSOR", 2)
    monkeypatch.setattr(follow, "RETRY_MAX_S", 0.1)
    log = FakeLog(list(corpus.lines[:100]), signer=None, stream_close_reason="FutureCursor")
    options = AuditOptions(workers=0, progress=False, follow=True, follow_seconds=30)
    with serve(log) as url, pytest.raises(AuditFailed, match="keeps closing .FutureCursor"):
        sync_directory(url, tmp_path / "s.sqlite3", options)


# 4. No /tlog/: the summary says what was not checked


def test_the_summary_says_there_was_no_log_to_check(
    corpus: Corpus,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    log = FakeLog(list(corpus.lines[:100]), signer=None)
    state_path = str(tmp_path / "s.sqlite3")
    vkey = corpus.signer.verifier.key_text
    with serve(log) as url:
        code, _, err = run_cli(
            capsys, "sync", "-d", url, "--state", state_path, "--workers", "0", "--vkey", vkey
        )
    text = " ".join(err.split())
    assert code == 0
    assert "no transparency log (/tlog/), so no checkpoint or consistency checks were" in text
    assert "--vkey unused: the directory serves no /tlog/" in text
    code, out, _ = run_cli(capsys, "report", "--state", state_path)
    assert code == 0 and "no transparency log" in " ".join(out.split())


# 5. compare: states of different logs


def _verified(tmp_path: Path, name: str, lines: list[bytes], signer: Signer | None) -> Path:
    export = tmp_path / f"{name}.jsonl"
    export.write_bytes(b"\n".join(lines) + b"\n")
    notes = () if signer is None else (FakeLog(lines, signer).checkpoint(),)
    options = AuditOptions(workers=0, progress=False, checkpoint_notes=notes)
    verify_file(export, tmp_path / f"{name}.sqlite3", options)
    assert stored_findings(tmp_path / f"{name}.sqlite3") == []
    return tmp_path / f"{name}.sqlite3"


def test_states_of_different_logs_are_not_a_split_view(
    corpus: Corpus, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ours = _verified(tmp_path, "ours", list(corpus.lines[:100]), corpus.signer)
    unrelated = renumber(list(corpus.lines[100:200]))
    theirs = _verified(tmp_path, "theirs", unrelated, Signer.generate("other.test/log"))
    bare = _verified(tmp_path, "bare", unrelated, None)
    with pytest.raises(DifferentLogs, match="of different logs"):
        compare_states(ours, theirs)
    with pytest.raises(DifferentLogs, match="B kept no checkpoint"):
        compare_states(ours, bare)
    for a, b in ((ours, theirs), (bare, ours)):
        code, out, err = run_cli(capsys, "compare", str(a), str(b))
        assert code == 1 and out == "" and "different logs" in err and "SPLIT" not in err
    assert compare_states(ours, ours) == []


# 6. A failed sync names the findings it stored


def test_a_failed_sync_says_how_many_findings_it_stored(
    corpus: Corpus, sync: Audit, tmp_path: Path
) -> None:
    log = FakeLog(list(corpus.lines[:1000]), corpus.signer)
    log.export_override[1000] = list(corpus.lines[990:1000])  # the same old lines forever
    state_path = tmp_path / "state.sqlite3"
    with serve(log) as url:
        with pytest.raises(AuditFailed) as failed:
            sync(url, verifiers=(corpus.signer.verifier,))
        stored = len(stored_findings(state_path))
        assert stored > 1
        assert str(failed.value) == (
            f"/export?after=1000 did not advance the cursor; this run stored {stored} "
            f"findings before failing: plc-audit report --state {state_path}"
        )
        with pytest.raises(AuditFailed) as again:  # nothing new stored: nothing to add
            sync(url, verifiers=(corpus.signer.verifier,))
    assert str(again.value) == (
        "/export?after=1000 did not advance the cursor; it is the same page as before, not "
        "read again"
    )


def test_a_first_run_that_reads_nothing_leaves_no_state_file(
    corpus: Corpus, sync: Any, tmp_path: Path
) -> None:
    """An unreachable or mistyped directory URL: the run fails, and the state file it made
    is removed again (it was left behind, empty); a state that held something stays."""
    nowhere = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AuditFailed):
        sync(nowhere)
    assert list(tmp_path.glob("state.sqlite3*")) == []
    with serve(FakeLog(list(corpus.lines[:50]), corpus.signer)) as url:
        assert sync(url, verifiers=(corpus.signer.verifier,)) == []
    with pytest.raises(AuditFailed):  # the directory went away: its audit is kept
        sync(url, verifiers=(corpus.signer.verifier,))
    assert (tmp_path / "state.sqlite3").exists()
