"""Getting packets: a private network namespace, host loopback, or the shipped captures.

What lives where:

==================  =========================================================================
``modes``           the three capture modes, `detect_mode` and `CaptureMode.explain()`
``sniffer``         `Sniffer`: listening before the first packet, each segment once
``child``           the one child-process runner for a private user + network namespace
``results``         captures on disk (`CaptureResult`) and the one manifest builder
``pcapng``          pcapng writing with the TLS key log embedded (Decryption Secrets Block)
``scenarios``       the scripted loopback chats (``tcp-chat``, ``tls13-chat``, ...)
``loopback``        capturing those, and live sessions on host loopback
``shaping``         what to do to the lab network's link (rate, delay, loss, chosen drops)
``netns``           the two-host lab network itself (namespaces, veth, tc, nftables)
``lossy``           lab-network scenarios: a lost SYN, segment or FIN, a slow link
``craft``           a TCP handshake by hand with scapy
``network``         the lab-network scenarios by name, and their capture
==================  =========================================================================

The names notebooks, `labchat.lab` and the CLI use are re-exported here; the lab network is
`labchat.capture.network` (import it by name: ``from labchat.capture import network``).

Captures are written as pcapng with the TLS key log embedded in a Decryption Secrets Block
(pcapng spec, section 4.7: block type 0x0000000A, secrets type 0x544c534b "TLSK"), so
Wireshark/tshark decrypt them with no settings; the key log is also written beside the
capture as ``keys.log`` (NSS key log format).
"""

from __future__ import annotations

from .loopback import capture_live, run_scenario, run_scenarios
from .modes import (
    CAPTURES_ENV,
    DEFAULT_PORT,
    MODE_ENV,
    MODES,
    NO_PCAP_ENV,
    CaptureError,
    CaptureMode,
    detect_mode,
    probe_modes,
    reference_dir,
)
from .pcapng import strip_secrets, write_pcapng
from .results import CaptureResult, load_reference, versions
from .sniffer import Sniffer, libpcap_available

__all__ = [
    "CAPTURES_ENV",
    "DEFAULT_PORT",
    "MODES",
    "MODE_ENV",
    "NO_PCAP_ENV",
    "CaptureError",
    "CaptureMode",
    "CaptureResult",
    "Sniffer",
    "capture_live",
    "detect_mode",
    "libpcap_available",
    "load_reference",
    "probe_modes",
    "reference_dir",
    "run_scenario",
    "run_scenarios",
    "strip_secrets",
    "versions",
    "write_pcapng",
]
