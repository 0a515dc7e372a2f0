"""Packets -> facts a learner can read: connections, segments, handshake, teardown, TLS messages.

Everything here works on a capture file (pcap or pcapng) and returns plain dataclasses and
:class:`Table` objects (which render as HTML in Jupyter and as fixed-width text elsewhere).
Odd input never raises anything but :class:`AnalysisError` (for a file that is not a capture
at all); everything else that looks wrong lands in ``Capture.warnings``.

Sequence numbers follow Wireshark's conventions so a learner can compare both side by side:
relative numbers count from each side's ISN, and a side whose SYN was not captured gets the
base ``first seq - 1`` (Wireshark's packet-tcp.c does the same), so its first byte shows as 1.
"""

from .connection import Capture, Connection
from .errors import AnalysisError
from .facts import C2S, S2C, Handshake, RTTSample, Segment, Teardown, TLSMessage, estimate_rtt
from .reading import DEFAULT_TLS_PORTS, load
from .summary import tls_round_trips, tls_summary
from .table import Table

__all__ = [
    "C2S",
    "DEFAULT_TLS_PORTS",
    "S2C",
    "AnalysisError",
    "Capture",
    "Connection",
    "Handshake",
    "RTTSample",
    "Segment",
    "TLSMessage",
    "Table",
    "Teardown",
    "estimate_rtt",
    "load",
    "tls_round_trips",
    "tls_summary",
]
