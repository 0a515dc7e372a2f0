"""The one error path of the ``labchat`` command: what a failure looks like, and its exit code.

Every failure is one line on stderr, ``labchat: error: ...``, that names the file, port or
host involved. Exit codes (issue 12):

* 0: done;
* 1: a runtime error (the server is not there, a capture failed, TLS failed);
* 2: a usage error: the command line asks for something that cannot be (argparse's own
  errors, a bad port, a missing input file, a user that exists already);
* 130: Ctrl-C (128 + SIGINT, as a shell reports it).

No traceback unless ``-v``/``--verbose`` or ``LABCHAT_DEBUG=1``.

A subcommand raises `CommandError` or `UsageError` with its message; `run_command` is the one
place that prints them. An exception a subcommand does not translate is turned into one by
`as_command_error`, so a new failure costs one message, never a new print or exit code.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import ssl
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

__all__ = [
    "DEBUG_ENV",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "ArgumentParser",
    "CommandError",
    "Target",
    "UsageError",
    "as_command_error",
    "connect_error",
    "listen_error",
    "port",
    "port_or_zero",
    "report",
    "run_command",
]

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command Ctrl-C ended

#: Set to 1 to see the traceback behind an error (as ``-v``/``--verbose`` does).
DEBUG_ENV = "LABCHAT_DEBUG"


class CommandError(Exception):
    """A subcommand failed at run time: one line on stderr, exit code 1.

    Args:
        message: what failed, naming the file, port or host involved.
    """

    exit_code = EXIT_ERROR


class UsageError(CommandError):
    """The command line asks for something that cannot be: one line on stderr, exit code 2."""

    exit_code = EXIT_USAGE


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises its usage errors as `UsageError` instead of printing and exiting.

    Args:
        unavailable: set for a subcommand whose module failed to import: selecting the
            subcommand raises it (instead of the subcommand silently missing from the CLI).
        *args, **kwargs: as for `argparse.ArgumentParser`.
    """

    def __init__(self, *args: Any, unavailable: CommandError | None = None, **kwargs: Any):
        from .help import HelpFormatter

        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.unavailable = unavailable

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self.unavailable is not None:
            raise self.unavailable
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see `{self.prog} --help`")


def _port(value: str, lowest: int) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        number = -1
    if not lowest <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number ({lowest}-65535)")
    return number


def port(value: str) -> int:
    """argparse ``type=`` for a TCP port: 1-65535 (RFC 6335 section 6; 0 is not a port)."""
    return _port(value, 1)


def port_or_zero(value: str) -> int:
    """argparse ``type=`` for a port to listen on: 0-65535, where 0 lets the kernel pick one."""
    return _port(value, 0)


def _os_message(exc: OSError) -> str:
    """``strerror: filename`` once, not Python's ``[Errno 2] ...: 'filename'``."""
    text = exc.strerror or str(exc)
    name = os.fsdecode(exc.filename) if exc.filename is not None else None
    return f"{name}: {text}" if name and name not in text else text


def as_command_error(exc: BaseException) -> CommandError:
    """The `CommandError` an exception stands for, its message and exit code chosen here.

    Args:
        exc: what a subcommand raised.

    Returns:
        ``exc`` itself if it is a `CommandError`, else a new one (``exc`` as its cause).
    """
    if isinstance(exc, CommandError):
        return exc
    from labchat.auth import AuthError
    from labchat.chatui.view import safe
    from labchat.client import ChatError
    from labchat.diagnose import CertificateFileError

    error: CommandError
    if isinstance(exc, ssl.SSLCertVerificationError):
        error = CommandError(
            f"certificate verification failed: {exc.verify_message or exc} "
            "(does --ca point at the lab CA, and does --server-name match?)"
        )
    elif isinstance(exc, ssl.SSLError):
        error = CommandError(f"TLS failed: {exc.reason or exc}")
    elif isinstance(exc, ChatError):
        error = CommandError(f"the server refused: {safe(exc.code)}: {safe(exc.text)}")
    elif isinstance(exc, ConnectionError):
        error = CommandError(f"connection failed: {exc.strerror or exc}")
    elif isinstance(exc, CertificateFileError | AuthError | ValueError | FileExistsError):
        error = UsageError(str(exc))
    elif isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
        error = UsageError(_os_message(exc))
    elif isinstance(exc, OSError):
        error = CommandError(_os_message(exc))
    else:  # a failure nobody translated yet: still one line, with its kind
        error = CommandError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


