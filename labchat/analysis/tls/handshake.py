"""Handshake message bodies -> the fields a learner looks at (RFC 8446 section 4, RFC 5246 7.4).

Each decoder takes the message body (after the 4-byte type and length) and returns a dict of
plain values: names from the IANA registries, randoms and keys as hex. A field that is not in
the message is left out rather than set to None. Bodies that do not parse raise
:class:`Malformed`; the caller reports them and keeps going.
"""

from __future__ import annotations

import struct
from typing import Any

from .registry import CIPHER_SUITES, GROUPS, SIGNATURE_SCHEMES, VERSIONS, name_of

__all__ = ["HRR_RANDOM", "Malformed", "Reader", "decode_message", "extensions"]

# A ServerHello with this random is a HelloRetryRequest (RFC 8446 section 4.1.3).
HRR_RANDOM = bytes.fromhex("CF21AD74E59A6111BE1D8C021E65B891C2A211167ABB8C5E079E09E2C8A8339C")
# The last 8 bytes of a TLS 1.3 server's random when it negotiates 1.2 or below (4.1.3):
# "DOWNGRD" then 01 (TLS 1.2) or 00 (TLS 1.1 and below).
_DOWNGRADE = {b"DOWNGRD\x01": "TLS 1.2", b"DOWNGRD\x00": "TLS 1.1 or below"}
_PSK_MODES = {0: "psk_ke", 1: "psk_dhe_ke"}
_EXT_SNI, _EXT_GROUPS, _EXT_ALPN, _EXT_ETM, _EXT_EMS = 0, 10, 16, 22, 23
_EXT_TICKET, _EXT_PSK, _EXT_EARLY, _EXT_VERSIONS, _EXT_MODES, _EXT_KEY_SHARE = (
    35,
    41,
    42,
    43,
    45,
    51,
)


class Malformed(ValueError):
    """A handshake message that does not parse."""


