"""``plc import``: load the history of another did:plc directory (an export file or a live
``/export``) into this one, re-validating every op under the did:plc rules.

- :mod:`plc.importer.lines`: one export line → :class:`~plc.importer.lines.ImportItem` (pure).
- :mod:`plc.importer.sources`: where lines come from: a JSON-lines file or a directory URL.
- :mod:`plc.importer.importer`: validates and commits them in batches.
- :mod:`plc.importer.cli`: the command, with progress and a summary.
"""
