"""One connection's TLS: records from each direction's reassembled stream -> messages.

Records are cut from the byte stream (a record may span segments, a segment may hold many
records), attributed to the segment that delivered their last byte, and, when the key log
holds this connection's keys (found by the ClientHello's random), decrypted in order.
Handshake messages are reassembled across records. A record that cannot be opened stays one
opaque message named by its record type: an encrypted TLS 1.2 handshake record is one
"EncryptedHandshake", a TLS 1.3 record "ApplicationData" (its outer type), never a guess.

TLS 1.3 keys move on at known points (the sender's Finished, a KeyUpdate); each record is
also tried with the next keys when the current ones fail, which covers early data and a
HelloRetryRequest without special cases: AEAD tags make a wrong key impossible to miss.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..facts import C2S, S2C, Segment, TLSMessage
from ..reassembly import Chunk
from ..tlsinfo import TLSInfo, TLSRecord
from .crypto import DecryptError, RecordKeys, suite, tls12_keys, tls13_keys, tls13_next
from .handshake import Malformed, decode_message, server_hello
from .keylog import KeyLog
from .registry import ALERTS, CIPHER_SUITES, HANDSHAKE_TYPES

__all__ = ["RECORD_TYPES", "TLSDecoder", "looks_like_record"]

RECORD_TYPES = {
    20: "change_cipher_spec",
    21: "alert",
    22: "handshake",
    23: "application_data",
    24: "heartbeat",
}
_OPAQUE_NAMES = {
    20: "ChangeCipherSpec",
    21: "Alert",
    22: "EncryptedHandshake",
    23: "ApplicationData",
    24: "Heartbeat",
}
# TLSCiphertext.length may exceed 2^14 by up to 2048 (RFC 5246 6.2.3); anything longer is
# not a TLS record.
_MAX_RECORD = (1 << 14) + 2048
_ALERT_LEVELS = {1: "warning", 2: "fatal"}
_TLS13_SUITES = (0x1301, 0x1302, 0x1303)
_SUITE_CODES = {name: code for code, name in CIPHER_SUITES.items()}
_RESYNC_WINDOW = 64 * 1024  # how far to look for the next record header after a gap
_GAP_TRIES = 64  # record numbers tried after a gap (records lost with the missing bytes)


def _plaintext(ctype: int, body: bytes, partial: bool = False) -> bool:
    """Whether a handshake or alert record's body parses as cleartext messages.

    Args:
        partial: the last handshake message may go on in the next record.
    """
    if ctype == 21:
        return len(body) == 2 and body[0] in _ALERT_LEVELS
    pos = 0
    while pos + 4 <= len(body):
        if body[pos] not in HANDSHAKE_TYPES:
            return False
        pos += 4 + int.from_bytes(body[pos + 1 : pos + 4], "big")
    return pos == len(body) or (partial and pos > len(body))


def looks_like_record(data: bytes, pos: int = 0) -> bool:
    """A plausible TLS record header at ``pos``: content type, version 3.x, sane length."""
    if len(data) < pos + 5:
        return False
    ctype, major, minor = data[pos], data[pos + 1], data[pos + 2]
    length = (data[pos + 3] << 8) | data[pos + 4]
    return 20 <= ctype <= 24 and major == 3 and minor <= 4 and 0 < length <= _MAX_RECORD


@dataclass
class _Side:
    name: str
    buf: bytearray = field(default_factory=bytearray)
    stopped: bool = False
    desync: bool = False
    after_gap: bool = False
    hs: bytearray = field(default_factory=bytearray)
    hs_decrypted: bool = False
    ccs: bool = False  # TLS 1.2: records after this side's ChangeCipherSpec are encrypted
    keys: RecordKeys | None = None  # TLS 1.2: the keys the next CCS switches to
    stages: list[RecordKeys] = field(default_factory=list)  # TLS 1.3: keys in order of use
    current: int = 0
    app_secret: bytes = b""
    switch: bool = False  # move to the next stage after this record (Finished, KeyUpdate)
    warned: bool = False


class TLSDecoder:
    """Feed it one connection's chunks in capture order; read ``info`` at the end."""

    def __init__(
        self,
        segments: list[Segment],
        keylog: KeyLog | None,
        warnings: list[str],
        start: dict[str, int] | None = None,
    ) -> None:
        self.segments = segments
        self.keylog = keylog
        self.warnings = warnings
        self.info = TLSInfo(keys=None if keylog is None else False)
        self.sides = {C2S: _Side(C2S), S2C: _Side(S2C)}
        self.start = start or {}  # stream offset where TLS starts (after a proxy's prelude)
        self.tls13 = False
        self.suite_code = 0
        self.client_random = b""
        self.session_id = b""
        self.secrets: dict[str, bytes] = {}
        self.etm = False
        self.version = 0

    # ---- records ---------------------------------------------------------------------------

    def feed(self, chunk: Chunk) -> None:
        """Take the next bytes of one direction's stream."""
        side = self.sides[chunk.direction]
        if side.stopped:
            return
        data = chunk.data
        skip = self.start.get(chunk.direction, 0) - chunk.offset
        if skip > 0:
            data = data[skip:]
        if chunk.gap:
            lost = chunk.gap
            self.warnings.append(
                f"{chunk.direction}: {lost} bytes missing from the capture; TLS records "
                f"resumed at the next record header"
            )
            side.buf.clear()
            side.hs.clear()
            side.desync = side.after_gap = True
        side.buf += data
        self._records(side, chunk.segment)

    def _records(self, side: _Side, seg_index: int) -> None:
        buf = side.buf
        while True:
            if side.desync and not self._resync(side):
                return
            if len(buf) < 5:
                return
            if not looks_like_record(buf):
                head = bytes(buf[:8]).hex()
                self.warnings.append(
                    f"{side.name}: bytes that are not a TLS record (starting {head}); "
                    "the rest of this direction is not decoded"
                )
                side.stopped = True
                buf.clear()
                return
            length = (buf[3] << 8) | buf[4]
            if len(buf) < 5 + length:
                return
            header = bytes(buf[:5])
            body = bytes(buf[5 : 5 + length])
            del buf[: 5 + length]
            self._record(side, header, body, seg_index)

    def _resync(self, side: _Side) -> bool:
        """After a gap: find two record headers in a row (or one that ends the data)."""
        buf = side.buf
        for pos in range(max(0, len(buf) - 4)):
            if not looks_like_record(buf, pos):
                continue
            nxt = pos + 5 + ((buf[pos + 3] << 8) | buf[pos + 4])
            if nxt == len(buf) or looks_like_record(buf, nxt):
                del buf[:pos]
                side.desync = False
                return True
            if nxt > len(buf):
                return False  # wait for more bytes before deciding
        if len(buf) > _RESYNC_WINDOW:
            del buf[: len(buf) - 4]
        return False

    def _record(self, side: _Side, header: bytes, body: bytes, seg_index: int) -> None:
        ctype, version = header[0], (header[1] << 8) | header[2]
        seg = self.segments[seg_index]
        encrypted = ctype == 23 or (side.ccs and not self.tls13 and ctype != 20)
        inner: int | None = None
        plain: bytes | None = None
        if encrypted:
            opened = self._decrypt(side, ctype, version, header, body)
            if opened is not None:
                inner, plain = opened
            elif ctype in (21, 22) and _plaintext(ctype, body):
                # Handshake or alert bytes that parse exactly are not ciphertext: a TLS 1.3
                # client's second ClientHello after its compatibility ChangeCipherSpec,
                # when the HelloRetryRequest that explains it was not captured.
                encrypted = False
        elif ctype in (21, 22) and not side.hs and not _plaintext(ctype, body, partial=True):
            encrypted = True  # mid-stream capture: ciphertext after a CCS we never saw
        self.info.records.append(
            TLSRecord(
                side.name,
                seg_index,
                seg.frame,
                seg.time,
                ctype,
                version,
                len(body),
                encrypted,
                inner,
            )
        )
        rtype = RECORD_TYPES.get(ctype, str(ctype))
        if not encrypted:
            self._content(side, ctype, body, seg, rtype, len(body), decrypted=False)
            if ctype == 20 and not self.tls13:
                side.ccs = True
                side.hs.clear()
        elif plain is not None:
            self._content(side, inner or 0, plain, seg, rtype, len(body), decrypted=True)
        else:
            self._emit(side, seg, rtype, _OPAQUE_NAMES[ctype], {}, True, False, len(body))
        if side.switch:
            side.switch = False
            side.current += 1
            if side.current >= len(side.stages) and side.app_secret and self.suite_code:
                self._key_update(side)

    def _decrypt(
        self, side: _Side, ctype: int, version: int, header: bytes, body: bytes
    ) -> tuple[int, bytes] | None:
        if self.tls13 or not self.suite_code:
            candidates = side.stages[side.current : side.current + 3]
        else:
            candidates = [side.keys] if side.keys is not None and side.ccs else []
        for i, keys in enumerate(candidates):
            tries = _GAP_TRIES if side.after_gap and keys.suite.aead else 1
            base = keys.seq
            for j in range(tries):
                keys.seq = base + j
                try:
                    opened = keys.decrypt(ctype, version, body, header)
                except DecryptError:
                    continue
                if self.tls13 or not self.suite_code:
                    side.current += i
                side.after_gap = False
                return opened
            keys.seq = base
        if candidates and not side.warned:
            side.warned = True
            self.warnings.append(f"{side.name}: a TLS record did not decrypt with the logged keys")
        return None

    # ---- content -------------------------------------------------------------------------

    def _content(
        self,
        side: _Side,
        ctype: int,
        data: bytes,
        seg: Segment,
        rtype: str,
        length: int,
        decrypted: bool,
    ) -> None:
        if ctype == 22:
            if side.hs and side.hs_decrypted != decrypted:
                side.hs.clear()
            side.hs_decrypted = decrypted
            side.hs += data
            self._handshake_messages(side, seg, rtype, length, decrypted)
        elif ctype == 21:
            for pos in range(0, len(data) - 1, 2):
                level, code = data[pos], data[pos + 1]
                fields = {
                    "level": _ALERT_LEVELS.get(level, str(level)),
                    "description": ALERTS.get(code, str(code)),
                    "code": code,
                }
                self._emit(side, seg, rtype, "Alert", fields, decrypted, decrypted, length)
        elif ctype == 20:
            self._emit(side, seg, rtype, "ChangeCipherSpec", {}, decrypted, decrypted, length)
        elif ctype == 23:
            self._emit(
                side,
                seg,
                rtype,
                "ApplicationData",
                {},
                True,
                decrypted,
                length,
                data if decrypted else b"",
            )
        elif ctype == 24:
            self._emit(side, seg, rtype, "Heartbeat", {}, decrypted, decrypted, length)

    def _handshake_messages(
        self, side: _Side, seg: Segment, rtype: str, length: int, decrypted: bool
    ) -> None:
        hs = side.hs
        while len(hs) >= 4:
            size = int.from_bytes(hs[1:4], "big")
            if len(hs) < 4 + size:
                return
            mtype, body = hs[0], bytes(hs[4 : 4 + size])
            del hs[: 4 + size]
            self._handshake(side, mtype, body, seg, rtype, length, decrypted)

    def _handshake(
        self,
        side: _Side,
        mtype: int,
        body: bytes,
        seg: Segment,
        rtype: str,
        length: int,
        decrypted: bool,
    ) -> None:
        name = HANDSHAKE_TYPES.get(mtype, f"HandshakeType{mtype}")
        fields: dict = {}
        try:
            if mtype == 2:
                name, fields, ext = server_hello(body)
                self._server_hello(name, fields, ext)
            else:
                fields = decode_message(name, body, self.tls13, self._kx())
        except (Malformed, IndexError, struct.error) as exc:
            fields = {"note": f"not decoded ({exc})"}
        if name == "ClientHello" and side.name == C2S and "random" in fields:
            self._client_hello(fields, body)
        elif name == "EncryptedExtensions" and "alpn" in fields:
            self.info.alpn = fields["alpn"]
        elif name in ("Finished", "KeyUpdate") and self.tls13:
            side.switch = True
        # A Certificate keeps its body: Connection.certificates() hands out the DER chain.
        data = body if name == "Certificate" else b""
        self._emit(side, seg, rtype, name, fields, decrypted, decrypted, length, data)

    def _emit(
        self,
        side: _Side,
        seg: Segment,
        rtype: str,
        name: str,
        fields: dict,
        encrypted: bool,
        decrypted: bool,
        length: int,
        data: bytes = b"",
    ) -> None:
        self.info.messages.append(
            TLSMessage(
                time=seg.time,
                direction=side.name,
                record_type=rtype,
                name=name,
                fields=fields,
                encrypted=encrypted,
                segment=seg.index,
                decrypted=decrypted,
                data=data,
                frame=seg.frame,
                record_length=length,
            )
        )

    # ---- negotiation and keys ------------------------------------------------------------

    def _kx(self) -> str:
        name = CIPHER_SUITES.get(self.suite_code, "")
        return name[4:].split("_WITH_")[0] if "_WITH_" in name else ""

    def _client_hello(self, fields: dict, body: bytes) -> None:
        info = self.info
        self.client_random = bytes.fromhex(fields["random"])
        self.session_id = bytes.fromhex(fields.get("session_id", ""))
        info.client_random = fields["random"]
        info.sni = fields.get("sni", info.sni)
        info.alpn_offered = fields.get("alpn", info.alpn_offered)
        if self.keylog is not None:
            self.secrets = self.keylog.for_client_random(self.client_random)
            info.keys = bool(self.secrets)
        early = self.secrets.get("CLIENT_EARLY_TRAFFIC_SECRET")
        client = self.sides[C2S]
        if early and fields.get("early_data") and not client.stages:
            # The suite is only known from the ServerHello: try each TLS 1.3 one.
            for code in _TLS13_SUITES:
                s = suite(code)
                if s is not None:
                    client.stages.append(tls13_keys(s, early))

    def _server_hello(self, name: str, fields: dict, ext: dict[int, bytes]) -> None:
        info = self.info
        info.version = fields.get("version", "")
        info.cipher_suite = fields.get("cipher_suite", "")
        if name == "HelloRetryRequest":
            info.hello_retry = True
            self.tls13 = True
            return
        self.suite_code = _SUITE_CODES.get(info.cipher_suite, 0)
        info.server_random = fields.get("random", "")
        info.alpn = fields.get("alpn", info.alpn)
        self.tls13 = info.version == "TLS 1.3"
        self.etm = bool(fields.get("encrypt_then_mac"))
        sid = bytes.fromhex(fields.get("session_id", ""))
        info.resumed = (
            ("pre_shared_key" in fields) if self.tls13 else bool(sid and sid == self.session_id)
        )
        s = suite(self.suite_code)
        if not self.secrets or s is None:
            if self.secrets and s is None:
                self.warnings.append(f"cipher suite {info.cipher_suite}: decryption not supported")
            return
        server, client = self.sides[S2C], self.sides[C2S]
        if self.tls13:
            if not s.tls13:
                return
            used_early = (
                client.stages[client.current : client.current + 1]
                if client.stages
                and client.current < len(client.stages)
                and client.stages[client.current].seq
                else []
            )
            client.stages, client.current = list(used_early), 0
            for side, hs_label, app_label in (
                (client, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"),
                (server, "SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"),
            ):
                if hs_label in self.secrets:
                    side.stages.append(tls13_keys(s, self.secrets[hs_label]))
                if app_label in self.secrets:
                    side.app_secret = self.secrets[app_label]
                    side.stages.append(tls13_keys(s, side.app_secret))
            return
        master = self.secrets.get("CLIENT_RANDOM")
        if master is None or s.tls13:
            return
        version = struct.unpack("!H", ext.get(43, b""))[0] if len(ext.get(43, b"")) == 2 else 0
        version = version or {"TLS 1.0": 0x0301, "TLS 1.1": 0x0302}.get(info.version, 0x0303)
        ckeys, skeys = tls12_keys(
            s, version, master, self.client_random, bytes.fromhex(info.server_random), self.etm
        )
        client.keys, server.keys = ckeys, skeys

    def _key_update(self, side: _Side) -> None:
        s = suite(self.suite_code)
        if s is None:
            return
        side.app_secret = tls13_next(s, side.app_secret)
        side.stages.append(tls13_keys(s, side.app_secret))