class Reader:
    """Bounds-checked reads from a bytes object."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None) -> None:
        self.data, self.pos = data, pos
        self.end = len(data) if end is None else end

    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise Malformed(f"needs {n} bytes, {self.end - self.pos} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return struct.unpack("!H", self.take(2))[0]

    def u24(self) -> int:
        return int.from_bytes(self.take(3), "big")

    def u32(self) -> int:
        return struct.unpack("!I", self.take(4))[0]

    def vec(self, len_bytes: int) -> bytes:
        n = int.from_bytes(self.take(len_bytes), "big")
        return self.take(n)

    def sub(self, len_bytes: int) -> Reader:
        n = int.from_bytes(self.take(len_bytes), "big")
        start = self.pos
        self.take(n)
        return Reader(self.data, start, start + n)


def _u16_list(data: bytes) -> list[int]:
    return list(struct.unpack(f"!{len(data) // 2}H", data[: len(data) // 2 * 2]))


def extensions(r: Reader) -> dict[int, bytes]:
    """Extension type -> body (the first one of a type, as a server would read it)."""
    out: dict[int, bytes] = {}
    if not r.left():
        return out
    block = r.sub(2)
    while block.left():
        etype = block.u16()
        body = block.vec(2)
        out.setdefault(etype, body)
    return out


def _alpn(body: bytes) -> list[str]:
    r = Reader(body).sub(2)
    out = []
    while r.left():
        out.append(r.vec(1).decode("ascii", "replace"))
    return out


def client_hello(body: bytes) -> dict[str, Any]:
    r = Reader(body)
    legacy = r.u16()
    random = r.take(32)
    session_id = r.vec(1)
    suites = _u16_list(r.vec(2))
    r.vec(1)  # compression methods
    ext = extensions(r)
    out: dict[str, Any] = {}
    if _EXT_VERSIONS in ext:
        versions = _u16_list(Reader(ext[_EXT_VERSIONS]).vec(1))
    else:
        versions = [legacy]
    out["versions"] = [name_of(VERSIONS, v) for v in versions]
    out["cipher_suites"] = [name_of(CIPHER_SUITES, c) for c in suites]
    if _EXT_SNI in ext:
        names = Reader(ext[_EXT_SNI]).sub(2)
        while names.left():
            kind, name = names.u8(), names.vec(2)
            if kind == 0:
                out["sni"] = name.decode("ascii", "replace")
                break
    if _EXT_GROUPS in ext:
        out["groups"] = [name_of(GROUPS, g) for g in _u16_list(Reader(ext[_EXT_GROUPS]).vec(2))]
    if _EXT_KEY_SHARE in ext:
        shares = Reader(ext[_EXT_KEY_SHARE]).sub(2)
        groups = []
        while shares.left():
            groups.append(name_of(GROUPS, shares.u16()))
            shares.vec(2)
        out["key_share"] = groups
    if _EXT_ALPN in ext:
        out["alpn"] = _alpn(ext[_EXT_ALPN])
    out["random"] = random.hex()
    if session_id:
        out["session_id"] = session_id.hex()
    if _EXT_MODES in ext:
        out["psk_key_exchange_modes"] = [
            _PSK_MODES.get(m, str(m)) for m in Reader(ext[_EXT_MODES]).vec(1)
        ]
    if _EXT_PSK in ext:
        ids = Reader(ext[_EXT_PSK]).sub(2)
        ages = []
        while ids.left():
            ids.vec(2)
            ages.append(ids.u32())
        out["pre_shared_key"] = {"identities": len(ages), "obfuscated_ticket_age": ages}
    if _EXT_EARLY in ext:
        out["early_data"] = True
    if _EXT_TICKET in ext:
        out["session_ticket"] = len(ext[_EXT_TICKET])
    return out


def server_hello(body: bytes) -> tuple[str, dict[str, Any], dict[int, bytes]]:
    """("ServerHello" or "HelloRetryRequest", fields, extensions)."""
    r = Reader(body)
    legacy = r.u16()
    random = r.take(32)
    session_id = r.vec(1)
    suite = r.u16()
    r.u8()  # compression
    ext = extensions(r)
    hrr = random == HRR_RANDOM
    out: dict[str, Any] = {}
    version = legacy
    if _EXT_VERSIONS in ext and len(ext[_EXT_VERSIONS]) == 2:
        version = struct.unpack("!H", ext[_EXT_VERSIONS])[0]
    out["version"] = name_of(VERSIONS, version)
    out["cipher_suite"] = name_of(CIPHER_SUITES, suite)
    if _EXT_KEY_SHARE in ext:
        share = Reader(ext[_EXT_KEY_SHARE])
        group = name_of(GROUPS, share.u16())
        out["selected_group" if hrr else "key_share"] = group
    if hrr:
        if 44 in ext:
            out["cookie"] = True
        return "HelloRetryRequest", out, ext
    if _EXT_ALPN in ext:
        out["alpn"] = _alpn(ext[_EXT_ALPN])[0]
    out["random"] = random.hex()
    if session_id:
        out["session_id"] = session_id.hex()
    if random[-8:] in _DOWNGRADE and version < 0x0304:
        out["downgrade_protection"] = _DOWNGRADE[random[-8:]]
    if _EXT_PSK in ext and len(ext[_EXT_PSK]) == 2:
        out["pre_shared_key"] = struct.unpack("!H", ext[_EXT_PSK])[0]  # the selected identity
    if _EXT_ETM in ext:
        out["encrypt_then_mac"] = True
    if _EXT_EMS in ext:
        out["extended_master_secret"] = True
    return "ServerHello", out, ext


def _cert_fields(der: bytes) -> dict[str, Any]:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return {"note": "certificate not parsed"}
    out: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out["san"] = [str(v.value) for v in san]
    except (x509.ExtensionNotFound, ValueError):
        pass
    return out


def certificate_list(body: bytes, tls13: bool) -> list[bytes]:
    """The DER certificates of a Certificate message body, the sender's own first.

    RFC 5246 section 7.4.2 (a list of ASN.1Cert<1..2^24-1>) and RFC 8446 section 4.4.2 (a
    request context first, and extensions after each certificate).
    """
    r = Reader(body)
    if tls13:
        r.vec(1)  # certificate_request_context
    certs = r.sub(3)
    ders = []
    while certs.left():
        ders.append(bytes(certs.vec(3)))
        if tls13:
            certs.vec(2)  # per-certificate extensions
    return ders


def certificate(body: bytes, tls13: bool) -> dict[str, Any]:
    ders = certificate_list(body, tls13)
    out: dict[str, Any] = {}
    if ders:
        out.update(_cert_fields(ders[0]))
    out["chain_length"] = len(ders)
    return out


def new_session_ticket(body: bytes, tls13: bool) -> dict[str, Any]:
    r = Reader(body)
    if not tls13:
        return {"lifetime": r.u32(), "ticket_length": len(r.vec(2))}
    out: dict[str, Any] = {"lifetime": r.u32(), "age_add": r.u32()}
    r.vec(1)  # ticket_nonce
    out["ticket_length"] = len(r.vec(2))
    ext = extensions(r)
    if _EXT_EARLY in ext and len(ext[_EXT_EARLY]) == 4:
        out["max_early_data_size"] = struct.unpack("!I", ext[_EXT_EARLY])[0]
    return out


def decode_message(name: str, body: bytes, tls13: bool, kx: str = "") -> dict[str, Any]:
    """The fields of one handshake message (see the module docstring).

    Args:
        name: the message type's name; body: the message after its 4-byte header.
        tls13: the connection negotiated TLS 1.3 (Certificate and tickets differ).
        kx: the TLS 1.2 key exchange from the cipher suite ("RSA", "ECDHE", "DHE"...).
    """
    if name == "ClientHello":
        return client_hello(body)
    if name in ("ServerHello", "HelloRetryRequest"):
        return server_hello(body)[1]
    if name == "Certificate":
        return certificate(body, tls13)
    if name == "NewSessionTicket":
        return new_session_ticket(body, tls13)
    if name == "EncryptedExtensions":
        ext = extensions(Reader(body))
        return {"alpn": _alpn(ext[_EXT_ALPN])[0]} if _EXT_ALPN in ext else {}
    if name == "CertificateVerify" or (name == "ServerKeyExchange" and not body[:1] == b"\x03"):
        if name == "CertificateVerify" and len(body) >= 2:
            scheme = struct.unpack("!H", body[:2])[0]
            return {"signature_scheme": name_of(SIGNATURE_SCHEMES, scheme)}
        return {}
    if name == "ServerKeyExchange":  # ECDHE: curve_type 3 = named_curve (RFC 8422 5.4)
        return {"group": name_of(GROUPS, struct.unpack("!H", body[1:3])[0])}
    if name == "ClientKeyExchange":
        if kx == "RSA" or kx.startswith("DH"):  # 2-byte length (RFC 5246 7.4.7)
            key = Reader(body).vec(2)
        else:  # ECDHE: one length byte, then the public point (RFC 8422 section 5.7)
            key = Reader(body).vec(1)
        return {"public_key_len": len(key), "public_key": key.hex()}
    if name == "KeyUpdate" and body:
        return {"request_update": bool(body[0])}
    return {}
