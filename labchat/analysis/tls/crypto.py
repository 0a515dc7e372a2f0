"""Key schedules and record decryption for TLS 1.0-1.3, with ``cryptography``'s ciphers.

* TLS 1.3 (RFC 8446 section 7): ``key = HKDF-Expand-Label(secret, "key", "", key_len)``,
  ``iv = HKDF-Expand-Label(secret, "iv", "", 12)``, the nonce is the iv XOR the record
  number, the additional data is the record header; ``"traffic upd"`` makes the next
  generation after a KeyUpdate (section 7.2).
* TLS 1.2 (RFC 5246 section 6.3): ``key_block = PRF(master, "key expansion", server_random +
  client_random)`` cut into MAC keys, write keys and IVs; AES-GCM takes a 4-byte salt and an
  explicit 8-byte nonce per record (RFC 5288), ChaCha20-Poly1305 a 12-byte IV XOR the record
  number (RFC 7905), CBC an explicit IV (RFC 5246 6.2.3.2), with the MAC before or, after
  encrypt_then_mac, over the ciphertext (RFC 7366). TLS 1.0/1.1 use the MD5/SHA-1 PRF
  (RFC 2246 section 5) and TLS 1.0 CBC chains the IV from record to record.

Doing the schedule here, rather than through scapy's TLS session machinery, keeps it fast
(one cipher object per direction) and free of global state.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305

from .registry import CIPHER_SUITES

__all__ = ["DecryptError", "RecordKeys", "Suite", "suite", "tls12_keys", "tls13_keys", "tls13_next"]


class DecryptError(Exception):
    """A record did not decrypt (wrong key, wrong record number, or damaged)."""


@dataclass(frozen=True)
class Suite:
    """What a cipher suite means for decryption."""

    code: int
    name: str
    cipher: str  # "aes", "chacha20", "3des"
    mode: str  # "gcm", "ccm", "ccm8", "poly1305", "cbc"
    key_len: int
    hash: str  # PRF (1.2) / HKDF (1.3) hash
    mac: str  # CBC only: HMAC hash ("" for AEAD)
    tls13: bool

    @property
    def aead(self) -> bool:
        return self.mode != "cbc"


_MAC_LEN = {"md5": 16, "sha1": 20, "sha256": 32, "sha384": 48}
# The MAC part of a suite name -> hashlib's name ("_SHA" in a suite name means SHA-1).
_MAC_NAMES = {"MD5": "md5", "SHA": "sha1", "SHA256": "sha256", "SHA384": "sha384"}


def suite(code: int) -> Suite | None:
    """The decryption parameters of a cipher suite, or None when it is not supported here."""
    name = CIPHER_SUITES.get(code, "")
    if not name:
        return None
    tls13 = "_WITH_" not in name
    body = name.split("_WITH_", 1)[-1] if not tls13 else name[4:]
    prf = "sha384" if body.endswith("SHA384") else "sha256"
    if body.startswith("AES_128_") or body.startswith("AES_256_"):
        key_len = 16 if body.startswith("AES_128_") else 32
        rest = body[8:]
        if rest.startswith("GCM_"):
            return Suite(code, name, "aes", "gcm", key_len, prf, "", tls13)
        if rest.startswith("CCM_8"):
            return Suite(code, name, "aes", "ccm8", key_len, prf, "", tls13)
        if rest.startswith("CCM"):
            return Suite(code, name, "aes", "ccm", key_len, prf, "", tls13)
        if rest.startswith("CBC_"):
            mac = _MAC_NAMES.get(rest[4:], "")
            return Suite(code, name, "aes", "cbc", key_len, prf, mac, tls13) if mac else None
        return None
    if body.startswith("CHACHA20_POLY1305"):
        return Suite(code, name, "chacha20", "poly1305", 32, "sha256" if tls13 else prf, "", tls13)
    if body.startswith("3DES_EDE_CBC_"):
        mac = _MAC_NAMES.get(body[len("3DES_EDE_CBC_") :], "")
        return Suite(code, name, "3des", "cbc", 24, prf, mac, tls13) if mac else None
    return None


# ---- key schedules ---------------------------------------------------------------------------


def _hkdf_expand_label(secret: bytes, label: str, length: int, hash_name: str) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hash_name).digest()
        out += block
        counter += 1
    return out[:length]


def _p_hash(secret: bytes, seed: bytes, length: int, hash_name: str) -> bytes:
    out, a = b"", seed
    while len(out) < length:
        a = hmac.new(secret, a, hash_name).digest()
        out += hmac.new(secret, a + seed, hash_name).digest()
    return out[:length]


def _prf(version: int, secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str):
    if version >= 0x0303:
        return _p_hash(secret, label + seed, length, hash_name)
    half = (len(secret) + 1) // 2  # TLS 1.0/1.1: MD5 and SHA-1 halves XORed (RFC 2246 5)
    md5 = _p_hash(secret[:half], label + seed, length, "md5")
    sha = _p_hash(secret[-half:], label + seed, length, "sha1")
    return bytes(x ^ y for x, y in zip(md5, sha, strict=True))


@dataclass
class RecordKeys:
    """One direction's keys: decrypt its records in order with :meth:`decrypt`."""

    suite: Suite
    version: int
    key: bytes
    iv: bytes
    mac_key: bytes = b""
    encrypt_then_mac: bool = False
    seq: int = 0

    def __post_init__(self) -> None:
        s = self.suite
        if s.mode == "gcm":
            self._aead = AESGCM(self.key)
        elif s.mode == "poly1305":
            self._aead = ChaCha20Poly1305(self.key)
        elif s.mode in ("ccm", "ccm8"):
            self._aead = AESCCM(self.key, tag_length=8 if s.mode == "ccm8" else 16)
        else:
            self._aead = None

    def decrypt(
        self, content_type: int, version: int, body: bytes, header: bytes
    ) -> tuple[int, bytes]:
        """(content type, plaintext) of one record; the record number advances on success.

        Raises:
            DecryptError: the record does not decrypt with these keys at this number.
        """
        try:
            if self.suite.tls13:
                out = self._open13(body, header)
            elif self._aead is not None:
                out = (content_type, self._open12_aead(content_type, version, body))
            else:
                out = (content_type, self._open_cbc(content_type, version, body))
        except (InvalidTag, ValueError) as exc:
            raise DecryptError(str(exc) or type(exc).__name__) from None
        self.seq += 1
        return out

    def _nonce(self) -> bytes:
        # The record number, left-padded to the IV's length, XOR the IV (RFC 8446 5.3).
        return (int.from_bytes(self.iv, "big") ^ self.seq).to_bytes(len(self.iv), "big")

    def _open13(self, body: bytes, header: bytes) -> tuple[int, bytes]:
        inner = self._aead.decrypt(self._nonce(), body, header)
        end = len(inner)
        while end and inner[end - 1] == 0:  # strip the zero padding (RFC 8446 5.4)
            end -= 1
        if not end:
            raise ValueError("no content type in the inner plaintext")
        return inner[end - 1], inner[: end - 1]

    def _open12_aead(self, content_type: int, version: int, body: bytes) -> bytes:
        tag = 8 if self.suite.mode == "ccm8" else 16
        if self.suite.mode == "poly1305":
            nonce, ciphertext = self._nonce(), body
        else:
            nonce, ciphertext = self.iv + body[:8], body[8:]
        length = len(ciphertext) - tag
        if length < 0:
            raise ValueError("record shorter than its tag")
        aad = struct.pack("!QBHH", self.seq, content_type, version, length)
        return self._aead.decrypt(nonce, ciphertext, aad)

    def _open_cbc(self, content_type: int, version: int, body: bytes) -> bytes:
        algo = algorithms.AES(self.key) if self.suite.cipher == "aes" else _triple_des(self.key)
        block = algo.block_size // 8
        mac_len = _MAC_LEN[self.suite.mac]
        if self.encrypt_then_mac:
            body, mac = body[:-mac_len], body[-mac_len:]
            header = struct.pack("!QBHH", self.seq, content_type, version, len(body))
            want = hmac.new(self.mac_key, header + body, self.suite.mac).digest()
            if not hmac.compare_digest(want, mac):
                raise ValueError("bad record MAC")
        if version >= 0x0302:  # explicit IV (TLS 1.1+)
            iv, body = body[:block], body[block:]
        else:
            iv = self.iv
            self.iv = body[-block:]  # TLS 1.0: the next record's IV is this one's last block
        if not body or len(body) % block:
            raise ValueError("ciphertext is not whole blocks")
        dec = Cipher(algo, modes.CBC(iv)).decryptor()
        plain = dec.update(body) + dec.finalize()
        pad = plain[-1] + 1
        if pad > len(plain):
            raise ValueError("bad padding")
        plain = plain[:-pad]
        if self.encrypt_then_mac:
            return plain
        if len(plain) < mac_len:
            raise ValueError("record shorter than its MAC")
        data, mac = plain[:-mac_len], plain[-mac_len:]
        header = struct.pack("!QBHH", self.seq, content_type, version, len(data))
        want = hmac.new(self.mac_key, header + data, self.suite.mac).digest()
        if not hmac.compare_digest(want, mac):
            raise ValueError("bad record MAC")
        return data