# --------------------------------------------------------------------------- connecting

# X509_V_ERR_* codes (OpenSSL's include/openssl/x509_vfy.h) that mean "not signed by a CA
# this client trusts": unable to get issuer (2, 20), self-signed leaf (18) or root (19),
# unable to verify the first certificate (21).
_UNKNOWN_CA_CODES = frozenset({2, 18, 19, 20, 21})
_NOT_YET_VALID, _EXPIRED, _HOSTNAME_MISMATCH, _IP_MISMATCH = 9, 10, 62, 64

# OpenSSL reasons for "we share no TLS version" (whichever side notices first).
_VERSION_REASONS = frozenset(
    {
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNSUPPORTED_PROTOCOL",
        "NO_PROTOCOLS_AVAILABLE",
        "WRONG_SSL_VERSION",
        "VERSION_TOO_LOW",
        "VERSION_TOO_HIGH",
    }
)
# ... and for "what came back is not TLS at all".
_NOT_TLS_REASONS = frozenset(
    {
        "WRONG_VERSION_NUMBER",
        "RECORD_LAYER_FAILURE",
        "PACKET_LENGTH_TOO_LONG",
        "HTTP_REQUEST",
        "UNKNOWN_PROTOCOL",
        "RECORD_TOO_LARGE",
    }
)
# ... and for "the server wants a client certificate (mutual TLS)" or refused ours.
_CLIENT_CERT_REASONS = frozenset(
    {"TLSV13_ALERT_CERTIFICATE_REQUIRED", "SSLV3_ALERT_HANDSHAKE_FAILURE"}
)
_BAD_CLIENT_CERT_REASONS = frozenset(
    {"SSLV3_ALERT_BAD_CERTIFICATE", "TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_CERTIFICATE_EXPIRED"}
)


