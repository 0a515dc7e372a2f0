"""One function per ``ssl.SSLContext``: :func:`server_context` and :func:`client_context`.

Both start from ``ssl.create_default_context`` (the CPython ``ssl`` docs' advice), then:

* refuse anything older than TLS 1.2 and, if asked, pin one version (``"1.2"`` or ``"1.3"``) so a
  lab can capture exactly that handshake;
* restrict TLS 1.2 to the Mozilla "intermediate" AEAD suites (TLS 1.3 suites are all AEAD);
* on the server, restrict key exchange to X25519, P-256 and P-384 (`labchat.tlsgroups`);
* optionally write a key log (the NSS ``SSLKEYLOGFILE`` format) that lets Wireshark or scapy
  decrypt a capture. The file is created 0600 first: whoever reads it can read the chat.

The functions hold no state; the caller owns the returned context.
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
import stat
import warnings

from .tlsgroups import MOZILLA_GROUPS, GroupsUnavailable, set_groups

__all__ = [
    "MOZILLA_INTERMEDIATE_CIPHERS",
    "InsecureTLSWarning",
    "KeyPermissionError",
    "check_private_key_permissions",
    "client_context",
    "parse_tls_version",
    "server_context",
]

StrPath = str | os.PathLike[str]

log = logging.getLogger("labchat.tls")

#: Mozilla "intermediate" TLS 1.2 cipher suites, https://ssl-config.mozilla.org/ (server side
#: TLS guidelines v5.7), without the three DHE-RSA suites: we ship no dhparams and OpenSSL's
#: built-in groups add nothing that ECDHE lacks. Only ECDHE key exchange (forward secrecy) and
#: AEAD ciphers (AES-GCM, ChaCha20-Poly1305): no CBC (Lucky13, padding oracles), no static RSA
#: key exchange (no forward secrecy, ROBOT). This list only governs TLS 1.2; TLS 1.3 suites
#: are set separately by OpenSSL and are all AEAD.
MOZILLA_INTERMEDIATE_CIPHERS = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    ]
)

_VERSIONS = {
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}


class InsecureTLSWarning(UserWarning):
    """Certificate verification was switched off (``client_context(insecure=True)``)."""


class KeyPermissionError(PermissionError):
    """A private key file can be read by users other than its owner.

    Attributes:
        filename: The key file.
        mode: Its permission bits (e.g. ``0o644``).
    """

    def __init__(self, path: StrPath, mode: int) -> None:
        name = os.fspath(path)
        self.message = (
            f"private key {name} has mode {mode:#o}: group or others can read it. "
            f"Fix it with: chmod 600 {name}"
        )
        super().__init__(errno.EACCES, self.message, name)
        self.mode = mode

    def __str__(self) -> str:
        # OSError's own str() would print "[Errno 13] ...: 'path'", repeating the path.
        return self.message


def check_private_key_permissions(path: StrPath) -> None:
    """Refuse a private key that group or others may read (like OpenSSH does).

    A no-op on Windows, whose ACLs do not map onto POSIX mode bits.

    Args:
        path: The key file.

    Raises:
        KeyPermissionError: If ``mode & 0o077`` is not zero.
        FileNotFoundError: If the file does not exist.
    """
    if os.name == "nt":
        return
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        raise KeyPermissionError(path, mode)


def parse_tls_version(value: str | None) -> ssl.TLSVersion | None:
    """Turn ``"1.2"``/``"1.3"`` (e.g. from ``--tls-version``) into an ``ssl.TLSVersion``.

    Args:
        value: ``"1.2"``, ``"1.3"`` or None (no pinning).

    Returns:
        The version, or None for None.

    Raises:
        ValueError: For anything else (older versions are deliberately not offered).
    """
    if value is None:
        return None
    try:
        return _VERSIONS[str(value).strip()]
    except KeyError:
        raise ValueError(
            f"unsupported TLS version {value!r}: choose 1.2 or 1.3 "
            "(TLS 1.0 and 1.1 are deprecated by RFC 8996)"
        ) from None


def _create_keylog(path: StrPath) -> None:
    # OpenSSL (through CPython) opens the key log in append mode with the process umask, which
    # usually means 0644. Create it 0600 ourselves first; tighten an existing file too.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def _common_setup(ctx: ssl.SSLContext, tls_version: str | None, keylog: StrPath | None) -> None:
    pinned = parse_tls_version(tls_version)
    ctx.minimum_version = pinned or ssl.TLSVersion.TLSv1_2
    if pinned is not None:
        ctx.maximum_version = pinned
    # Python's own default list also allows ECDHE with AES-CBC-SHA256/SHA384 on TLS 1.2.
    ctx.set_ciphers(MOZILLA_INTERMEDIATE_CIPHERS)
    # CRIME (CVE-2012-4929); create_default_context already sets it, say so explicitly.
    ctx.options |= ssl.OP_NO_COMPRESSION
    if keylog is not None:
        _create_keylog(keylog)
        ctx.keylog_filename = os.fspath(keylog)


def _restrict_groups(ctx: ssl.SSLContext) -> None:
    # OpenSSL 3's default groups also include X448, P-521 and ffdhe2048-8192: a ClientHello
    # offering only ffdhe8192 costs the server ~140 ms of CPU (X25519: 0.5 ms), which one
    # student can replay in a loop (issue 11). Mozilla intermediate lists these three.
    # Only the server side: the client's ClientHello, and so every lab capture, stays as is.
    try:
        set_groups(ctx, MOZILLA_GROUPS)
    except GroupsUnavailable as exc:
        log.warning(
            "key exchange stays at OpenSSL's default groups (ffdhe handshakes are expensive): %s",
            exc,
        )


def server_context(
    certfile: StrPath,
    keyfile: StrPath | None,
    *,
    tls_version: str | None = None,
    keylog: StrPath | None = None,
    client_ca: StrPath | None = None,
    check_key_permissions: bool = True,
) -> ssl.SSLContext:
    """Build the server's TLS context.

    Key exchange is limited to X25519, P-256 and P-384 (Mozilla intermediate) for TLS 1.2
    and 1.3, in this process whenever it runs (see `labchat.tlsgroups`).

    Args:
        certfile: The server certificate (PEM; may also hold the key and intermediates).
        keyfile: The server private key (PEM), or None if ``certfile`` holds it.
        tls_version: ``"1.2"`` or ``"1.3"`` to allow only that version; None allows both.
        keylog: Append TLS secrets to this file (created 0600) so captures can be decrypted.
        client_ca: Require a client certificate signed by this CA (mutual TLS).
        check_key_permissions: Refuse a key file that group/others can read.

    Returns:
        A new server-side ``ssl.SSLContext``.

    Raises:
        KeyPermissionError: If the key file is readable by group/others.
        ValueError: If ``tls_version`` is not ``"1.2"``/``"1.3"``.
        ssl.SSLError: If the certificate and key do not load or do not match.
        FileNotFoundError: If a file is missing.
    """
    if check_key_permissions:
        check_private_key_permissions(keyfile if keyfile is not None else certfile)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    _common_setup(ctx, tls_version, keylog)
    _restrict_groups(ctx)
    ctx.load_cert_chain(certfile, keyfile)
    if client_ca is not None:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cafile=client_ca)
    return ctx


def client_context(
    *,
    cafile: StrPath | None = None,
    tls_version: str | None = None,
    keylog: StrPath | None = None,
    insecure: bool = False,
    certfile: StrPath | None = None,
    keyfile: StrPath | None = None,
    check_key_permissions: bool = True,
) -> ssl.SSLContext:
    """Build a client's TLS context (certificate and host name verification on).

    Pass the host name as ``server_hostname=`` to ``wrap_socket``; it is checked against the
    certificate's subjectAltName (DNS names and IP addresses).

    Args:
        cafile: The CA to trust (the lab's ``certs/ca.pem``); None uses the system store.
        tls_version: ``"1.2"`` or ``"1.3"`` to allow only that version; None allows both.
        keylog: Append TLS secrets to this file (created 0600) so captures can be decrypted.
        insecure: Skip certificate and host name verification (emits InsecureTLSWarning).
        certfile: A client certificate for mutual TLS.
        keyfile: Its private key, or None if ``certfile`` holds it.
        check_key_permissions: Refuse a client key file that group/others can read.

    Returns:
        A new client-side ``ssl.SSLContext``.

    Raises:
        KeyPermissionError: If the client key file is readable by group/others.
        ValueError: If ``tls_version`` is not ``"1.2"``/``"1.3"``.
        ssl.SSLError: If a certificate or key does not load.
        FileNotFoundError: If a file is missing.
    """
    ctx = ssl.create_default_context(cafile=cafile)
    _common_setup(ctx, tls_version, keylog)
    if insecure:
        ctx.check_hostname = False  # must come before CERT_NONE
        ctx.verify_mode = ssl.CERT_NONE
        warnings.warn(
            "TLS certificate verification is off (insecure): the connection is encrypted but "
            "not authenticated, so anyone in the middle can read and change the chat",
            InsecureTLSWarning,
            stacklevel=2,
        )
    if certfile is not None:
        if check_key_permissions:
            check_private_key_permissions(keyfile if keyfile is not None else certfile)
        ctx.load_cert_chain(certfile, keyfile)
    return ctx
