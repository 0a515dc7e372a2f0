"""A lab certificate authority and leaf certificates, built in memory with ``cryptography``.

Shaped like python-trio/trustme: ``CA()`` makes a self-signed root, ``ca.issue_cert(*identities)``
makes a leaf, and ``configure_trust(ctx)`` / ``configure_cert(ctx)`` change an ``ssl.SSLContext``
the caller owns. Nothing here shells out to ``openssl``.

Every certificate is built so that it also verifies under ``ssl.VERIFY_X509_STRICT`` (the
default flag of Python 3.13's ``create_default_context``): the CA carries a critical
BasicConstraints, a critical KeyUsage and a SubjectKeyIdentifier; each leaf carries an
AuthorityKeyIdentifier that matches it (RFC 5280 sections 4.2.1.1, 4.2.1.2, 4.2.1.3, 4.2.1.9).

The files that :func:`create_lab_certs` writes::

    certs/ca.pem       the lab CA certificate (give it to clients: ``--cafile certs/ca.pem``)
    certs/ca.key       the lab CA private key (mode 0600; signs client certificates later)
    certs/server.pem   the server certificate (localhost, 127.0.0.1, ::1 and any extra hosts)
    certs/server.key   the server private key (mode 0600)
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import os
import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "CA",
    "DEFAULT_SERVER_IDENTITIES",
    "KEY_TYPES",
    "Blob",
    "LabCertPaths",
    "LeafCert",
    "create_lab_certs",
    "issue_client_cert",
    "lab_cert_paths",
]

StrPath = str | os.PathLike[str]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

#: Accepted ``key_type`` values: ECDSA P-256 (small, fast, the default, as in trustme) and
#: RSA-2048 (the smallest RSA size that Debian's OpenSSL SECLEVEL=2 accepts).
KEY_TYPES = ("ec", "rsa")

#: What a server certificate is valid for when no other hosts are given: the names a lab
#: client on the same machine uses.
DEFAULT_SERVER_IDENTITIES = ("localhost", "127.0.0.1", "::1")

#: Default validity of the CA and of every leaf, in days.
DEFAULT_VALID_DAYS = 365

# Backdate notBefore a little: a VM or container whose clock runs a few minutes behind the
# machine that made the certificate would otherwise see "certificate is not yet valid".
_CLOCK_SKEW = _dt.timedelta(hours=1)

# Client certificate names become file names (client-NAME.pem): keep them boring. fullmatch,
# not match with "$": "$" also matches before a final newline, which let "nl\n" through.
_CLIENT_NAME_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}")


def _refuse_control_characters(what: str, text: str) -> None:
    """Names end up in certificates, file names, logs and terminals: no control characters
    (C0 including TAB and newline, DEL, C1), no bidi controls or line separators."""
    for ch in text:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code <= 0x9F or 0x202A <= code <= 0x202E:
            break
        if 0x2066 <= code <= 0x2069 or code in (0x2028, 0x2029):
            break
    else:
        return
    raise ValueError(f"{what} {text!r} contains a control character (U+{code:04X})")


class Blob:
    """PEM bytes: a certificate, a chain or a private key.

    Args:
        data: The PEM-encoded bytes.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data

    def bytes(self) -> bytes:
        """Return the PEM data.

        Returns:
            The PEM-encoded bytes.
        """
        return self._data

    def write_to_path(self, path: StrPath, *, private: bool = False) -> None:
        """Write the PEM data to ``path``, replacing any existing file.

        Args:
            path: Where to write.
            private: When true the file is created with mode 0600 (owner read/write only). The
                mode is given to ``os.open`` so the secret is never readable by others, not
                even for a moment; an existing file is tightened to 0600 before writing.

        Raises:
            OSError: If the file cannot be written.
        """
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0)
        fd = os.open(path, flags, 0o600 if private else 0o644)
        try:
            if private and hasattr(os, "fchmod"):
                # O_CREAT's mode only applies to a new file: tighten a pre-existing one.
                os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as f:
                fd = -1  # now owned by f
                f.write(self._data)
        finally:
            if fd != -1:
                os.close(fd)

    def __repr__(self) -> str:
        first = self._data.split(b"\n", 1)[0].decode("ascii", "replace")
        return f"<Blob {first} ({len(self._data)} bytes)>"


