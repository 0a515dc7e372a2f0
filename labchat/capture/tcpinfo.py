"""The kernel's own view of a TCP connection: ``getsockopt(TCP_INFO)``, parsed by hand.

Linux answers ``getsockopt(fd, IPPROTO_TCP, TCP_INFO)`` with ``struct tcp_info`` from
``include/uapi/linux/tcp.h``. Python has the option number (``socket.TCP_INFO``) but not the
struct, so :data:`FIELDS` spells out the fields labchat reads: name, byte offset, C type, the
first kernel that fills it, and what it means. The struct only ever grows at its end, and the
kernel copies ``min(buffer, sizeof(struct tcp_info))`` bytes and says how many: a field that
lies beyond what this kernel returned is reported as None instead of being read as garbage.

``tcpi_rtt``, ``tcpi_rttvar`` and ``tcpi_rto`` are in microseconds; ``tcpi_snd_cwnd`` and
``tcpi_snd_ssthresh`` in segments (``snd_mss`` bytes each); ``tcpi_snd_ssthresh`` is
``TCP_INFINITE_SSTHRESH`` (0x7fffffff) until the first congestion event (slow start has no
threshold yet), reported here as None.

`Sampler` polls one socket from a thread and keeps a row each time something changes: about
one row per ACK on the lab network's link (an ACK every millisecond or so), which is what a
cwnd plot against the capture needs. `write_csv` and `read_csv` keep the rows beside the
capture as ``tcp_info.csv``.
"""

from __future__ import annotations

import csv
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CA_STATES",
    "COLUMNS",
    "FIELDS",
    "INFINITE_SSTHRESH",
    "STATES",
    "Field",
    "Sampler",
    "field",
    "parse",
    "phases",
    "read",
    "read_csv",
    "ssthresh_changes",
    "write_csv",
]

TCP_INFO = getattr(socket, "TCP_INFO", 11)  # linux/tcp.h: #define TCP_INFO 11
#: How many bytes we ask for: more than any kernel's struct (6.18: 280), so we get it all.
_BUFSIZE = 512
#: ``tcpi_snd_ssthresh`` before any congestion event (include/net/tcp.h).
INFINITE_SSTHRESH = 0x7FFFFFFF


@dataclass(frozen=True)
class Field:
    """One field of ``struct tcp_info``.

    Attributes:
        name: labchat's name (the kernel's without ``tcpi_``).
        offset: byte offset in the struct.
        ctype: ``struct`` format character (``B`` __u8, ``I`` __u32, ``Q`` __u64).
        since: first Linux release that fills it.
        doc: what it means, and its unit.
    """

    name: str
    offset: int
    ctype: str
    since: str
    doc: str


