"""A did:plc directory with a certificate-transparency-style log.

The pure core (``codec``, ``keys``, ``did``, ``operation``, ``rules``, ``document``, ``tlog``)
imports no web, database or HTTP-client library and reads no clock or environment; the
server (``store``, ``service``, ``api``) and the auditor build on it.
"""

__version__ = "0.1.0"