def _generate_key(key_type: str) -> PrivateKey:
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key_type {key_type!r}: use one of {', '.join(KEY_TYPES)}")


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _identity_to_general_name(identity: str) -> x509.GeneralName:
    """Turn ``"127.0.0.1"``/``"::1"`` into an IP SAN and anything else into a DNS SAN."""
    if not isinstance(identity, str) or not identity:
        raise ValueError(f"identity must be a non-empty str, not {identity!r}")
    _refuse_control_characters("identity", identity)
    try:
        return x509.IPAddress(ipaddress.ip_address(identity))
    except ValueError:
        pass
    try:
        identity.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(
            f"identity {identity!r} is not ASCII: give internationalised names in A-label "
            "form (xn--...)"
        ) from None
    return x509.DNSName(identity)


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _as_utc(value: _dt.datetime) -> _dt.datetime:
    # cryptography treats naive datetimes as UTC; make that explicit so comparisons work.
    return value.replace(tzinfo=_dt.timezone.utc) if value.tzinfo is None else value


class LeafCert:
    """A certificate issued by a :class:`CA`, with its private key.

    Attributes:
        private_key_pem: The leaf's private key (PKCS#8 PEM, unencrypted).
        cert_chain_pems: The leaf certificate first, then any intermediates (none for the lab
            CA: the root itself is never sent, the peer must already trust it).
        private_key_and_cert_chain_pem: Key and chain in one blob, as some tools want.
    """

    def __init__(self, private_key_pem: bytes, server_cert_pem: bytes, chain_to_ca: list[bytes]):
        self.private_key_pem = Blob(private_key_pem)
        self.cert_chain_pems = [Blob(pem) for pem in [server_cert_pem, *chain_to_ca]]
        self.private_key_and_cert_chain_pem = Blob(
            private_key_pem + server_cert_pem + b"".join(chain_to_ca)
        )

    @property
    def certificate(self) -> x509.Certificate:
        """The leaf certificate as a ``cryptography`` object (to inspect its fields)."""
        return x509.load_pem_x509_certificate(self.cert_chain_pems[0].bytes())

    def configure_cert(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` present this certificate (server side, or a client in mutual TLS).

        ``ssl`` only loads certificates from files, so the PEM goes through a private
        temporary file that is removed again at once.

        Args:
            ctx: The context to change.
        """
        import tempfile

        with tempfile.TemporaryDirectory(prefix="labchat-") as tmp:
            path = Path(tmp) / "key-and-chain.pem"
            self.private_key_and_cert_chain_pem.write_to_path(path, private=True)
            ctx.load_cert_chain(path)


class CA:
    """A self-signed lab certificate authority.

    Args:
        key_type: ``"ec"`` (ECDSA P-256, the default) or ``"rsa"`` (RSA-2048).
        organization: The Organization (O) of the CA's subject and issuer name.
        valid_days: How long the CA certificate is valid, counted from now.

    Raises:
        ValueError: If ``key_type`` is unknown, ``valid_days`` is not positive, or
            ``organization`` contains a control character.
    """

    def __init__(
        self,
        *,
        key_type: str = "ec",
        organization: str = "labchat lab CA",
        valid_days: int = DEFAULT_VALID_DAYS,
    ) -> None:
        if valid_days <= 0:
            raise ValueError(f"valid_days must be positive, not {valid_days}")
        _refuse_control_characters("organization", organization)
        key = _generate_key(key_type)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} root"),
            ]
        )
        now = _now()
        public_key = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW)
            .not_valid_after(now + _dt.timedelta(days=valid_days))
            # pathlen 0: this CA signs leaves only, never another CA.
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,  # OCSP responses, as in trustme
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(key, hashes.SHA256())
        )
        self._init(cert, key)

    def _init(self, cert: x509.Certificate, key: PrivateKey) -> None:
        self._certificate = cert
        self._private_key = key

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> CA:
        """Load a CA written earlier (``ca.pem`` and ``ca.key``).

        Args:
            cert_pem: The CA certificate, PEM.
            key_pem: The CA private key, PEM (unencrypted).

        Returns:
            A CA that can issue further certificates.

        Raises:
            ValueError: If the PEM cannot be parsed, the certificate is not a CA, or the key
                does not belong to the certificate.
        """
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
            raise ValueError(f"unsupported CA key type {type(key).__name__}")
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            bc = None
        if bc is None or not bc.ca:
            raise ValueError("certificate is not a CA (BasicConstraints CA:TRUE missing)")
        if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ):
            raise ValueError("the private key does not belong to the CA certificate")
        self = cls.__new__(cls)
        self._init(cert, key)
        return self

    @property
    def certificate(self) -> x509.Certificate:
        """The CA certificate as a ``cryptography`` object (to inspect its fields)."""
        return self._certificate

    @property
    def cert_pem(self) -> Blob:
        """The CA certificate, PEM: put it in a trust store (``cafile=``)."""
        return Blob(_cert_pem(self._certificate))

    @property
    def private_key_pem(self) -> Blob:
        """The CA private key, PEM (unencrypted): keep it secret, write it with private=True."""
        return Blob(_key_pem(self._private_key))

    def issue_cert(
        self,
        *identities: str,
        common_name: str | None = None,
        client: bool = False,
        key_type: str | None = None,
        not_before: _dt.datetime | None = None,
        not_after: _dt.datetime | None = None,
    ) -> LeafCert:
        """Issue a leaf certificate signed by this CA.

        Args:
            identities: Host names (``"localhost"``) and IP addresses (``"127.0.0.1"``,
                ``"::1"``) the certificate is valid for; they become its subjectAltName, the
                only field TLS clients match against (RFC 6125 section 6.4.4).
            common_name: The subject Common Name, shown by tools; defaults to the first
                identity. Clients do not match it against the host name.
            client: Mark the certificate for TLS client authentication (extended key usage
                clientAuth) instead of serverAuth.
            key_type: ``"ec"`` or ``"rsa"``; defaults to the CA's own key type.
            not_before: Start of validity; defaults to an hour ago (clock skew).
            not_after: End of validity; defaults to 365 days from now, but never after the CA.
                A date in the past makes an expired certificate (for tests and lessons).

        Returns:
            The certificate with its private key.

        Raises:
            ValueError: If there is neither an identity nor a common name, an identity is
                invalid, ``key_type`` is unknown, or ``not_before`` is not before ``not_after``.
        """
        if not identities and common_name is None:
            raise ValueError("give at least one identity or a common_name")
        if common_name is not None:
            _refuse_control_characters("common name", common_name)
        if key_type is None:
            key_type = "rsa" if isinstance(self._private_key, rsa.RSAPrivateKey) else "ec"
        sans = [_identity_to_general_name(identity) for identity in identities]
        key = _generate_key(key_type)
        public_key = key.public_key()

        now = _now()
        start = _as_utc(not_before) if not_before is not None else now - _CLOCK_SKEW
        if not_after is not None:
            end = _as_utc(not_after)
        else:
            end = min(now + _dt.timedelta(days=DEFAULT_VALID_DAYS), self._ca_not_after())
        if start >= end:
            if not_before is None:
                # An expired certificate was asked for: start a day before it ends.
                start = end - _dt.timedelta(days=1)
            else:
                raise ValueError(f"not_before ({start}) must be before not_after ({end})")

        subject = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, self._organization())]
        cn = common_name if common_name is not None else identities[0]
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))

        ca_ski = self._certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(subject))
            .issuer_name(self._certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    # RSA key exchange encrypts the premaster secret to the key. Our cipher
                    # list never uses it, but tools expect the bit on RSA server keys.
                    key_encipherment=key_type == "rsa",
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH]
                ),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
        )
        if sans:
            # Non-critical: the subject is not empty (RFC 5280 section 4.2.1.6).
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._private_key, hashes.SHA256())
        return LeafCert(_key_pem(key), _cert_pem(cert), [])

    def configure_trust(self, ctx: ssl.SSLContext) -> None:
        """Make ``ctx`` trust certificates issued by this CA.

        Args:
            ctx: The context to change (a client context, or a server context doing mutual TLS).
        """
        ctx.load_verify_locations(cadata=self.cert_pem.bytes().decode("ascii"))

    def _ca_not_after(self) -> _dt.datetime:
        return self._certificate.not_valid_after_utc

    def _organization(self) -> str:
        attrs = self._certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        return str(attrs[0].value) if attrs else "labchat lab CA"


@dataclass(frozen=True)
class LabCertPaths:
    """Where :func:`create_lab_certs` puts the lab's files."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def lab_cert_paths(directory: StrPath = "certs") -> LabCertPaths:
    """Return the lab certificate file paths in ``directory`` (no file is touched).

    Args:
        directory: The certificate directory.

    Returns:
        The paths of ``ca.pem``, ``ca.key``, ``server.pem`` and ``server.key``.
    """
    d = Path(directory)
    return LabCertPaths(
        directory=d,
        ca_cert=d / "ca.pem",
        ca_key=d / "ca.key",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
    )


def _refuse_overwrite(paths: Iterable[Path]) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise FileExistsError(
            f"refusing to overwrite {', '.join(existing)}: pass --force "
            "(force=True) to replace them"
        )


def create_lab_certs(
    directory: StrPath = "certs",
    *,
    hosts: Iterable[str] = (),
    key_type: str = "ec",
    force: bool = False,
) -> LabCertPaths:
    """Create a lab CA and a server certificate and write them to ``directory``.

    Args:
        directory: Where to write; created if missing.
        hosts: Extra host names or IP addresses for the server certificate, on top of
            ``localhost``, ``127.0.0.1`` and ``::1``.
        key_type: ``"ec"`` (ECDSA P-256) or ``"rsa"`` (RSA-2048), for the CA and the server.
        force: Replace existing files.

    Returns:
        The paths written. Private keys are mode 0600.

    Raises:
        FileExistsError: If any of the files exists and ``force`` is false (nothing is written).
        ValueError: If ``key_type`` or a host is invalid, or ``directory`` contains a control
            character.
    """
    _refuse_control_characters("certificate directory", os.fspath(directory))
    paths = lab_cert_paths(directory)
    if not force:
        _refuse_overwrite([paths.ca_cert, paths.ca_key, paths.server_cert, paths.server_key])
    identities = list(dict.fromkeys([*DEFAULT_SERVER_IDENTITIES, *hosts]))
    ca = CA(key_type=key_type)
    server = ca.issue_cert(*identities, key_type=key_type)
    paths.directory.mkdir(parents=True, exist_ok=True)
    ca.private_key_pem.write_to_path(paths.ca_key, private=True)
    ca.cert_pem.write_to_path(paths.ca_cert)
    server.private_key_pem.write_to_path(paths.server_key, private=True)
    server.cert_chain_pems[0].write_to_path(paths.server_cert)
    return paths


def issue_client_cert(directory: StrPath, name: str, *, force: bool = False) -> tuple[Path, Path]:
    """Issue a client certificate for mutual TLS, signed by the lab CA in ``directory``.

    Args:
        directory: The directory holding ``ca.pem`` and ``ca.key`` (from create_lab_certs).
        name: The client's name (letters, digits, ``_``, ``-``, ``.``); it becomes the
            certificate's Common Name and the file names ``client-NAME.pem``/``.key``.
        force: Replace existing files.

    Returns:
        ``(cert_path, key_path)``; the key is mode 0600.

    Raises:
        ValueError: If ``name`` is not a safe file name part (control characters included),
            or the CA files are invalid.
        FileNotFoundError: If the CA files are missing (run create_lab_certs first).
        FileExistsError: If the client files exist and ``force`` is false.
    """
    _refuse_control_characters("client name", name)
    if not _CLIENT_NAME_RE.fullmatch(name):
        raise ValueError(f"invalid client name {name!r}: use 1-64 letters, digits, '_', '-' or '.'")
    _refuse_control_characters("certificate directory", os.fspath(directory))
    paths = lab_cert_paths(directory)
    cert_path = paths.directory / f"client-{name}.pem"
    key_path = paths.directory / f"client-{name}.key"
    if not force:
        _refuse_overwrite([cert_path, key_path])
    ca = CA.from_pem(paths.ca_cert.read_bytes(), paths.ca_key.read_bytes())
    leaf = ca.issue_cert(common_name=name, client=True)
    leaf.private_key_pem.write_to_path(key_path, private=True)
    leaf.cert_chain_pems[0].write_to_path(cert_path)
    return cert_path, key_path