def _triple_des(key: bytes):
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:  # cryptography < 43
        TripleDES = algorithms.TripleDES  # type: ignore[attr-defined]  # noqa: N806
    return TripleDES(key)


def tls13_keys(s: Suite, secret: bytes) -> RecordKeys:
    """The record keys of one TLS 1.3 traffic secret."""
    key = _hkdf_expand_label(secret, "key", s.key_len, s.hash)
    iv = _hkdf_expand_label(secret, "iv", 12, s.hash)
    return RecordKeys(s, 0x0304, key, iv)


def tls13_next(s: Suite, secret: bytes) -> bytes:
    """The next application traffic secret after a KeyUpdate (RFC 8446 section 7.2)."""
    return _hkdf_expand_label(secret, "traffic upd", hashlib.new(s.hash).digest_size, s.hash)


def tls12_keys(
    s: Suite, version: int, master: bytes, client_random: bytes, server_random: bytes, etm: bool
) -> tuple[RecordKeys, RecordKeys]:
    """(client write keys, server write keys) for TLS 1.0-1.2 (RFC 5246 section 6.3)."""
    mac_len = _MAC_LEN[s.mac] if s.mac else 0
    if s.mode == "cbc":
        iv_len = 16 if s.cipher == "aes" else 8
    elif s.mode == "poly1305":
        iv_len = 12
    else:
        iv_len = 4  # the implicit salt of GCM/CCM (RFC 5288 section 3)
    need = 2 * (mac_len + s.key_len + iv_len)
    block = _prf(version, master, b"key expansion", server_random + client_random, need, s.hash)
    parts, pos = [], 0
    for size in (mac_len, mac_len, s.key_len, s.key_len, iv_len, iv_len):
        parts.append(block[pos : pos + size])
        pos += size
    cmac, smac, ckey, skey, civ, siv = parts
    return (
        RecordKeys(s, version, ckey, civ, cmac, etm),
        RecordKeys(s, version, skey, siv, smac, etm),
    )