#: The fields labchat reads, at their offsets in ``struct tcp_info`` (x86-64 and every other
#: Linux ABI: the struct has no padding, __u64 fields start at offset 104, 8-aligned).
FIELDS: tuple[Field, ...] = (
    Field("state", 0, "B", "2.6", "TCP state (1 ESTABLISHED ... 11 CLOSING; see STATES)"),
    Field("ca_state", 1, "B", "2.6", "congestion-control state (0 Open ... 4 Loss; CA_STATES)"),
    Field("retransmits", 2, "B", "2.6", "RTO retransmissions of the oldest unACKed segment"),
    Field("probes", 3, "B", "2.6", "zero-window or keepalive probes sent without an answer"),
    Field("backoff", 4, "B", "2.6", "exponential backoff shift of the RTO / persist timer"),
    Field("rto", 8, "I", "2.6", "retransmission timeout, us"),
    Field("ato", 12, "I", "2.6", "delayed-ACK timeout, us"),
    Field("snd_mss", 16, "I", "2.6", "sender MSS, bytes (payload per full segment)"),
    Field("rcv_mss", 20, "I", "2.6", "MSS guessed from what arrives, bytes"),
    Field("unacked", 24, "I", "2.6", "segments sent and not yet cumulatively ACKed"),
    Field("sacked", 28, "I", "2.6", "of those, segments the peer SACKed"),
    Field("lost", 32, "I", "2.6", "of those, segments marked lost"),
    Field("retrans", 36, "I", "2.6", "of those, segments retransmitted and still unACKed"),
    Field("last_data_sent", 44, "I", "2.6", "ms since data was last sent"),
    Field("last_data_recv", 52, "I", "2.6", "ms since data was last received"),
    Field("last_ack_recv", 56, "I", "2.6", "ms since an ACK was last received"),
    Field("pmtu", 60, "I", "2.6", "path MTU, bytes"),
    Field("rcv_ssthresh", 64, "I", "2.6", "window clamp the receiver grows its window to, bytes"),
    Field("rtt", 68, "I", "2.6", "smoothed RTT (SRTT), us"),
    Field("rttvar", 72, "I", "2.6", "RTT variation (RTTVAR, the RFC's DevRTT), us"),
    Field("snd_ssthresh", 76, "I", "2.6", "slow-start threshold, segments"),
    Field("snd_cwnd", 80, "I", "2.6", "congestion window, segments"),
    Field("advmss", 84, "I", "2.6", "MSS this side advertised, bytes"),
    Field("reordering", 88, "I", "2.6", "reordering degree the sender tolerates, segments"),
    Field("rcv_space", 96, "I", "2.6", "receive-buffer autotuning's estimate, bytes"),
    Field("total_retrans", 100, "I", "2.6.30", "retransmissions over the connection's life"),
    Field("bytes_acked", 120, "Q", "4.1", "bytes cumulatively ACKed by the peer"),
    Field("bytes_received", 128, "Q", "4.1", "bytes received in order"),
    Field("notsent_bytes", 144, "I", "4.6", "bytes written but not yet sent"),
    Field("min_rtt", 148, "I", "4.6", "smallest RTT seen (windowed), us"),
    Field("delivery_rate", 160, "Q", "4.9", "recent delivery rate, bytes/s"),
    Field("bytes_sent", 200, "Q", "4.19", "bytes sent, retransmissions included"),
    Field("bytes_retrans", 208, "Q", "4.19", "bytes retransmitted"),
    Field("snd_wnd", 228, "I", "5.4", "peer's advertised receive window, scaled, bytes"),
    Field("rcv_wnd", 232, "I", "6.2", "receive window this side advertises, scaled, bytes"),
)
_BY_NAME = {f.name: f for f in FIELDS}

#: TCP states by number (include/net/tcp_states.h), as TCP_INFO and /proc/net/tcp give them.
STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
    12: "NEW_SYN_RECV",
}  # fmt: skip
#: enum tcp_ca_state (uapi/linux/tcp.h): where the sender's loss recovery is.
CA_STATES = {0: "Open", 1: "Disorder", 2: "CWR", 3: "Recovery", 4: "Loss"}

#: The columns of a sample row (and of tcp_info.csv): time first, then derived values, then
#: every field of FIELDS.
COLUMNS: tuple[str, ...] = ("time", "in_flight", "in_flight_bytes", *(f.name for f in FIELDS))


# The sampler parses a row every half millisecond: the formats are compiled once.
_STRUCTS = [(f, struct.Struct("=" + f.ctype)) for f in FIELDS]
_UNPACKERS = tuple((f.name, s.unpack_from, f.offset, f.offset + s.size) for f, s in _STRUCTS)


def parse(raw: bytes) -> dict[str, int | None]:
    """``struct tcp_info`` bytes -> ``{field: value}``; fields beyond ``len(raw)`` are None.

    Also: ``in_flight``, the kernel's own count of segments in the network
    (``tcp_packets_in_flight()``: unacked - sacked - lost + retrans), and ``in_flight_bytes``
    (that many ``snd_mss``-sized segments); ``snd_ssthresh`` None while it is infinite.
    """
    out: dict[str, int | None] = {}
    for name, unpack, offset, end in _UNPACKERS:
        out[name] = unpack(raw, offset)[0] if end <= len(raw) else None
    if out["snd_ssthresh"] is not None and out["snd_ssthresh"] >= INFINITE_SSTHRESH:
        out["snd_ssthresh"] = None
    flight = out["unacked"] - out["sacked"] - out["lost"] + out["retrans"]  # type: ignore[operator]
    out["in_flight"] = max(flight, 0)
    out["in_flight_bytes"] = out["in_flight"] * (out["snd_mss"] or 0)
    return out


