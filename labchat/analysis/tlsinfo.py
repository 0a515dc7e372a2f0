"""What the TLS decoder found on one connection: records, messages and negotiated values."""

from __future__ import annotations

from dataclasses import dataclass, field

from .facts import TLSMessage

__all__ = ["TLSInfo", "TLSRecord"]


@dataclass(frozen=True, slots=True)
class TLSRecord:
    """One TLS record as it was on the wire (RFC 8446 section 5.1).

    ``content_type`` is the type in the record header (23 for every TLS 1.3 encrypted
    record); ``inner_type`` the true type found inside once decrypted (None otherwise).
    """

    direction: str
    segment: int
    frame: int
    time: float
    content_type: int
    version: int
    length: int
    encrypted: bool
    inner_type: int | None = None


@dataclass
class TLSInfo:
    """The negotiated facts and the messages of one TLS connection.

    ``version`` and ``cipher_suite`` are the ServerHello's ("" when it was not captured).
    ``keys`` says whether the key log held this connection's keys (None: no key log given).
    """

    version: str = ""
    cipher_suite: str = ""
    client_random: str = ""
    server_random: str = ""
    sni: str = ""
    alpn_offered: list[str] = field(default_factory=list)
    alpn: str = ""
    hello_retry: bool = False
    resumed: bool = False
    keys: bool | None = None
    messages: list[TLSMessage] = field(default_factory=list)
    records: list[TLSRecord] = field(default_factory=list)
