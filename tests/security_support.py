"""Helpers for the security tests: API tokens, a throwaway PKI."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Tokens:
    """One fresh token per role, random per test run (so a log line can only contain one by
    leaking it)."""

    producer: str
    worker: str
    admin: str

    @classmethod
    def fresh(cls) -> Tokens:
        return cls(producer=f"prod-{secrets.token_hex(16)}", worker=f"work-{secrets.token_hex(16)}",
                   admin=f"admn-{secrets.token_hex(16)}")

    @property
    def env(self) -> str:
        """The ``FORGE_TOKENS`` value configuring all three."""
        return f"ingest:producer:{self.producer},fleet:worker:{self.worker},ops:admin:{self.admin}"

    def all(self) -> tuple[str, str, str]:
        return self.producer, self.worker, self.admin


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


# -- a throwaway PKI ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate for 127.0.0.1/localhost, a client certificate, and
    a second CA that signed nothing the broker trusts."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def make_pki(folder: Path) -> Pki:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def builder(subject: str, issuer: x509.Name, pub: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(issuer)
                .public_key(pub).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=1)))

    def ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        k = key()
        cert = (builder(cn, name(cn), k.public_key())
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()),
                               critical=False)
                .sign(k, hashes.SHA256()))
        return k, cert

    def leaf(cn: str, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
             usage: x509.ObjectIdentifier, sans: list[x509.GeneralName] | None
             ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        k = key()
        b = (builder(cn, ca_cert.subject, k.public_key())
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                 ca_key.public_key()), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return k, b.sign(ca_key, hashes.SHA256())

    def write(path: Path, data: bytes) -> Path:
        path.write_bytes(data)
        return path

    def pem_cert(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    def pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    ca_key, ca_cert = ca("Forge Test CA")
    _, other_cert = ca("Some Other CA")
    s_key, s_cert = leaf("localhost", ca_key, ca_cert, ExtendedKeyUsageOID.SERVER_AUTH,
                         [x509.DNSName("localhost"),
                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    c_key, c_cert = leaf("forge-test-client", ca_key, ca_cert, ExtendedKeyUsageOID.CLIENT_AUTH, None)
    return Pki(ca=write(folder / "ca.pem", pem_cert(ca_cert)),
               server_cert=write(folder / "server.pem", pem_cert(s_cert)),
               server_key=write(folder / "server.key", pem_key(s_key)),
               client_cert=write(folder / "client.pem", pem_cert(c_cert)),
               client_key=write(folder / "client.key", pem_key(c_key)),
               other_ca=write(folder / "other-ca.pem", pem_cert(other_cert)))
