"""Certificates for mutual TLS between nodes and clients (docs/wire.md, "Security").

`init` makes a small certificate authority and one certificate per node and per client, so
a cluster can run with `--tls-cert/--tls-key/--tls-ca` right away (`add` makes more with
the same CA); `load_tls` reads a
certificate, finds the identity it proves and builds the TLS contexts of `avm_vm.node.auth`.

Identity: a certificate names its holder by exactly one subject-alternative-name URI,
``avm:node:NAME`` or ``avm:client:NAME`` (`auth.identity_uri`); the common name repeats the
name for people reading it and counts for nothing. Node certificates allow both TLS roles
(extended key usage serverAuth and clientAuth: a node accepts and dials), client
certificates only clientAuth, so a client certificate cannot serve as a node's.
"""

from __future__ import annotations

import datetime
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from avm_vm.node.auth import Tls, identity_uri, tls_contexts
from avm_vm.node.messages import NAME

CA_DAYS = 3650
CA_CERT, CA_KEY = "ca.crt", "ca.key"


class CertError(Exception):
    """A certificate cannot be made or used; the message says why."""


@dataclass(frozen=True)
class Issued:
    """A certificate written by `init`: who it is for and its two files."""

    role: str
    name: str
    cert: Path
    key: Path


def init(directory: Path, nodes: list[str], clients: list[str], days: int) -> list[Issued]:
    """Write ``ca.crt``/``ca.key`` and ``NAME.crt``/``NAME.key`` for each node and client
    into ``directory`` (created if missing; private keys readable by the owner only).
    Refuses to overwrite any file, and names used twice."""
    _check_free(directory, [CA_CERT, CA_KEY], nodes, clients)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "avm test CA")])
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key(), CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    _write(directory / CA_CERT, directory / CA_KEY, ca_cert, ca_key)
    return _issue(directory, ca_cert, ca_key, nodes, clients, days)


def add(directory: Path, nodes: list[str], clients: list[str], days: int) -> list[Issued]:
    """Certificates for more nodes and clients, signed by the CA that `init` wrote into
    ``directory`` (its ``ca.crt`` and ``ca.key``); refuses to overwrite any file."""
    try:
        ca_cert = x509.load_pem_x509_certificate((directory / CA_CERT).read_bytes())
        ca_key = serialization.load_pem_private_key((directory / CA_KEY).read_bytes(), None)
    except OSError as error:
        raise CertError(f"cannot read the CA in {directory}: {error.strerror}") from None
    except (ValueError, TypeError) as error:
        raise CertError(f"the CA in {directory} cannot be used: {error}") from None
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{directory / CA_KEY} is not the elliptic-curve key `init` makes")
    _check_free(directory, [], nodes, clients)
    return _issue(directory, ca_cert, ca_key, nodes, clients, days)


def _check_free(directory: Path, names: list[str], nodes: list[str], clients: list[str]) -> None:
    """Valid, distinct names whose files (and ``names``) do not exist in ``directory``,
    which is created if missing."""
    for name in nodes + clients:
        try:
            NAME.check(name)
        except ValueError as error:
            raise CertError(f"the name {name!r}: {error}") from None
    if len(set(nodes + clients)) != len(nodes + clients):
        raise CertError("each node and client needs a name of its own")
    names = names + [f"{n}.{ext}" for n in nodes + clients for ext in ("crt", "key")]
    directory.mkdir(parents=True, exist_ok=True)
    taken = [name for name in names if (directory / name).exists()]
    if taken:
        raise CertError(f"{directory} already holds {', '.join(taken)}: nothing was written")


def _issue(
    directory: Path,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    nodes: list[str],
    clients: list[str],
    days: int,
) -> list[Issued]:
    """A key and a certificate signed by the CA for each node and client (module docstring)."""
    ca_id = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    issued = []
    for role, names_of_role in (("node", nodes), ("client", clients)):
        for name in names_of_role:
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
                    x509.NameAttribute(NameOID.COMMON_NAME, name),
                ]
            )
            purposes = [ExtendedKeyUsageOID.CLIENT_AUTH]
            if role == "node":
                purposes.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
            uri = x509.UniformResourceIdentifier(identity_uri(role, name))
            cert = (
                _builder(subject, ca_cert.subject, key.public_key(), days)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(_usage(cert_sign=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage(purposes), critical=False)
                .add_extension(x509.SubjectAlternativeName([uri]), critical=False)
                .add_extension(ca_id, critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            paths = directory / f"{name}.crt", directory / f"{name}.key"
            _write(*paths, cert, key)
            issued.append(Issued(role, name, *paths))
    return issued


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks a little behind
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _write(
    cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created with owner-only permissions: the key is never readable by others, not even briefly.
    descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def identity(cert_path: Path) -> tuple[str, str]:
    """The role and name a certificate file proves (its one ``avm:ROLE:NAME`` URI)."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except OSError as error:
        raise CertError(f"cannot read certificate {cert_path}: {error.strerror}") from None
    except ValueError:
        raise CertError(f"{cert_path} is not a PEM certificate") from None
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        uris = [uri for uri in names.get_values_for_type(x509.UniformResourceIdentifier)]
    except x509.ExtensionNotFound:
        uris = []
    ours = [uri.split(":", 2) for uri in uris if uri.startswith("avm:")]
    if len(ours) != 1 or len(ours[0]) != 3 or ours[0][1] not in ("node", "client"):
        raise CertError(
            f"{cert_path} does not name one avm identity (a URI avm:node:NAME or "
            "avm:client:NAME among its subject alternative names)"
        )
    return ours[0][1], ours[0][2]


def load_tls(cert: Path, key: Path, ca: Path, role: str) -> Tls:
    """TLS for a ``role`` ("node" or "client") from its certificate, key and CA files;
    `CertError` when they cannot be used or the certificate is not for ``role``."""
    cert_role, name = identity(cert)
    if cert_role != role:
        hint = "avm certs init --clients NAME" if role == "client" else "avm certs init --nodes"
        raise CertError(
            f"{cert} certifies {cert_role} {name}, but a {role} certificate is needed ({hint})"
        )
    try:
        tls = tls_contexts(cert, key, ca, node=role == "node")
    except ssl.SSLError as error:
        raise CertError(f"cannot use {cert}, {key} and {ca}: {error.reason or error}") from None
    except OSError as error:
        raise CertError(f"cannot read {error.filename or cert}: {error.strerror}") from None
    return Tls(tls.dial, tls.accept, role, name)
