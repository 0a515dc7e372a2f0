"""A loaded capture: its connections, what looked odd, and its packets on demand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .connection import Connection
from .errors import AnalysisError
from .facts import endpoint
from .table import Table

__all__ = ["Capture"]


class Capture:
    """A loaded capture file: its TCP connections and what looked odd.

    ``warnings`` lists everything odd in one line each (damaged or cut files, unsupported
    encapsulations, key-log problems, connections that could not be fully decoded).
    """

    def __init__(
        self,
        path: Path,
        connections: list[Connection],
        warnings: list[str],
        *,
        packet_count: int = 0,
        source: Any = None,
    ) -> None:
        self.path = path
        self.warnings = warnings
        #: Frames in the file (every packet block, TCP or not: Wireshark's frame count).
        self.packet_count = packet_count
        self._connections = connections
        self._source = source

    def __repr__(self) -> str:
        return (
            f"<Capture {self.path.name}: {self.packet_count} packets, "
            f"{len(self._connections)} TCP connections, {len(self.warnings)} warnings>"
        )

    @property
    def packets(self) -> list:
        """Every frame dissected by scapy (slow: it imports and runs scapy; for exploring)."""
        if self._source is None:
            return []
        return list(self._source.scapy_packets())

    def connections(self) -> list[Connection]:
        """TCP connections in order of their first packet (tshark's ``tcp.stream`` order)."""
        return list(self._connections)

    def connection(self, n: int = 0) -> Connection:
        """The n-th TCP connection.

        Raises:
            AnalysisError: there is no such connection.
        """
        if not 0 <= n < len(self._connections):
            raise AnalysisError(
                f"{self.path.name}: no TCP connection #{n} "
                f"({len(self._connections)} connection(s) in the capture)"
            )
        return self._connections[n]

    def connection_table(self) -> Table:
        """One row per connection: endpoints, segment count, how it opened and closed."""
        rows = []
        for c in self._connections:
            hs, td = c.handshake(), c.teardown()
            if c.resets():
                closed = "reset"
            elif td is None:
                closed = "open"
            else:
                closed = f"FIN by {td.first_closer}"
            rows.append(
                {
                    "stream": c.stream,
                    "client": endpoint(c.client),
                    "server": endpoint(c.server),
                    "segments": len(c.segments),
                    "handshake": "none" if hs is None else ("ok" if hs.ok else "incomplete"),
                    "closed": closed,
                    "tls": (c.tls_info.version or "yes") if c.tls and c.tls_info else "",
                }
            )
        return Table(rows, ["stream", "client", "server", "segments", "handshake", "closed", "tls"])