@dataclass(frozen=True)
class Target:
    """Where a client tried to connect, and how: what a connection error message names.

    Attributes:
        host, port: The server.
        plain: The client spoke plaintext (``--plain``).
        ca: The CA file it verified against (``--ca``).
        server_name: The name it checked in the certificate (``--server-name``; else host).
        tls_version: "1.2" or "1.3" if pinned (``--tls-version``).
        cert: Its client certificate (``--cert``), if any.
        waited: Seconds it waited for the server's greeting before giving up.
    """

    host: str
    port: int
    plain: bool = False
    ca: str | None = None
    server_name: str | None = None
    tls_version: str | None = None
    cert: str | None = None
    waited: float = 5.0

    @property
    def where(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _versions(versions: Sequence[str]) -> str:
    if not versions:
        return "no TLS version labchat speaks"
    return "TLS " + " and ".join(versions) + (" only" if len(versions) == 1 else "")


def _verify_message(exc: ssl.SSLCertVerificationError, t: Target) -> str:
    from labchat.diagnose import probe_server, read_certificates

    code = exc.verify_code
    seen = probe_server(t.host, t.port, server_name=t.server_name).certificate
    name = t.server_name or t.host
    if code in (_EXPIRED, _NOT_YET_VALID) and seen is not None:
        problem = seen.validity_problem() or (exc.verify_message or "not valid now")
        fix = (
            "whoever runs the server makes a new one (`labchat certs --force`) and restarts it"
            if code == _EXPIRED
            else "check this machine's clock, or the clock of the machine that made it"
        )
        return f"the certificate of {t.where} {problem}: {fix}"
    if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        names = seen.names_text() if seen is not None else "other names"
        return (
            f"the certificate of {t.where} is for {names}, not for {name!r}: connect with "
            "--host set to one of those names, or pass --server-name NAME "
            "(the server can add a name with `labchat certs --host NAME --force`)"
        )
    if code in _UNKNOWN_CA_CODES:
        issuer = f" (issued by {seen.issuer!r})" if seen is not None else ""
        try:
            ours = read_certificates(t.ca)[0].subject if t.ca else None
        except (OSError, ValueError):
            ours = None
        if seen is not None and ours == seen.issuer:
            issuer = f" (issued by a CA also named {ours!r}, but another one)"
        return (
            f"the certificate of {t.where}{issuer} is not signed by the CA in {t.ca}: every "
            "`labchat certs` run makes a new CA, so pass --ca with the ca.pem from that "
            "server's certs directory"
        )
    return (
        f"the certificate of {t.where} failed verification: {exc.verify_message or exc} "
        f"(checked against the CA file {t.ca})"
    )


def _tls_message(exc: ssl.SSLError, t: Target) -> str:
    from labchat.diagnose import probe_server

    reason = exc.reason or ""
    if reason in _VERSION_REASONS:
        probe = probe_server(t.host, t.port, server_name=t.server_name)
        ours = _versions([t.tls_version] if t.tls_version else ["1.2", "1.3"])
        theirs = _versions(probe.tls_versions)
        fix = (
            f"use --tls-version {probe.tls_versions[0]}, or leave --tls-version out"
            if len(probe.tls_versions) == 1
            else "leave --tls-version out"
        )
        return (
            f"TLS version mismatch with {t.where}: this client allows {ours}, "
            f"the server {theirs}: {fix}"
        )
    if reason in _NOT_TLS_REASONS:
        probe = probe_server(t.host, t.port, server_name=t.server_name)
        if probe.plaintext_labchat:
            return (
                f"{t.where} speaks plaintext labchat, not TLS: is the server running with "
                "--plain? then add --plain (INSECURE: the chat and passwords cross the "
                "network readable)"
            )
        said = f" (it said {probe.greeting!r})" if probe.greeting else ""
        return f"{t.where} does not speak TLS{said}: is it a labchat server? check --port"
    if reason in _CLIENT_CERT_REASONS:
        return (
            f"{t.where} requires a client certificate (mutual TLS): pass --cert and --key "
            "(made with `labchat certs --client NAME` on the server)"
        )
    if reason in _BAD_CLIENT_CERT_REASONS:
        return (
            f"{t.where} refused the client certificate {t.cert} ({reason}): it must be "
            "signed by the CA the server trusts (its --client-ca) and be valid now"
        )
    return f"TLS with {t.where} failed: {reason or exc}"


def _silence_message(t: Target) -> str:
    from labchat.diagnose import is_listening, probe_server

    if not is_listening(t.host, t.port):
        return (
            f"no answer from {t.where} within {t.waited:g} s: is the address right, and "
            "does no firewall drop the packets?"
        )
    if t.plain:
        # The peer waits for us to speak first: a TLS server waiting for a ClientHello?
        probe = probe_server(
            t.host, t.port, server_name=t.server_name, timeout=1.0, listen_first=False
        )
        if probe.speaks_tls:
            return (
                f"{t.where} speaks TLS ({_versions(probe.tls_versions)}), but this client "
                "used --plain: leave out --plain"
            )
    return (
        f"{t.where} accepted the connection but said nothing for {t.waited:g} s "
        "(a labchat server greets at once): is it a labchat server? check --host and --port"
    )


def _unexpected_message(t: Target) -> str:
    from labchat.diagnose import probe_server

    probe = probe_server(t.host, t.port, server_name=t.server_name, versions=())
    if probe.greeting is None:
        return _silence_message(t)
    if not probe.plaintext_labchat:
        return f"{t.where} is not a labchat server: it said {probe.greeting!r}; check --port"
    return f"{t.where} closed the connection before its greeting: try again"


def connect_error(exc: BaseException, target: Target) -> CommandError:
    """Say why connecting to a server failed, in a sentence that says what to do.

    TLS and protocol failures are explained with what `labchat.diagnose.probe_server` finds
    out about the server (its TLS versions, its certificate's dates and names, whether it
    speaks plaintext): a few extra short connections, made only after a failure.

    Args:
        exc: What `labchat.client.Client` (or the connect before it) raised.
        target: Where and how the client connected.

    Returns:
        The error to raise (``exc`` as its cause); a `CommandError` passes through.
    """
    if isinstance(exc, CommandError):
        return exc
    from labchat import protocol as p
    from labchat.chatui.view import safe
    from labchat.client import ChatError, ConnectionClosed

    t = target
    error: CommandError
    if isinstance(exc, ssl.SSLCertVerificationError):
        error = CommandError(_verify_message(exc, t))
    elif isinstance(exc, ssl.SSLError):
        error = CommandError(_tls_message(exc, t))
    elif isinstance(exc, ChatError) and exc.code == "busy":
        error = CommandError(
            f"{t.where} is full ({safe(exc.text)}): try again in a minute, or ask whoever "
            "runs the server to raise --max-clients"
        )
    elif isinstance(exc, ChatError):
        error = CommandError(
            f"{t.where} refused the connection: {safe(exc.code)}: {safe(exc.text)}"
        )
    elif isinstance(exc, ConnectionRefusedError):
        error = CommandError(
            f"nothing is listening on {t.where} (connection refused): start the server with "
            "`labchat serve`, or check --host and --port"
        )
    elif isinstance(exc, socket.gaierror):
        error = UsageError(f"cannot find the host {t.host!r} ({exc.strerror}): check --host")
    elif isinstance(exc, p.RemoteProtocolError | ConnectionClosed | ConnectionResetError):
        error = CommandError(_unexpected_message(t))  # no HELLO, or not labchat/1 at all
    elif isinstance(exc, TimeoutError | socket.timeout):
        error = CommandError(_silence_message(t))
    elif isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        error = CommandError(f"{t.where} is unreachable ({exc.strerror}): check --host")
    else:
        error = as_command_error(exc)
    error.__cause__ = exc
    return error


def listen_error(exc: OSError, host: str, port: int) -> CommandError:
    """Say why a server could not listen on ``host:port``.

    Args:
        exc: What ``bind()``/``listen()`` raised.
        host, port: The address asked for.

    Returns:
        The error to raise (``exc`` as its cause).
    """
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        error = CommandError(
            f"cannot listen on {where}: the port is in use (another labchat serve?): stop "
            "that one, or choose another --port"
        )
    elif exc.errno == errno.EACCES and port < 1024:
        error = CommandError(
            f"cannot listen on {where}: ports below 1024 need root; choose --port 1024 or above"
        )
    elif exc.errno == errno.EADDRNOTAVAIL:
        error = UsageError(
            f"cannot listen on {where}: {host} is not an address of this machine; check --host"
        )
    else:
        error = CommandError(f"cannot listen on {where}: {exc.strerror or exc}")
    error.__cause__ = exc
    return error


def report(exc: BaseException, *, debug: bool = False) -> int:
    """Print ``exc`` as the one error line (and its traceback when debugging); its exit code.

    Args:
        exc: what went wrong.
        debug: print the traceback first (``-v``, ``--verbose``, ``LABCHAT_DEBUG=1``).

    Returns:
        The exit code: 130 for Ctrl-C, else the error's (1 or 2).
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    error = as_command_error(exc)
    if debug:
        traceback.print_exception(exc)
    print(f"labchat: error: {error}", file=sys.stderr)
    return error.exit_code


def _debug_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def run_command(
    build_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None = None
) -> int:
    """Parse ``argv``, run the chosen subcommand's ``func(args)``, turn any failure into a line.

    Args:
        build_parser: makes the parser; each subcommand sets ``func`` (args -> exit code).
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    args = None
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (Exception, KeyboardInterrupt) as exc:
        wanted = getattr(args, "debug", False) or getattr(args, "verbose", False)
        return report(exc, debug=bool(wanted) or _debug_env())
