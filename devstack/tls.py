"""The local stack's own certificate authority and the server certificate every database serves.

``<stack>/tls/`` holds ``ca.pem`` (what clients verify against, as they would the RDS global
bundle), ``server.pem`` and ``server-key.pem`` (valid for DNS ``localhost`` and IP 127.0.0.1).
They are made once with the ``cryptography`` package and kept; each server gets its own copy of
the key, owned by the user it runs as (PostgreSQL refuses a key others can read).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

__all__ = ["StackCertificates", "ensure_certificates", "install_server_files", "make_certificates"]

VALID_DAYS = 3650
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1",)


@dataclass(frozen=True)
class StackCertificates:
    """Paths of the stack's CA certificate and server certificate and key."""

    ca: Path
    cert: Path
    key: Path


def ensure_certificates(stack_dir: Path) -> StackCertificates:
    """The stack's CA and server certificate under ``<stack>/tls``, made on first use."""
    folder = stack_dir / "tls"
    files = StackCertificates(folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    if files.ca.is_file() and files.cert.is_file() and files.key.is_file():
        return files
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    ca_pem, cert_pem, key_pem = make_certificates()
    # Written next to their final names and renamed, so a crash never leaves half a set.
    for path, data, mode in (
        (files.key, key_pem, 0o600),
        (files.cert, cert_pem, 0o644),
        (files.ca, ca_pem, 0o644),
    ):
        part = path.with_suffix(".part")
        part.write_bytes(data)
        part.chmod(mode)
        part.replace(path)
    return files


def install_server_files(
    files: StackCertificates, folder: Path, owner: str | None
) -> tuple[Path, Path, Path]:
    """Copy the CA, certificate and key into a server's `folder` (key mode 0600, owned by `owner`)."""
    folder.mkdir(parents=True, exist_ok=True)
    targets = (folder / "ca.pem", folder / "server.pem", folder / "server-key.pem")
    for source, target in zip((files.ca, files.cert, files.key), targets, strict=True):
        shutil.copyfile(source, target)
        target.chmod(0o600 if target.name.endswith("key.pem") else 0o644)
        if owner is not None and os.geteuid() == 0:
            shutil.chown(target, owner, owner)
    return targets


def make_certificates(
    names: tuple[str, ...] = SERVER_NAMES,
    addresses: tuple[str, ...] = SERVER_ADDRESSES,
    ca_name_text: str = "lakehouse-cdc local stack CA",
) -> tuple[bytes, bytes, bytes]:
    """A new CA and a server certificate it signed for `names` and `addresses`, as PEM:
    (CA certificate, server certificate, server key). Tests make a second, foreign CA with it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=VALID_DAYS)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name_text)])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (names or addresses)[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem
