"""Key-exchange groups for an `ssl.SSLContext`: X25519, P-256 and P-384 only (issue 11).

Why: OpenSSL 3.0's default list also offers X448, P-521 and the finite-field groups
ffdhe2048 ... ffdhe8192 (RFC 7919). A TLS 1.3 ClientHello that offers only ffdhe8192 makes
the server spend about 140 ms of CPU on one handshake (X25519: 0.5 ms), so eight students
replaying one recorded ClientHello slow every classmate's login to seconds. Mozilla's
"intermediate" profile (server side TLS guidelines 5.7) lists exactly X25519, prime256v1
and secp384r1, for TLS 1.2 and 1.3 alike.

How: Python's `ssl` gained `SSLContext.set_groups()` only in 3.15 (CPython gh-136306); up to
3.14 it has `set_ecdh_curve()`, which takes one curve and cannot even name X25519. OpenSSL
itself has `SSL_CTX_set1_groups_list()` (a macro for `SSL_CTX_ctrl(ctx, 92, 0, list)`, the
same call since OpenSSL 1.1.1). So on older Pythons `set_groups` calls it through `ctypes`:

1. the `SSL_CTX *` is the first field of CPython's `PySSLContext` object, right after the
   object header (`PyObject_HEAD`, whose size is `object.__basicsize__`), in every CPython
   from 3.7 to 3.14;
2. the OpenSSL functions are looked up through the `_ssl` extension module's own handle, so
   they come from the very libssl that `ssl` is linked to (never a second copy);
3. before changing anything the pointer is checked: OpenSSL's `SSL_CTX_get_options()` and
   `SSL_CTX_get_verify_mode()` must return what `ctx.options` and `ctx.verify_mode` say. If
   anything does not match, nothing is written and `GroupsUnavailable` is raised.

An OpenSSL configuration file (`Groups = X25519:P-256:P-384` under `system_default`, through
`OPENSSL_CONF`) would do the same for a whole process, but OpenSSL reads it once, when it
initialises: a Jupyter kernel that imported `ssl` long before a notebook starts a
`labchat.Server` would never see it. The per-context call works in any process, at any time.
"""

from __future__ import annotations

import ctypes
import functools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["MOZILLA_GROUPS", "GroupsUnavailable", "set_groups"]

#: Mozilla intermediate key-exchange groups, in preference order, in OpenSSL's names.
MOZILLA_GROUPS = ("X25519", "P-256", "P-384")

# include/openssl/ssl.h: #define SSL_CTRL_SET_GROUPS_LIST 92 (SSL_CTRL_SET_CURVES_LIST before
# 1.1.1, the same number).
_SSL_CTRL_SET_GROUPS_LIST = 92


class GroupsUnavailable(RuntimeError):
    """The key-exchange groups of a context cannot be set in this Python."""


@dataclass(frozen=True)
class _LibSSL:
    ctrl: Callable[..., Any]
    get_options: Callable[..., Any]
    get_verify_mode: Callable[..., Any]
    clear_errors: Callable[..., Any]


@functools.cache
def _libssl() -> _LibSSL:
    import _ssl  # the extension module behind `ssl`: its handle resolves its own libssl

    try:
        lib = ctypes.CDLL(_ssl.__file__)
        ctrl = lib.SSL_CTX_ctrl
        get_options = lib.SSL_CTX_get_options
        get_verify_mode = lib.SSL_CTX_get_verify_mode
        clear_errors = lib.ERR_clear_error
    except (AttributeError, OSError) as exc:  # static build, Windows, no __file__
        raise GroupsUnavailable(f"cannot reach the OpenSSL that ssl uses: {exc}") from None
    ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
    ctrl.restype = ctypes.c_long
    get_options.argtypes = [ctypes.c_void_p]
    # uint64_t since OpenSSL 3.0, unsigned long before (64 bits on LP64 Linux and macOS).
    get_options.restype = ctypes.c_uint64
    get_verify_mode.argtypes = [ctypes.c_void_p]
    get_verify_mode.restype = ctypes.c_int
    clear_errors.argtypes = []
    clear_errors.restype = None
    return _LibSSL(ctrl, get_options, get_verify_mode, clear_errors)


def _ssl_ctx_pointer(ctx: ssl.SSLContext, lib: _LibSSL) -> int:
    """The `SSL_CTX *` inside *ctx*, checked against what Python reports about it."""
    if type(ctx).__basicsize__ < object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p):
        raise GroupsUnavailable("ssl.SSLContext has an unexpected layout")
    pointer = ctypes.c_void_p.from_address(id(ctx) + object.__basicsize__).value
    if not pointer:
        raise GroupsUnavailable("ssl.SSLContext has no SSL_CTX where one was expected")
    mask = (1 << 64) - 1
    if (lib.get_options(pointer) & mask) != (int(ctx.options) & mask) or lib.get_verify_mode(
        pointer
    ) != int(ctx.verify_mode):
        raise GroupsUnavailable("ssl.SSLContext's SSL_CTX did not pass the consistency check")
    return pointer


def set_groups(ctx: ssl.SSLContext, groups: tuple[str, ...] = MOZILLA_GROUPS) -> str:
    """Allow only *groups* for key exchange on *ctx*, for TLS 1.2 and TLS 1.3.

    Args:
        ctx: The context to change (it must not have made connections yet).
        groups: OpenSSL group names, in preference order.

    Returns:
        How it was done: ``"SSLContext.set_groups"`` (Python 3.15+) or
        ``"SSL_CTX_set1_groups_list"`` (through ctypes, see the module docstring).

    Raises:
        GroupsUnavailable: This Python's ssl module offers no way (e.g. OpenSSL linked
            statically without exported symbols); *ctx* is unchanged.
        ValueError: OpenSSL does not know one of *groups*; *ctx* is unchanged.
    """
    names = ":".join(groups)
    if hasattr(ctx, "set_groups"):  # Python 3.15+ (gh-136306)
        try:
            ctx.set_groups(names)
        except ssl.SSLError as exc:
            raise ValueError(f"OpenSSL refused the groups {names!r}: {exc}") from None
        return "SSLContext.set_groups"
    lib = _libssl()
    pointer = _ssl_ctx_pointer(ctx, lib)
    if lib.ctrl(pointer, _SSL_CTRL_SET_GROUPS_LIST, 0, names.encode("ascii")) != 1:
        # Leave OpenSSL's thread-local error queue empty, or the next ssl call in this thread
        # would report our error as its own.
        lib.clear_errors()
        raise ValueError(f"OpenSSL refused the groups {names!r}")
    return "SSL_CTX_set1_groups_list"
