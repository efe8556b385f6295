"""HTTPS as in production: the resolver connects to the checked IP address, sends the handle as
TLS SNI and verifies the certificate against the handle (not the IP)."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from plc.resolve import HandleNotFound, IdentityResolver
from tests.resolve.conftest import DID_A, WELL_KNOWN, MemoryPlcSource, SettingsFactory
from tests.resolve.servers import LocalDns, LocalHttp

pytestmark = pytest.mark.anyio


def self_signed(name: str) -> tuple[bytes, bytes]:
    """PEM certificate (SAN = ``name``) and PEM private key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class TlsServer:
    def __init__(self, tmp: Path) -> None:
        cert, key = self_signed("secure.test")
        (tmp / "cert.pem").write_bytes(cert)
        (tmp / "key.pem").write_bytes(key)
        self.sni_names: list[str | None] = []
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")

        def remember(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            self.sni_names.append(name)

        server_context.sni_callback = remember
        self.client_context = ssl.create_default_context(cadata=cert.decode())
        self.http = LocalHttp("127.0.0.1", tls=server_context)


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    server = TlsServer(tmp_path)
    server.http.start()
    yield server
    server.http.stop()


async def test_https_connects_to_checked_address_with_sni(
    tls_server: TlsServer, dns: LocalDns, make_settings: SettingsFactory
) -> None:
    dns.zone.a("secure.test", "127.0.0.1")
    dns.zone.a("impostor.test", "127.0.0.1")
    tls_server.http.route("secure.test", WELL_KNOWN, body=DID_A.encode())
    tls_server.http.route("impostor.test", WELL_KNOWN, body=DID_A.encode())
    settings = make_settings(handle_http_scheme="https", handle_http_port=tls_server.http.port)
    resolver = IdentityResolver(settings, MemoryPlcSource(), ssl_context=tls_server.client_context)
    assert await resolver.resolve_handle("secure.test", verify=False) == DID_A
    assert "secure.test" in tls_server.sni_names
    # same address, but the certificate does not name this handle: refused before any request
    with pytest.raises(HandleNotFound) as err:
        await resolver.resolve_handle("impostor.test", verify=False)
    assert "TransportFailure" in err.value.reason
    assert tls_server.http.count("impostor.test") == 0
    assert tls_server.http.count("secure.test", WELL_KNOWN) == 1
