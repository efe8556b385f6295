"""The auditor's own failure: the audit could not be carried out (exit code 1).

Misbehaviour of the directory is never an exception here: it is a
:class:`auditor.findings.Finding`. :class:`AuditFailed` means the auditor could not check
(network failure, unreadable file, bad arguments, a state file for another source).
"""

from __future__ import annotations


class AuditFailed(Exception):
    """The audit could not be completed; ``str(exc)`` says why (shown to the user)."""


class DirectoryUnreachable(AuditFailed):
    """The directory did not answer, or answered 429 or 5xx after the retries: a failure
    that may pass (a restart, an outage), which ``sync --follow`` waits out."""
