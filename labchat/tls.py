"""One function per ``ssl.SSLContext``: :func:`server_context` and :func:`client_context`.

Both start from ``ssl.create_default_context`` (the CPython ``ssl`` docs' advice), then:

* refuse anything older than TLS 1.2 and, if asked, pin one version (``"1.2"`` or ``"1.3"``) so a
  lab can capture exactly that handshake;
* restrict TLS 1.2 to the Mozilla "intermediate" AEAD suites (TLS 1.3 suites are all AEAD);
* on the server, restrict key exchange to X25519, P-256 and P-384 (`labchat.tlsgroups`);
* advertise the ALPN protocol id ``labchat/1`` (`ALPN_PROTOCOL`), on both sides;
* optionally write a key log (the NSS ``SSLKEYLOGFILE`` format) that lets Wireshark or scapy
  decrypt a capture. Whoever reads it can read the chat: a new file is created 0600 with
  ``O_EXCL|O_NOFOLLOW``, and an existing one must be a regular 0600 file of ours, never a
  symbolic link (`KeylogError` otherwise).

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
    "ALPN_PROTOCOL",
    "MOZILLA_INTERMEDIATE_CIPHERS",
    "InsecureTLSWarning",
    "KeyPermissionError",
    "KeylogError",
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

#: The ALPN protocol id of labchat's line protocol (RFC 7301, Application-Layer Protocol
#: Negotiation). TLS hides the chat, but the ClientHello is sent in the clear: with this id in
#: it, a TLS terminator or proxy can route the connection, and Wireshark or `labchat.analysis`
#: can tell what runs inside, without the keys. It is not in IANA's ALPN registry (RFC 7301
#: section 6): a lab protocol.
#: The server also serves clients that offer no ALPN, or only other ids (``h2``, an
#: ``openssl s_client -alpn h2``): it then selects nothing and the handshake goes on. RFC 7301
#: section 3.2 would have it refuse with a fatal no_application_protocol alert; CPython's ssl
#: does not, and we keep it so, because issue 13 asks that clients without ALPN (a bare
#: ``ssl`` client, ``openssl s_client``, older labchat) still work, and labchat/1 is the only
#: protocol on the port anyway. Checked in tests/test_alpn.py.
ALPN_PROTOCOL = "labchat/1"

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


class KeylogError(PermissionError):
    """A key log file that is not safe to write TLS secrets into.

    Raised for a symbolic link (even a dangling one), something that is not a regular file,
    a file another user owns, and a file group or others may read. The message names the
    file and what to do; nothing was written.
    """

    def __init__(self, path: StrPath, problem: str) -> None:
        self.message = f"refusing key log {os.fspath(path)}: {problem}"
        super().__init__(errno.EACCES, self.message, os.fspath(path))

    def __str__(self) -> str:
        return self.message


def _has_control_character(text: str) -> bool:
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in text)


def _prepare_keylog(path: StrPath) -> tuple[int, int] | None:
    """Create *path* 0600, or check an existing one; return its (device, inode).

    Whoever reads a key log can decrypt every session in it, so the file must be a regular
    file of ours that only we can read. OpenSSL (through CPython) later opens it by name,
    in append mode: the checks here are what stop it from following a link planted in /tmp
    to somebody else's file, or appending to a file another user can read.
    """
    name = os.fspath(path)
    if _has_control_character(name):
        raise ValueError(f"key log file name {name!r} contains a control character")
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    # O_NONBLOCK: opening a FIFO for writing would otherwise wait for a reader forever.
    flags = os.O_WRONLY | os.O_APPEND | nofollow | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_NONBLOCK", 0)
    try:
        # O_EXCL: a new file, 0600 from its first byte; O_EXCL also fails on any symlink,
        # dangling or not, so a link's target is never created.
        fd = os.open(name, flags | os.O_CREAT | os.O_EXCL, 0o600)
        created = True
    except FileExistsError:
        try:
            fd = os.open(name, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP or os.path.islink(name):
                raise KeylogError(name, "it is a symbolic link") from None
            if exc.errno == errno.ENXIO:  # a FIFO or socket without a reader
                raise KeylogError(name, "it is not a regular file") from None
            raise
        created = False
    try:
        st = os.fstat(fd)
        if os.path.islink(name):  # no O_NOFOLLOW on this platform
            raise KeylogError(name, "it is a symbolic link")
        if not stat.S_ISREG(st.st_mode):
            raise KeylogError(name, "it is not a regular file")
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise KeylogError(name, f"it belongs to user id {st.st_uid}, not to you")
        if created and hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)  # the umask may have taken bits away, never added: be exact
        elif os.name != "nt" and stat.S_IMODE(st.st_mode) & 0o077:
            mode = stat.S_IMODE(st.st_mode)
            raise KeylogError(
                name,
                f"it has mode {mode:#o}, so others could read the session keys. "
                f"Fix it with: chmod 600 {name}",
            )
        return (st.st_dev, st.st_ino) if os.name != "nt" else None
    finally:
        os.close(fd)


def _set_keylog(ctx: ssl.SSLContext, path: StrPath) -> None:
    identity = _prepare_keylog(path)
    ctx.keylog_filename = os.fspath(path)
    if identity is None:
        return
    # CPython has just opened the file again by name: make sure it is still the file we
    # checked, not a link swapped in between.
    try:
        st = os.lstat(path)
        same = stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == identity
    except OSError:
        same = False
    if not same:
        ctx.keylog_filename = None
        raise KeylogError(path, "it was replaced while it was being opened")


def _common_setup(ctx: ssl.SSLContext, tls_version: str | None, keylog: StrPath | None) -> None:
    pinned = parse_tls_version(tls_version)
    ctx.minimum_version = pinned or ssl.TLSVersion.TLSv1_2
    if pinned is not None:
        ctx.maximum_version = pinned
    # Python's own default list also allows ECDHE with AES-CBC-SHA256/SHA384 on TLS 1.2.
    ctx.set_ciphers(MOZILLA_INTERMEDIATE_CIPHERS)
    # CRIME (CVE-2012-4929); create_default_context already sets it, say so explicitly.
    ctx.options |= ssl.OP_NO_COMPRESSION
    # On a server, CPython's ALPN callback answers a client whose list has no labchat/1
    # (or that sends no list) with SSL_TLSEXT_ERR_NOACK: no ALPN in the reply, no alert.
    ctx.set_alpn_protocols([ALPN_PROTOCOL])
    if keylog is not None:
        _set_keylog(ctx, keylog)


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
    and 1.3, in this process whenever it runs (see `labchat.tlsgroups`). The server selects
    ALPN `ALPN_PROTOCOL` when a client offers it, and still serves a client that offers no
    ALPN or only other ids (then nothing is selected).

    Args:
        certfile: The server certificate (PEM; may also hold the key and intermediates).
        keyfile: The server private key (PEM), or None if ``certfile`` holds it.
        tls_version: ``"1.2"`` or ``"1.3"`` to allow only that version; None allows both.
        keylog: Append TLS secrets to this file so captures can be decrypted (created 0600;
            an existing file must be a regular 0600 file of yours, not a symbolic link).
        client_ca: Require a client certificate signed by this CA (mutual TLS).
        check_key_permissions: Refuse a key file that group/others can read.

    Returns:
        A new server-side ``ssl.SSLContext``.

    Raises:
        KeyPermissionError: If the key file is readable by group/others.
        KeylogError: If *keylog* is a symbolic link, not yours, or readable by others.
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
    certificate's subjectAltName (DNS names and IP addresses). The ClientHello offers ALPN
    `ALPN_PROTOCOL`; ``selected_alpn_protocol()`` on the socket says whether the server chose it.

    Args:
        cafile: The CA to trust (the lab's ``certs/ca.pem``); None uses the system store.
        tls_version: ``"1.2"`` or ``"1.3"`` to allow only that version; None allows both.
        keylog: Append TLS secrets to this file so captures can be decrypted (created 0600;
            an existing file must be a regular 0600 file of yours, not a symbolic link).
        insecure: Skip certificate and host name verification (emits InsecureTLSWarning).
        certfile: A client certificate for mutual TLS.
        keyfile: Its private key, or None if ``certfile`` holds it.
        check_key_permissions: Refuse a client key file that group/others can read.

    Returns:
        A new client-side ``ssl.SSLContext``.

    Raises:
        KeyPermissionError: If the client key file is readable by group/others.
        KeylogError: If *keylog* is a symbolic link, not yours, or readable by others.
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
