"""TLS dissection (scapy's TLS layer over TCPSession reassembly)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ..capture.pcapng import strip_secrets
from .connection import Capture, Connection
from .facts import C2S, S2C, TLSMessage
from .reading import looks_like_tls, scapy_module

__all__ = ["attach_tls"]

_RECORD_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data"}
_NAME_FIXES = {
    "HelloRetryRequest": "HelloRetryRequest",
    "EncryptedExtensions": "EncryptedExtensions",
}


def _msg_name(msg) -> str:
    name = type(msg).__name__
    for prefix in ("TLS13", "TLS"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    return _NAME_FIXES.get(name, name)


def _cipher_name(code: int) -> str:
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites

    return _tls_cipher_suites.get(code, f"0x{code:04x}")


def _group_name(code: int) -> str:
    from scapy.layers.tls.crypto.groups import _tls_named_groups

    return _tls_named_groups.get(code, f"0x{code:04x}")


def _version_name(code: int) -> str:
    from scapy.layers.tls.basefields import _tls_version

    return _tls_version.get(code, f"0x{code:04x}")


def _ext(msg, cls_name: str):
    for e in getattr(msg, "ext", None) or []:
        if type(e).__name__ == cls_name:
            return e
    return None


def _cert_fields(der: bytes) -> dict:
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    out: dict[str, Any] = {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
    }
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        out["san"] = [str(v.value) for v in san]
    except x509.ExtensionNotFound:
        pass
    return out


def _msg_fields(name: str, msg) -> dict:
    """The few fields of a handshake message a learner should look at."""
    out: dict[str, Any] = {}
    if name == "ClientHello":
        sv = _ext(msg, "TLS_Ext_SupportedVersion_CH")
        versions = list(sv.versions) if sv is not None and sv.versions else [msg.version]
        out["versions"] = [_version_name(v) for v in versions]
        out["cipher_suites"] = [_cipher_name(c) for c in (msg.ciphers or [])]
        sni = _ext(msg, "TLS_Ext_ServerName")
        if sni is not None and sni.servernames:
            out["sni"] = sni.servernames[0].servername.decode("ascii", "replace")
        groups = _ext(msg, "TLS_Ext_SupportedGroups")
        if groups is not None:
            out["groups"] = [_group_name(g) for g in groups.groups or []]
        ks = _ext(msg, "TLS_Ext_KeyShare_CH")
        if ks is not None:
            out["key_share"] = [_group_name(k.group) for k in ks.client_shares or []]
    elif name in ("ServerHello", "HelloRetryRequest"):
        sv = _ext(msg, "TLS_Ext_SupportedVersion_SH")
        out["version"] = _version_name(sv.version if sv is not None else msg.version)
        out["cipher_suite"] = _cipher_name(msg.cipher)
        ks = _ext(msg, "TLS_Ext_KeyShare_SH")
        if ks is not None and getattr(ks, "server_share", None) is not None:
            out["key_share"] = _group_name(ks.server_share.group)
    elif name == "Certificate":
        entries = getattr(msg, "certs", None) or []
        if entries:
            first = entries[0]
            cert = first.cert[1] if hasattr(first, "cert") else first[1]
            out.update(_cert_fields(bytes(cert.der)))
            out["chain_length"] = len(entries)
    elif name == "ClientKeyExchange":
        body = bytes(msg)[4:]
        if body:
            # ECDHE: one length byte then the public point (RFC 8422 section 5.7).
            key = body[1 : 1 + body[0]]
            out["public_key_len"] = len(key)
            out["public_key"] = key.hex()
    elif name == "ServerKeyExchange":
        params = getattr(msg, "params", None)
        curve = getattr(params, "named_curve", None)
        if curve is not None:
            out["group"] = _group_name(curve)
    elif name == "Alert":
        from scapy.layers.tls.record import _tls_alert_description, _tls_alert_level

        out["level"] = _tls_alert_level.get(msg.level, msg.level)
        out["description"] = _tls_alert_description.get(msg.descr, msg.descr)
    return out


def _record_messages(layer, ccs_seen: bool) -> tuple[list[tuple[str, Any]], bool, bool, str]:
    """(name, msg) pairs of one record, whether encrypted on the wire, decrypted, record type."""
    sc = scapy_module()
    from scapy.layers.tls.record_tls13 import TLS13

    rtype = int(getattr(layer, "type", 23) or 23)
    if isinstance(layer, TLS13):
        inner = getattr(layer, "inner", None)
        if inner is None or not getattr(inner, "msg", None):
            return [("ApplicationData", None)], True, False, "application_data"
        return [(_msg_name(m), m) for m in inner.msg], True, True, "application_data"
    msgs = list(getattr(layer, "msg", None) or [])
    encrypted = rtype == 23 or (ccs_seen and rtype in (21, 22))
    decrypted = encrypted and bool(getattr(layer, "iv", b"") or getattr(layer, "mac", b""))
    out = []
    for m in msgs:
        if isinstance(m, sc.Raw) or type(m).__name__ == "_TLSEncryptedContent":
            out.append(("EncryptedHandshake" if rtype == 22 else _RECORD_TYPES.get(rtype, "?"), m))
        else:
            out.append((_msg_name(m), m))
    if not out:
        out.append((_RECORD_TYPES.get(rtype, f"type {rtype}"), None))
    return out, encrypted, decrypted, _RECORD_TYPES.get(rtype, str(rtype))


def attach_tls(cap: Capture, conns: list[Connection], keylog, embedded_keys: bool) -> None:
    """Dissect (and with a key log, decrypt) the TLS records of ``conns``."""
    sc = scapy_module()
    from scapy.layers.tls.record import TLS
    from scapy.layers.tls.record_sslv2 import SSLv2
    from scapy.layers.tls.record_tls13 import TLS13

    # scapy only decodes TLS on 443 unless told. The bindings are global, so they are undone
    # below: left in place, every later scapy read of these ports would dissect TLS (and reuse
    # TLS session state), which changes what unrelated code sees as the raw payload.
    bound = sorted({c.server[1] for c in conns} - {443})
    for port in bound:
        sc.bind_layers(sc.TCP, TLS, sport=port)
        sc.bind_layers(sc.TCP, TLS, dport=port)
    by_key = {(c.client, c.server): c for c in conns}
    old = (sc.conf.tls_session_enable, getattr(sc.conf, "tls_nss_filename", None))
    sc.conf.tls_session_enable = keylog is not None
    sc.conf.tls_nss_filename = str(keylog) if keylog is not None else None
    try:
        if embedded_keys:
            pkts = sc.sniff(offline=str(cap.path), session=sc.TCPSession, quiet=True)
        else:  # scapy reads a pcapng's Decryption Secrets Block by itself: read a copy without
            with tempfile.TemporaryDirectory(prefix="labchat-nokeys-") as tmp:
                bare = strip_secrets(cap.path, Path(tmp) / "capture.pcapng")
                pkts = sc.sniff(offline=str(bare), session=sc.TCPSession, quiet=True)
    finally:
        sc.conf.tls_session_enable, sc.conf.tls_nss_filename = old
        # scapy keeps every TLS session it saw (with its keys) in a global registry, keyed by
        # addresses and ports. Captures made in fresh namespaces reuse the same 4-tuples, so
        # a later, unrelated read of "ciphertext" would come back decrypted. Forget them.
        sc.conf.tls_sessions.sessions.clear()
        for port in bound:
            sc.split_layers(sc.TCP, TLS, sport=port)
            sc.split_layers(sc.TCP, TLS, dport=port)
    t0 = float(cap.packets[0].time)
    ccs: dict[tuple[int, str], bool] = {}
    for pkt in pkts:
        ip = pkt.getlayer(sc.IP) or pkt.getlayer(sc.IPv6)
        if ip is None or not ip.haslayer(sc.TCP):
            continue
        tcp = ip[sc.TCP]
        src, dst = (ip.src, tcp.sport), (ip.dst, tcp.dport)
        conn = by_key.get((src, dst)) or by_key.get((dst, src))
        if conn is None:
            continue
        direction = C2S if src == conn.client else S2C
        t = float(pkt.time) - t0
        # TCPSession keeps the time of the segment that completed the record.
        seg = None
        for s in conn.segments:
            if s.direction == direction and abs(s.time - t) < 1e-6 and s.payload_len:
                seg = s
        layer = tcp.payload
        while isinstance(layer, (TLS, TLS13, SSLv2)):
            key = (conn.stream, direction)
            try:
                msgs, encrypted, decrypted, rtype = _record_messages(layer, ccs.get(key, False))
            except Exception as exc:
                conn.warnings.append(f"TLS record at {t:.6f}s not understood: {exc}")
                break
            for name, msg in msgs:
                fields: dict[str, Any] = {}
                data = b""
                if msg is not None and (decrypted or not encrypted):
                    try:
                        fields = _msg_fields(name, msg)
                    except Exception as exc:
                        fields = {"note": f"fields not decoded ({type(exc).__name__})"}
                    if name == "ApplicationData":
                        data = bytes(getattr(msg, "data", b"") or b"")
                if encrypted and not decrypted:
                    name = "ApplicationData" if isinstance(layer, TLS13) else name
                if name == "ChangeCipherSpec":
                    ccs[key] = True
                conn._tls_messages.append(
                    TLSMessage(
                        time=t,
                        direction=direction,
                        record_type=rtype,
                        name=name,
                        fields=fields,
                        encrypted=encrypted,
                        segment=seg.index if seg is not None else None,
                        decrypted=decrypted,
                        data=data,
                    )
                )
            layer = layer.payload
        rest = bytes(layer) if isinstance(layer, (sc.Raw, sc.Padding)) else b""
        while len(rest) >= 5 and looks_like_tls(rest):
            # Records scapy left undissected (TLS 1.3 without keys): opaque, by header only.
            rlen = int.from_bytes(rest[3:5], "big")
            conn._tls_messages.append(
                TLSMessage(
                    time=t,
                    direction=direction,
                    record_type=_RECORD_TYPES.get(rest[0], str(rest[0])),
                    name="ApplicationData" if rest[0] == 23 else _RECORD_TYPES[rest[0]],
                    encrypted=rest[0] == 23,
                    segment=seg.index if seg is not None else None,
                )
            )
            rest = rest[5 + rlen :]
    for conn in conns:
        if keylog is not None and any(m.encrypted and not m.decrypted for m in conn._tls_messages):
            conn.warnings.append("some TLS records stay encrypted (no matching key in the key log)")
