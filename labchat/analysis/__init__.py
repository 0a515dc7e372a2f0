"""Packets -> facts a learner can read: connections, segments, handshake, teardown, TLS messages.

Everything here works on a capture file (pcap or pcapng, gzip'd or not) and returns plain
dataclasses and :class:`Table` objects (which render as HTML in Jupyter and as fixed-width
text elsewhere). Odd input never raises anything but :class:`AnalysisError` (for a file that
is not a capture at all, or a key log that is not one); everything else that looks wrong
lands in ``Capture.warnings``.

Sequence numbers, stream numbers, frame numbers and the ``tcp.analysis`` judgements follow
tshark's, so a learner can compare both side by side: relative numbers count from each
side's ISN, and a side whose SYN was not captured gets the base ``first seq - 1``
(Wireshark's packet-tcp.c does the same), so its first byte shows as 1.

Modules: ``pcapfile`` (file formats), ``packets`` (link layers, tunnels, IP and TCP headers),
``builder`` and ``tcp`` (connections and tshark's TCP analysis), ``reassembly`` (byte
streams), ``streams`` (what a connection carries), ``tls`` (records, messages, keys,
decryption), ``connection``/``capture``/``facts`` (the facts), ``summary`` and ``table``.
"""

from .capture import Capture
from .congestion import Recovery, lost_originals
from .connection import Connection, Transfer
from .errors import AnalysisError
from .facts import (
    C2S,
    LINUX_RTO_MIN,
    S2C,
    Handshake,
    RTTSample,
    Segment,
    Teardown,
    TLSMessage,
    endpoint,
    estimate_rtt,
)
from .loader import DEFAULT_TLS_PORTS, load
from .summary import first_application_data, tls_round_trips, tls_summary
from .table import Table
from .tlsinfo import TLSInfo, TLSRecord

__all__ = [
    "C2S",
    "DEFAULT_TLS_PORTS",
    "LINUX_RTO_MIN",
    "S2C",
    "AnalysisError",
    "Capture",
    "Connection",
    "Handshake",
    "RTTSample",
    "Recovery",
    "Segment",
    "TLSInfo",
    "TLSMessage",
    "TLSRecord",
    "Table",
    "Teardown",
    "Transfer",
    "endpoint",
    "estimate_rtt",
    "first_application_data",
    "load",
    "lost_originals",
    "tls_round_trips",
    "tls_summary",
]
