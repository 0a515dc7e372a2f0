"""Facts behind an error message: what a certificate file holds, and what a server speaks.

OpenSSL reports failures in its own words (``KEY_VALUES_MISMATCH``, ``PEM lib``,
``WRONG_VERSION_NUMBER``, ``TLSV1_ALERT_PROTOCOL_VERSION``) and never names the file, the
dates or the names involved. This module finds those facts so an error can be a sentence
(issue 12): `labchat.cli.errors` phrases them; nothing here prints.

* Certificate files: `read_certificates`, `check_key_pair` and `check_server_certificate`
  raise `CertificateFileError`, whose message names the file and what is wrong with it.
* Servers: `probe_server` connects a few times *without verifying anything* and reports what
  the other side speaks: a plaintext greeting, which TLS versions it accepts, and the
  certificate it shows. It is only used to explain a failure that already happened, never to
  decide whether to trust a server.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

__all__ = [
    "CertificateFileError",
    "CertificateInfo",
    "ServerProbe",
    "check_key_pair",
    "check_server_certificate",
    "format_time",
    "is_listening",
    "probe_server",
    "read_certificates",
]

StrPath = str | os.PathLike[str]

#: Seconds the probe waits for a server to speak first. A plaintext labchat server sends its
#: HELLO as soon as it accepts; a TLS server (or anything else that waits) stays silent.
GREETING_WAIT = 1.0

#: The TLS versions labchat speaks, in the order the probe tries them.
TLS_VERSIONS = ("1.2", "1.3")

_PROBE_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}

# The first byte of every TLS record that starts a conversation: a handshake (22) or an alert
# (21) record (RFC 8446 section 5.1). A server that speaks first with anything else is not TLS.
_TLS_RECORD_TYPES = (0x15, 0x16)


class CertificateFileError(ValueError):
    """A certificate or key file cannot be used; the message names the file and why.

    Attributes:
        path: The file at fault.
    """

    def __init__(self, path: StrPath, message: str) -> None:
        super().__init__(message)
        self.path = Path(path)


@dataclass(frozen=True)
class CertificateInfo:
    """What a person needs to know about one certificate.

    Attributes:
        subject: The subject's Common Name (or the whole subject if it has none).
        issuer: The issuer's Common Name (or the whole issuer).
        names: The DNS names and IP addresses of its subjectAltName, the only names a TLS
            client matches (RFC 6125 section 6.4.4).
        not_before: Start of validity (UTC).
        not_after: End of validity (UTC).
        is_ca: Whether it may sign other certificates (BasicConstraints cA).
    """

    subject: str
    issuer: str
    names: tuple[str, ...]
    not_before: _dt.datetime
    not_after: _dt.datetime
    is_ca: bool = False

    @classmethod
    def from_x509(cls, cert: x509.Certificate) -> CertificateInfo:
        """Read the fields of a ``cryptography`` certificate.

        Args:
            cert: The certificate.

        Returns:
            Its summary.
        """
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            names = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
                str(ip) for ip in san.get_values_for_type(x509.IPAddress)
            )
        except x509.ExtensionNotFound:
            names = ()
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
            is_ca = bool(bc.ca)
        except x509.ExtensionNotFound:
            is_ca = False
        return cls(
            subject=_common_name(cert.subject),
            issuer=_common_name(cert.issuer),
            names=names,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            is_ca=is_ca,
        )

    @classmethod
    def from_der(cls, der: bytes) -> CertificateInfo:
        """Read a DER certificate (what ``SSLSocket.getpeercert(binary_form=True)`` returns)."""
        return cls.from_x509(x509.load_der_x509_certificate(der))

    def validity_problem(self, now: _dt.datetime | None = None) -> str | None:
        """``"expired on ..."`` or ``"is not valid before ..."`` (with the dates), or None.

        Args:
            now: The time to check against (default: now, UTC).
        """
        now = now or _dt.datetime.now(_dt.timezone.utc)
        span = f"valid {format_time(self.not_before)} to {format_time(self.not_after)}"
        if now > self.not_after:
            return f"expired on {format_time(self.not_after)} ({span})"
        if now < self.not_before:
            return f"is not valid before {format_time(self.not_before)} ({span})"
        return None

    def names_text(self) -> str:
        """The subjectAltName entries as ``localhost, 127.0.0.1``, or a note that there are none."""
        return ", ".join(self.names) if self.names else "no subjectAltName (no host names)"


def format_time(when: _dt.datetime) -> str:
    """``2026-11-29 21:55 UTC``: minutes are enough to compare with a clock."""
    return when.astimezone(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _common_name(name: x509.Name) -> str:
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(cns[0].value) if cns else name.rfc4514_string()


def _read(path: StrPath, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(2, f"{what} {os.fspath(path)} not found", os.fspath(path)) from None
    except IsADirectoryError:
        raise CertificateFileError(path, f"{what} {os.fspath(path)} is a directory") from None
    except OSError as exc:
        raise CertificateFileError(
            path, f"cannot read {what} {os.fspath(path)}: {exc.strerror or exc}"
        ) from None


def read_certificates(path: StrPath, *, what: str = "certificate file") -> list[CertificateInfo]:
    """Every certificate in a PEM file, in order.

    Args:
        path: The file (a CA bundle, a server certificate with its chain, ...).
        what: How the message names the file ("CA file", "server certificate").

    Returns:
        At least one certificate.

    Raises:
        FileNotFoundError: The file does not exist (the message names it).
        CertificateFileError: It cannot be read, or holds no PEM certificate.
    """
    return [CertificateInfo.from_x509(c) for c in _load_certificates(path, what)]


def _load_certificates(path: StrPath, what: str) -> list[x509.Certificate]:
    """The certificates of a PEM file; `read_certificates` says what each error means."""
    data = _read(path, what)
    name = os.fspath(path)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        hint = " (it holds a private key)" if b"PRIVATE KEY-----" in data else ""
        raise CertificateFileError(
            path, f"{what} {name} holds no PEM certificate (-----BEGIN CERTIFICATE-----){hint}"
        )
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise CertificateFileError(
            path, f"{what} {name} is not a valid PEM certificate: {exc}"
        ) from None
    return certs


def _load_key(path: StrPath, what: str):  # -> a cryptography private key
    data = _read(path, what)
    name = os.fspath(path)
    if b"PRIVATE KEY-----" not in data:
        raise CertificateFileError(path, f"{what} {name} holds no PEM private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise CertificateFileError(
            path, f"{what} {name} is encrypted with a passphrase; labchat needs an unencrypted key"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateFileError(
            path, f"{what} {name} is not a valid private key: {exc}"
        ) from None


def _public_der(key) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_key_pair(
    certfile: StrPath, keyfile: StrPath | None = None, *, what: str = "certificate"
) -> CertificateInfo:
    """Check that a certificate and a private key belong together.

    Args:
        certfile: The certificate (PEM; its first certificate is the leaf).
        keyfile: Its private key, or None if *certfile* holds the key too.
        what: How the message names the certificate ("server certificate").

    Returns:
        The leaf certificate's summary.

    Raises:
        FileNotFoundError: A file does not exist.
        CertificateFileError: A file is not PEM, the key is encrypted, or the key belongs to
            another certificate (what OpenSSL calls ``KEY_VALUES_MISMATCH``).
    """
    data_path = keyfile if keyfile is not None else certfile
    key_what = "private key" if keyfile is not None else f"{what} (with its key)"
    cert = _load_certificates(certfile, what)[0]
    key = _load_key(data_path, key_what)
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        raise CertificateFileError(
            data_path,
            f"{what} {os.fspath(certfile)} does not match the private key "
            f"{os.fspath(data_path)}: the key belongs to another certificate",
        )
    return CertificateInfo.from_x509(cert)


def check_server_certificate(
    certfile: StrPath, keyfile: StrPath | None = None, *, now: _dt.datetime | None = None
) -> CertificateInfo:
    """Everything a server should know about its certificate before it listens.

    Args:
        certfile: The server certificate (PEM).
        keyfile: Its private key, or None if *certfile* holds it.
        now: The time to check validity against (default: now).

    Returns:
        The certificate's summary (for a log line: names and end of validity).

    Raises:
        FileNotFoundError: A file does not exist.
        CertificateFileError: A file is not PEM, the key does not match, or the certificate
            is expired or not yet valid (the message has the dates).
    """
    info = check_key_pair(certfile, keyfile, what="server certificate")
    problem = info.validity_problem(now)
    if problem is not None:
        raise CertificateFileError(certfile, f"server certificate {os.fspath(certfile)} {problem}")
    return info


# --------------------------------------------------------------------------- servers


@dataclass(frozen=True)
class ServerProbe:
    """What a server at some address speaks, found without verifying anything.

    Attributes:
        reachable: A TCP connection could be made.
        greeting: The first line the server sent before we said anything (a plaintext
            labchat server's ``HELLO labchat/1 ...``), or None if it stayed silent.
        tls_versions: The TLS versions ("1.2", "1.3") it completed a handshake with.
        certificate: The certificate it showed, or None.
    """

    reachable: bool
    greeting: str | None = None
    tls_versions: tuple[str, ...] = ()
    certificate: CertificateInfo | None = None

    @property
    def speaks_tls(self) -> bool:
        """It completed at least one TLS handshake."""
        return bool(self.tls_versions)

    @property
    def plaintext_labchat(self) -> bool:
        """It greeted us in plaintext labchat/1 (a ``labchat serve --plain``)."""
        return self.greeting is not None and self.greeting.startswith(("HELLO ", "ERR "))


def _greeting(host: str, port: int, timeout: float) -> tuple[bool, str | None]:
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return False, None
    with sock:
        sock.settimeout(min(timeout, GREETING_WAIT))
        try:
            data = sock.recv(512)
        except OSError:  # silent (a TLS server waits for our ClientHello), or reset
            return True, None
    if not data or data[0] in _TLS_RECORD_TYPES:
        return True, None
    line = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    # Shown to a person in an error message: nothing from the network may steer the terminal.
    return True, "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in line)[:80]


def _handshake(
    host: str, port: int, version: str, server_name: str | None, timeout: float
) -> bytes | None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False  # a probe only looks; it never trusts what it sees
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = _PROBE_VERSIONS[version]
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sni = server_name or (host if not _is_ip(host) else None)
            with ctx.wrap_socket(raw, server_hostname=sni) as tls:
                return tls.getpeercert(binary_form=True) or b""
    except (OSError, ValueError):
        return None


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


def probe_server(
    host: str,
    port: int,
    *,
    server_name: str | None = None,
    timeout: float = 2.0,
    listen_first: bool = True,
    versions: tuple[str, ...] = TLS_VERSIONS,
) -> ServerProbe:
    """Find out what the server at ``host:port`` speaks (a few short connections).

    Nothing is verified and nothing is sent but TLS handshakes: the probe exists to explain a
    failure (wrong --plain, a version mismatch, an expired certificate), not to connect.

    Args:
        host: The server's host name or address.
        port: Its port.
        server_name: The name to send as SNI (default: *host* unless it is an address).
        timeout: Seconds for each connection.
        listen_first: First connect and listen for `GREETING_WAIT` seconds: a server that
            speaks first (a plaintext labchat server) is not probed for TLS. False when the
            caller already knows the server stays silent.
        versions: The TLS versions to try a handshake with.

    Returns:
        What was learnt; ``reachable`` is False if not even TCP connected.
    """
    if listen_first:
        reachable, greeting = _greeting(host, port, timeout)
        if not reachable:
            return ServerProbe(False)
        if greeting is not None:
            return ServerProbe(True, greeting=greeting)
    accepted = []
    certificate = None
    for version in versions:
        der = _handshake(host, port, version, server_name, timeout)
        if der is None:
            continue
        accepted.append(version)
        if der and certificate is None:
            try:
                certificate = CertificateInfo.from_der(der)
            except ValueError:
                pass
    reachable = listen_first or bool(accepted) or is_listening(host, port, timeout)
    return ServerProbe(reachable, tls_versions=tuple(accepted), certificate=certificate)


def is_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host:port`` is accepted (closed again at once)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True
