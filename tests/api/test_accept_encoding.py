"""``Accept-Encoding`` as RFC 9110 §12.5.3 reads it: entry bundles are gzipped only for a
request that accepts gzip (design.md decision 5)."""

from __future__ import annotations

import pytest

from plc.api.responses import accepts_gzip


@pytest.mark.parametrize(
    ("header", "gzip"),
    [
        ("gzip", True),
        ("GZIP", True),
        ("gzip, identity", True),
        ("br;q=1.0, gzip;q=0.5, *;q=0", True),
        ("x-gzip", True),
        ("*", True),
        ("identity;q=0, *", True),
        ("gzip;q=0.001", True),
        ("", False),
        ("identity", False),
        ("br, deflate", False),
        ("gzip;q=0", False),
        ("gzip;q=0.000, identity", False),
        ("gzip; q=0 , *", False),  # a coding named explicitly outranks *
        ("*;q=0", False),
        ("gzip;q=abc", False),
        ("gzip;q=1.5", False),
        ("gzip;q=-1", False),
        ("gzipped", False),
        ("nogzip", False),
    ],
)
def test_gzip_is_accepted_only_with_a_positive_weight(header: str, gzip: bool) -> None:
    assert accepts_gzip(header) is gzip