def read(sock: socket.socket) -> dict[str, int | None]:
    """The kernel's TCP state of ``sock`` now (see `parse`).

    Raises:
        OSError: not a TCP socket, or not Linux.
    """
    return parse(sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _BUFSIZE))


# The fields whose change makes a new sample row (times since last send/receive always
# change, so they do not count).
_WATCHED = (
    "state", "ca_state", "probes", "backoff", "rto", "unacked", "sacked", "lost", "retrans",
    "rtt", "rttvar", "snd_ssthresh", "snd_cwnd", "bytes_acked", "bytes_received",
    "snd_wnd", "rcv_wnd", "total_retrans",
)  # fmt: skip


class Sampler:
    """Poll one socket's TCP_INFO from a thread; keep a row whenever the state changes.

    Args:
        sock: a connected TCP socket (its owner keeps using it; getsockopt does not disturb).
        interval: seconds between polls (0.0005: a few polls per ACK at 20 Mbit/s).
        limit: keep at most this many rows (a bound, not a target).

    Use it as a context manager around the transfer; ``rows`` then holds dicts with
    `COLUMNS` keys, ``time`` in seconds since the epoch (the capture's clock).
    """

    def __init__(self, sock: socket.socket, *, interval: float = 0.0005, limit: int = 50_000):
        self.sock = sock
        self.interval = interval
        self.limit = limit
        self.rows: list[dict[str, Any]] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._first = threading.Event()
        self._thread = threading.Thread(target=self._run, name="labchat-tcpinfo", daemon=True)

    def _run(self) -> None:
        last: tuple = ()
        while not self._stop.is_set() and len(self.rows) < self.limit:
            try:
                row = read(self.sock)
            except OSError as exc:  # the socket was closed under us: the transfer is over
                self.error = str(exc)
                return
            key = tuple(row[k] for k in _WATCHED)
            if key != last:
                last = key
                self.rows.append({"time": time.time(), **row})
                self._first.set()
            time.sleep(self.interval)

    def start(self) -> Sampler:
        """Start polling; return once the first row is in (or the socket failed), so that a
        transfer started right after is sampled from its first ACK (slow start on a fast link
        lasts a few milliseconds, less than a busy machine may take to run a new thread)."""
        self._thread.start()
        deadline = time.monotonic() + 2.0
        while not self._first.wait(0.01):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                break
        return self

    def stop(self) -> list[dict[str, Any]]:
        """Take one last sample, stop the thread and return the rows."""
        self._stop.set()
        self._thread.join(5)
        try:
            self.rows.append({"time": time.time(), **read(self.sock)})
        except OSError:
            pass
        return self.rows

    def __enter__(self) -> Sampler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write sample rows as CSV with the `COLUMNS` header (None as an empty cell)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COLUMNS)
        for row in rows:
            w.writerow(
                [
                    f"{row['time']:.6f}" if k == "time" else ("" if row.get(k) is None else row[k])
                    for k in COLUMNS
                ]
            )


def read_csv(path: str | Path) -> list[dict[str, Any]]:
    """Rows written by `write_csv`: ``time`` a float, other cells int or None.

    Raises:
        ValueError: the file is not a tcp_info.csv (its header lacks ``time`` or ``snd_cwnd``).
    """
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"time", "snd_cwnd"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: not a tcp_info.csv (header {reader.fieldnames})")
        rows = []
        for raw in reader:
            row: dict[str, Any] = {}
            for k, v in raw.items():
                if k == "time":
                    row[k] = float(v)
                else:
                    row[k] = int(v) if v not in ("", None) else None
            rows.append(row)
    return rows


def ssthresh_changes(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each time the sender set its slow-start threshold, and the window it had before.

    A sender sets ssthresh when slow start ends without a loss (CUBIC's HyStart sees the RTT
    grow: ``slow start exit``, ssthresh = cwnd) and when it detects a loss (``loss``: Reno
    halves, RFC 5681 (3.1); CUBIC keeps 0.7, RFC 9438 (4.6), 717/1024 in Linux). A loss is a
    row in Recovery or Loss state, or a new ssthresh that came with retransmissions (the
    whole recovery may have fallen between two samples); a loss that sets the same ssthresh
    as the last one (Reno's sawtooth) counts too.

    Args:
        rows: sample rows (`Sampler.rows` or `read_csv`).

    Returns:
        ``{"time", "kind", "cwnd_before", "ssthresh", "ratio"}`` per change, in time order.
        ``cwnd_before`` is the largest cwnd sampled since the sender last left loss recovery:
        the window the loss found (a sample missed just before it makes it a little low).
    """
    out: list[dict[str, Any]] = []
    peak = 0
    previous: int | None = None
    retrans = 0
    recovering = False
    for row in rows:
        ssthresh, state = row["snd_ssthresh"], row["ca_state"]
        more_retrans = (row["total_retrans"] or 0) > retrans
        kind = None
        if previous is None and ssthresh is not None and not more_retrans and state < 3:
            kind, peak = "slow start exit", max(peak, row["snd_cwnd"])
        elif not recovering and (state >= 3 or (ssthresh != previous and more_retrans)):
            kind = "loss"
        if kind:
            out.append({
                "time": row["time"], "kind": kind, "cwnd_before": peak,
                "ssthresh": ssthresh, "ratio": ssthresh / peak if peak and ssthresh else None,
            })  # fmt: skip
            peak = 0
            recovering = kind == "loss"
        if state == 0:  # Open: not (or no longer) recovering from a loss
            recovering = False
            peak = max(peak, row["snd_cwnd"])
        previous, retrans = ssthresh, row["total_retrans"] or 0
    return out


def _phase(row: dict[str, Any]) -> str:
    if row["ca_state"] >= 3:
        return "recovery"
    ss = row["snd_ssthresh"]
    return "slow start" if ss is None or row["snd_cwnd"] < ss else "congestion avoidance"


def phases(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sender's congestion-control phases, one after the other, and how cwnd grew in each.

    A row is in ``recovery`` when the kernel was recovering from a loss (Recovery or Loss
    state), in ``slow start`` when cwnd was below ssthresh (or there was no ssthresh yet),
    else in ``congestion avoidance`` (RFC 5681 section 3.1).

    Args:
        rows: sample rows (`Sampler.rows` or `read_csv`, ``t`` is used when present).

    Returns:
        ``{"phase", "start", "end", "cwnd_from", "cwnd_to", "acked", "per_acked"}`` per
        stretch: times (``t``, else ``time``), cwnd at its first and last row (segments),
        segments acknowledged in between (``bytes_acked`` / ``snd_mss``), and cwnd's growth
        per segment acknowledged: about 1 in slow start (RFC 5681: cwnd += SMSS per ACK of
        new data), about 1/cwnd in congestion avoidance (one segment per window).
    """
    out: list[dict[str, Any]] = []
    run: list[dict[str, Any]] = []

    def close() -> None:
        if not run:
            return
        first, last = run[0], run[-1]
        mss = last["snd_mss"] or 1
        acked = ((last["bytes_acked"] or 0) - (first["bytes_acked"] or 0)) / mss
        grew = last["snd_cwnd"] - first["snd_cwnd"]
        out.append({
            "phase": _phase(first), "start": first.get("t", first["time"]),
            "end": last.get("t", last["time"]), "cwnd_from": first["snd_cwnd"],
            "cwnd_to": last["snd_cwnd"], "acked": acked,
            "per_acked": grew / acked if acked else None,
        })  # fmt: skip

    for row in rows:
        if run and _phase(row) != _phase(run[0]):
            close()
            run = []
        run.append(row)
    close()
    return out


def field(name: str) -> Field:
    """The `Field` called ``name`` (KeyError if labchat does not read it)."""
    return _BY_NAME[name]
