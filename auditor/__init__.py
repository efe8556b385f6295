"""plc-audit: an independent auditor of did:plc directories (issue 4).

It replays what a directory *published* — ``/export`` pages (or a JSON-lines export file,
or ``/export/stream``), its signed checkpoints and proofs under ``/tlog/``, and the DID
documents it serves — and checks it with nothing but the pure core of ``plc`` (operations,
rules, documents, the RFC 6962 tree and signed notes). It never imports the server's web,
storage, service or policy code (a test asserts it), so a bug there cannot hide itself.

Modules, each one idea, roughly in data-flow order::

    cli           plc-audit sync | verify | compare | report | check-evidence; exit codes
    audit         one run: open state, re-read the prefix, log checks, replay, spot checks
    sources       file / /export lines; LineFetcher for evidence    (client: HTTP calls)
    follow        /export/stream once caught up
    replay        seq checks + entries' tree in the coordinator, batches to the workers
    sequence      seq gaps, repeats, regressions, stream redeliveries
    backdating    createdAt against seq: the high-water mark (backdated-op)
    worker        per-DID validation in worker processes (DIDs sharded, order kept)
    lines         strict parsing of sequenced_op lines
    chain         per-DID state and the did:plc rules one op at a time (go-didplc style)
    tlogcheck     checkpoints: signatures, consistency, roots vs entries
    treestore     the entries' RFC 6962 tree in the state file
    recheck       second read of the export on resume
    spotcheck     served documents, /data and audit logs vs the replay
    compare       split views between two auditors' states
    state         the SQLite state file (schema in its docstring)
    findings      finding classes, severities, evidence shapes
    report        summaries and JSON-lines output          (progress: the rich bar)
    removals      announced-removal allow-lists
    evidence_check  standalone re-verification of a finding's evidence (core only; with
                  evidence_ops and evidence_chain, findings that extend an earlier one)

Misbehaviour is a :class:`~auditor.findings.Finding` (exit code 2); the audit failing is
:class:`~auditor.errors.AuditFailed` (exit code 1).
"""
