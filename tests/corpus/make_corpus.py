"""Remake the capture corpus that tests/test_corpus.py compares with tshark, field by field.

Run ``.venv/bin/python tests/corpus/make_corpus.py`` (about a minute). Everything happens in
a private network namespace (``unshare --user --map-root-user --net``): nothing touches the
host's network. The certificates are throwaway ones made here in memory; every key log is
only good for its own capture.

Made with real tools, captured with dumpcap:

* ``tls12-openssl``, ``tls13-openssl`` (with a KeyUpdate): ``openssl s_server -rev`` and
  ``s_client``, with the client's key log;
* ``tls12-cbc``, ``tls13-chacha``: AES-CBC with encrypt_then_mac, ChaCha20-Poly1305;
* ``tls12-downgrade``: a client that offers only TLS 1.2 against a server that speaks 1.3
  too: the downgrade sentinel in the ServerHello random;
* ``tls13-hrr``: the server only accepts P-256, the client sends an X25519 key share first:
  a HelloRetryRequest;
* ``tls13-resume``: a full handshake, then a PSK resumption with the saved session;
* ``tls12-alert``, ``tls13-alert``: the client does not trust the server's CA: unknown_ca;
* ``http-v4-v6``: ``python -m http.server`` fetched with curl over IPv4 and IPv6;
* ``tls-download``: curl downloads 512 KiB over TLS 1.3 from ``openssl s_server -WWW``,
  loopback at MTU 1500;
* ``https-connect``, ``socks5``: curl through a small HTTP CONNECT proxy and a SOCKS5 proxy
  (on 1080) to the TLS server, then once directly;
* ``imap-starttls``: ``openssl s_client -starttls imap`` against a small IMAP greeter;
* ``lossy-transfer``: a 1 MiB upload over labchat's two-host lab network with 3 % loss;
* ``flow-control``: a receiver that stops reading (zero window, probes, window update), then
  keepalive probes on an idle connection.

Crafted from those with scapy: ``null-v6-af24``, ``null-v6-af28``, ``loop-v6-af30``,
``null-v4-bigendian`` (BSD/macOS loopback), ``sll2`` (Linux cooked v2), ``tso-len0`` (IP
length 0), ``gre``, ``vxlan``, ``geneve``, ``port-reuse``, ``truncated`` (the file cut in the
middle of a packet) and ``gzip`` (a .pcap.gz); and, scripted from scratch, ``tcp-flags``:
the tcp.analysis flags a clean capture never shows.
"""

from __future__ import annotations

import datetime
import gzip
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TLS_PORT = 4433
HTTP_PORT = 8000
PROXY_PORT = 3128
SOCKS_PORT = 1080


# --------------------------------------------------------------------------------------------
# Namespace, certificates, capture
# --------------------------------------------------------------------------------------------


def _reexec_in_namespace() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        sys.exit("make_corpus: needs util-linux `unshare` for a private network namespace")
    env = dict(os.environ, LABCHAT_CORPUS_NS="1")
    cmd = [unshare, "--user", "--map-root-user", "--net", sys.executable, __file__, *sys.argv[1:]]
    sys.exit(subprocess.call(cmd, env=env))


def _certs(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost from it, and an unrelated CA."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labchat corpus"),
            ]
        )

    def cert(subject, issuer, key, signer, ca: bool, san: bool):
        b = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
        return b.sign(signer, hashes.SHA256())

    out: dict[str, Path] = {}
    ca_key, other_key, leaf_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = cert(name("corpus CA"), name("corpus CA"), ca_key, ca_key, True, False)
    other = cert(name("other CA"), name("other CA"), other_key, other_key, True, False)
    leaf = cert(name("localhost"), ca.subject, leaf_key, ca_key, False, True)
    pem = serialization.Encoding.PEM
    for label, obj in (("ca", ca), ("other", other), ("cert", leaf)):
        out[label] = tmp / f"{label}.pem"
        out[label].write_bytes(obj.public_bytes(pem))
    out["key"] = tmp / "key.pem"
    out["key"].write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out


class Dumpcap:
    """dumpcap on one interface of the current namespace, as a context manager."""

    def __init__(self, out: Path, iface: str = "lo") -> None:
        self.out = out
        self.iface = iface

    def __enter__(self) -> Dumpcap:
        self.proc = subprocess.Popen(
            ["dumpcap", "-q", "-i", self.iface, "-f", "tcp", "-w", str(self.out)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # dumpcap writes its header once it listens
            if self.out.exists() and self.out.stat().st_size > 0:
                time.sleep(0.3)
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"dumpcap failed: {self.proc.stderr.read()}")
            time.sleep(0.05)
        raise RuntimeError("dumpcap did not start")

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # let the last packets reach the file
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=10)


def _wait_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")


def _s_server(certs: dict[str, Path], *extra: str, cwd: Path | None = None) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            "openssl",
            "s_server",
            "-accept",
            str(TLS_PORT),
            "-cert",
            str(certs["cert"]),
            "-key",
            str(certs["key"]),
            "-quiet",
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=cwd,
    )
    # Not _wait_port: a probe connection would count as one of -naccept's connections.
    time.sleep(0.5)
    return proc


def _s_client(keys: Path, lines: list[str], *extra: str, pause: float = 0.3) -> None:
    proc = subprocess.Popen(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{TLS_PORT}",
            "-servername",
            "localhost",
            "-keylogfile",
            str(keys),
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    time.sleep(pause)
    for line in lines:
        if proc.poll() is not None:
            break
        proc.stdin.write(line + "\n")
        proc.stdin.flush()
        time.sleep(pause)
    try:
        proc.stdin.close()
    except BrokenPipeError:
        pass
    proc.wait(timeout=10)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=10)


# --------------------------------------------------------------------------------------------
# Real tools
# --------------------------------------------------------------------------------------------


def tls_openssl(certs: dict[str, Path], version: str) -> None:
    name = f"tls{version.replace('.', '')}-openssl"
    keys = HERE / f"{name}.keys.log"
    keys.unlink(missing_ok=True)
    flag = "-tls1_2" if version == "1.2" else "-tls1_3"
    with Dumpcap(HERE / f"{name}.pcapng"):
        server = _s_server(certs, "-rev", "-naccept", "1", flag)
        lines = ["hello from the client", "a second line"]
        if version == "1.3":
            lines = ["hello from the client", "k", "after a key update", "K", "last line"]
        _s_client(keys, lines, flag, "-CAfile", str(certs["ca"]))
        _stop(server)


def tls_cipher(certs: dict[str, Path], name: str, *flags: str) -> None:
    """One more cipher: AES-CBC with encrypt_then_mac (1.2), ChaCha20-Poly1305 (1.3)."""
    keys = HERE / f"{name}.keys.log"
    keys.unlink(missing_ok=True)
    with Dumpcap(HERE / f"{name}.pcapng"):
        server = _s_server(certs, "-rev", "-naccept", "1")
        _s_client(keys, ["another cipher"], *flags, "-CAfile", str(certs["ca"]))
        _stop(server)


def tls12_downgrade(certs: dict[str, Path]) -> None:
    """A server that speaks TLS 1.3 answers a 1.2-only client: the downgrade sentinel."""
    keys = HERE / "tls12-downgrade.keys.log"
    keys.unlink(missing_ok=True)
    with Dumpcap(HERE / "tls12-downgrade.pcapng"):
        server = _s_server(certs, "-rev", "-naccept", "1")
        _s_client(keys, ["offered only 1.2"], "-tls1_2", "-CAfile", str(certs["ca"]))
        _stop(server)


def tls13_hrr(certs: dict[str, Path]) -> None:
    keys = HERE / "tls13-hrr.keys.log"
    keys.unlink(missing_ok=True)
    with Dumpcap(HERE / "tls13-hrr.pcapng"):
        server = _s_server(certs, "-rev", "-naccept", "1", "-tls1_3", "-groups", "P-256")
        _s_client(
            keys,
            ["after a hello retry"],
            "-tls1_3",
            "-groups",
            "X25519:P-256",
            "-CAfile",
            str(certs["ca"]),
        )
        _stop(server)


def tls13_resume(certs: dict[str, Path], tmp: Path) -> None:
    keys = HERE / "tls13-resume.keys.log"
    keys.unlink(missing_ok=True)
    session = tmp / "session.pem"
    with Dumpcap(HERE / "tls13-resume.pcapng"):
        server = _s_server(certs, "-rev", "-naccept", "2", "-tls1_3")
        ca = ["-CAfile", str(certs["ca"]), "-tls1_3"]
        _s_client(keys, ["first connection"], "-sess_out", str(session), *ca, pause=0.5)
        _s_client(keys, ["resumed connection"], "-sess_in", str(session), *ca, pause=0.5)
        _stop(server)


def tls_alert(certs: dict[str, Path], version: str) -> None:
    name = f"tls{version.replace('.', '')}-alert"
    keys = HERE / f"{name}.keys.log"
    keys.unlink(missing_ok=True)
    flag = "-tls1_2" if version == "1.2" else "-tls1_3"
    with Dumpcap(HERE / f"{name}.pcapng"):
        server = _s_server(certs, "-rev", "-naccept", "1", flag)
        _s_client(keys, [], flag, "-CAfile", str(certs["other"]), "-verify_return_error")
        _stop(server)
    if b"CLIENT_RANDOM" not in keys.read_bytes() and b"SECRET" not in keys.read_bytes():
        keys.unlink()  # TLS 1.2 failed before the master secret was logged: nothing to keep


def http_v4_v6(tmp: Path) -> None:
    site = tmp / "site"
    site.mkdir()
    (site / "hello.txt").write_text("".join(f"line {i}: hello over HTTP\n" for i in range(40)))
    (site / "data.bin").write_bytes(bytes(range(256)) * 8)
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(HTTP_PORT), "--bind", "::"],
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(HTTP_PORT, "::1")
    time.sleep(0.3)
    with Dumpcap(HERE / "http-v4-v6.pcapng"):
        for url in (
            f"http://127.0.0.1:{HTTP_PORT}/hello.txt",
            f"http://[::1]:{HTTP_PORT}/data.bin",
        ):
            subprocess.run(["curl", "-s", "-o", os.devnull, url], check=True, timeout=10)
            time.sleep(0.2)
    _stop(server)


def _curl_https(certs: dict[str, Path], keys: Path, name: str, *via: str) -> None:
    """curl one file from the TLS server (maybe through a proxy), its keys into ``keys``."""
    subprocess.run(
        ["curl", "-s", "-o", os.devnull, "--cacert", str(certs["ca"]), *via,
         f"https://localhost:{TLS_PORT}/{name}"],
        env=dict(os.environ, SSLKEYLOGFILE=str(keys)), check=True, timeout=30,
    )  # fmt: skip


def tls_download(certs: dict[str, Path], tmp: Path) -> None:
    keys = HERE / "tls-download.keys.log"
    keys.unlink(missing_ok=True)
    www = tmp / "www"
    www.mkdir()
    (www / "big.bin").write_bytes(os.urandom(512 * 1024))
    subprocess.run(["ip", "link", "set", "lo", "mtu", "1500"], check=True)
    try:
        with Dumpcap(HERE / "tls-download.pcapng"):
            server = _s_server(certs, "-WWW", "-naccept", "1", "-tls1_3", cwd=www)
            _curl_https(certs, keys, "big.bin")
            _stop(server)
    finally:
        subprocess.run(["ip", "link", "set", "lo", "mtu", "65536"], check=True)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    def one(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    threads = [threading.Thread(target=one, args=p) for p in ((a, b), (b, a))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    a.close()
    b.close()


def _proxy(port: int, handshake) -> tuple[socket.socket, threading.Thread]:
    """A one-connection proxy: ``handshake(client) -> (host, port)``, then bytes both ways."""
    listener = socket.create_server(("127.0.0.1", port))

    def run() -> None:
        client, _ = listener.accept()
        host, dport = handshake(client)
        _pipe(client, socket.create_connection((host, dport)))

    thread = threading.Thread(target=run)
    thread.start()
    return listener, thread


def _connect_handshake(client: socket.socket) -> tuple[str, int]:
    request = b""
    while b"\r\n\r\n" not in request:
        request += client.recv(4096)
    target = request.split(b" ", 2)[1].decode()
    host, port = target.rsplit(":", 1)
    client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    return ("127.0.0.1" if host == "localhost" else host), int(port)


def _socks5_handshake(client: socket.socket) -> tuple[str, int]:
    greeting = client.recv(2)
    client.recv(greeting[1])
    client.sendall(b"\x05\x00")
    head = client.recv(4)
    if head[3] == 1:
        host = socket.inet_ntoa(client.recv(4))
    else:
        host = client.recv(client.recv(1)[0]).decode()
    port = struct.unpack("!H", client.recv(2))[0]
    client.sendall(b"\x05\x00\x00\x01\x7f\x00\x00\x01" + struct.pack("!H", port))
    return ("127.0.0.1" if host == "localhost" else host), port


def proxied(certs: dict[str, Path], name: str, tmp: Path) -> None:
    keys = HERE / f"{name}.keys.log"
    keys.unlink(missing_ok=True)
    www = tmp / f"www-{name}"
    www.mkdir()
    (www / "index.txt").write_text("through the tunnel\n")
    with Dumpcap(HERE / f"{name}.pcapng"):
        server = _s_server(certs, "-WWW", "-naccept", "2", "-tls1_3", cwd=www)
        if name == "https-connect":
            listener, thread = _proxy(PROXY_PORT, _connect_handshake)
            via = ["-x", f"http://127.0.0.1:{PROXY_PORT}"]
        else:
            listener, thread = _proxy(SOCKS_PORT, _socks5_handshake)
            via = ["--socks5-hostname", f"127.0.0.1:{SOCKS_PORT}"]
        _curl_https(certs, keys, "index.txt", *via)
        thread.join(timeout=10)
        listener.close()
        # Then once without the proxy: its tcp.stream number shows whether the proxy's
        # dissector in tshark used one up (SOCKS on 1080 does).
        _curl_https(certs, keys, "index.txt")
        _stop(server)


def imap_starttls(certs: dict[str, Path]) -> None:
    """openssl s_client -starttls imap against a small IMAP greeter that upgrades to TLS."""
    import ssl

    keys = HERE / "imap-starttls.keys.log"
    keys.unlink(missing_ok=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["cert"], certs["key"])
    listener = socket.create_server(("127.0.0.1", 143))

    def serve() -> None:
        conn, _ = listener.accept()
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] corpus ready\r\n")
        while True:
            line = b""
            while not line.endswith(b"\n"):
                line += conn.recv(1)
            tag = line.split(b" ", 1)[0]
            if b"STARTTLS" in line.upper():
                conn.sendall(tag + b" OK Begin TLS negotiation now\r\n")
                break
            conn.sendall(b"* CAPABILITY IMAP4rev1 STARTTLS\r\n" + tag + b" OK done\r\n")
        tls = ctx.wrap_socket(conn, server_side=True)
        while data := tls.recv(1024):
            tls.sendall(b"* BYE " + data)
        tls.close()

    with Dumpcap(HERE / "imap-starttls.pcapng"):
        thread = threading.Thread(target=serve)
        thread.start()
        proc = subprocess.Popen(
            ["openssl", "s_client", "-connect", "127.0.0.1:143", "-starttls", "imap",
             "-keylogfile", str(keys), "-CAfile", str(certs["ca"]), "-no_ign_eof"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)
        proc.stdin.write(b"a2 LOGOUT\r\n")
        proc.stdin.flush()
        time.sleep(0.5)
        proc.stdin.close()
        proc.wait(timeout=10)
        thread.join(timeout=10)
        listener.close()


def lossy_transfer() -> None:
    sys.path.insert(0, str(ROOT))
    from labchat.capture.netns import LabNetwork
    from labchat.capture.shaping import Shaping

    port = 7100
    size = 1024 * 1024
    with LabNetwork(Shaping(rate="40mbit", loss_percent=3.0), port=port) as net:
        with net.server():
            listener = socket.create_server((net.server_ip, port))
            dump = Dumpcap(HERE / "lossy-transfer.pcapng", net.server_iface).__enter__()

            def sink() -> None:
                conn, _ = listener.accept()
                got = 0
                while data := conn.recv(65536):
                    got += len(data)
                conn.sendall(f"got {got} bytes\n".encode())
                conn.close()

            thread = threading.Thread(target=sink)
            thread.start()
        with net.client():
            sock = socket.create_connection((net.server_ip, port))
            payload = bytes(i % 251 for i in range(size))
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            sock.recv(100)
            sock.close()
        thread.join(timeout=60)
        listener.close()
        with net.server():
            dump.__exit__(None, None, None)


def flow_control() -> None:
    """A receiver that stops reading, then an idle connection with keepalive probes."""
    with Dumpcap(HERE / "flow-control.pcapng"):
        listener = socket.create_server(("127.0.0.1", 7200))
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        done = threading.Event()

        def slow_reader() -> None:
            conn, _ = listener.accept()
            time.sleep(1.5)  # not reading: the window fills, then zero-window probes
            while data := conn.recv(4096):
                if data.endswith(b"!"):
                    break
            conn.sendall(b"ok\n")
            done.wait(10)
            conn.close()

        thread = threading.Thread(target=slow_reader)
        thread.start()
        client = socket.create_connection(("127.0.0.1", 7200))
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        client.sendall(b"x" * 200_000 + b"!")
        client.recv(10)
        # Idle with short keepalive timers: probes every second, each answered.
        client.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 1)
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
        time.sleep(3.5)
        done.set()
        client.close()
        thread.join(timeout=10)
        listener.close()


# --------------------------------------------------------------------------------------------
# Crafted from the real captures with scapy
# --------------------------------------------------------------------------------------------


def _frames(path: Path):
    from scapy.utils import rdpcap

    return rdpcap(str(path))


def _ip_packets(path: Path, version: int, limit: int | None = None):
    """(time, IP layer) of the TCP packets of one IP version, from an Ethernet capture."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6

    cls = IP if version == 4 else IPv6
    out = [(p.time, p[cls]) for p in _frames(path) if cls in p and TCP in p]
    return out[:limit]


def _write_raw(
    path: Path, linktype: int, frames: list[tuple[float, bytes]], endian: str = "<"
) -> None:
    with open(path, "wb") as f:
        f.write(struct.pack(endian + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for t, data in frames:
            sec = int(t)
            usec = int(round((float(t) - sec) * 1_000_000))
            f.write(struct.pack(endian + "IIII", sec, usec, len(data), len(data)) + data)


def crafted() -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import GRE, Ether
    from scapy.layers.vxlan import VXLAN
    from scapy.packet import Raw

    http = HERE / "http-v4-v6.pcapng"
    v6 = _ip_packets(http, 6)
    v4 = _ip_packets(http, 4)
    # BSD / macOS loopback: a 4-byte address family, in host order (DLT_NULL) or network
    # order (DLT_LOOP). AF_INET6 is 24 on NetBSD/OpenBSD, 28 on FreeBSD, 30 on macOS.
    _write_raw(
        HERE / "null-v6-af24.pcap", 0, [(t, struct.pack("<I", 24) + bytes(p)) for t, p in v6]
    )
    _write_raw(
        HERE / "null-v6-af28.pcap", 0, [(t, struct.pack("<I", 28) + bytes(p)) for t, p in v6]
    )
    _write_raw(
        HERE / "loop-v6-af30.pcap", 108, [(t, struct.pack(">I", 30) + bytes(p)) for t, p in v6]
    )
    _write_raw(
        HERE / "null-v4-bigendian.pcap",
        0,
        [(t, struct.pack(">I", 2) + bytes(p)) for t, p in v4],
        endian=">",
    )
    # Linux cooked capture v2 (LINKTYPE_LINUX_SLL2): protocol, reserved, ifindex, ARPHRD,
    # packet type, address length, 8 address bytes.
    sll2 = [
        (t, struct.pack("!HHIHBB8s", 0x0800, 0, 1, 772, 0, 6, b"\x00" * 8) + bytes(p))
        for t, p in v4
    ]
    _write_raw(HERE / "sll2.pcap", 276, sll2)
    # TSO: the NIC fills the IP total length in later, so the capture shows 0.
    tso = []
    for t, p in v4:
        raw = bytearray(bytes(p))
        if len(p[TCP].payload):
            raw[2:4] = b"\x00\x00"
        tso.append((t, bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")) + raw))
    _write_raw(HERE / "tso-len0.pcap", 1, [(t, d[:12] + b"\x08\x00" + d[14:]) for t, d in tso])
    # Tunnels: the IPv4 conversation inside GRE (with a key), VXLAN and Geneve.
    outer = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
    inner_eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    gre, vxlan, geneve = [], [], []
    for t, p in v4:
        ip = IP(bytes(p))
        gre.append(
            (
                t,
                bytes(
                    outer
                    / IP(src="192.0.2.1", dst="192.0.2.2")
                    / GRE(key_present=1, key=7, proto=0x0800)
                    / ip
                ),
            )
        )
        vxlan.append(
            (
                t,
                bytes(
                    outer
                    / IP(src="192.0.2.1", dst="192.0.2.2")
                    / UDP(sport=49152, dport=4789)
                    / VXLAN(vni=42)
                    / inner_eth
                    / ip
                ),
            )
        )
        gen_hdr = struct.pack("!BBHI", 0, 0, 0x6558, 42 << 8)
        geneve.append(
            (
                t,
                bytes(
                    outer
                    / IP(src="192.0.2.1", dst="192.0.2.2")
                    / UDP(sport=49153, dport=6081)
                    / Raw(gen_hdr + bytes(inner_eth / ip))
                ),
            )
        )
    for name, frames in (("gre", gre), ("vxlan", vxlan), ("geneve", geneve)):
        fixed = []
        for t, d in frames:
            pkt = Ether(d)
            if IP in pkt:
                del pkt[IP].len, pkt[IP].chksum
                if UDP in pkt:
                    del pkt[UDP].len, pkt[UDP].chksum
            fixed.append((t, bytes(pkt)))
        _write_raw(HERE / f"{name}.pcap", 1, fixed)
    # Port reuse: the same 4-tuple twice, the second time with another initial sequence number.
    first = [(t, p) for t, p in v4 if p[TCP].dport == HTTP_PORT or p[TCP].sport == HTTP_PORT]
    conv = [
        (t, p)
        for t, p in first
        if {p[TCP].sport, p[TCP].dport} == {first[0][1][TCP].sport, first[0][1][TCP].dport}
    ]
    shift = conv[-1][0] - conv[0][0] + 1
    reuse = []
    for t, p in conv:
        reuse.append((t, bytes(inner_eth / IP(bytes(p)))))
    for t, p in conv:
        q = IP(bytes(p))
        q[TCP].seq = (q[TCP].seq + 0x10000000) % 2**32 if q[TCP].sport != HTTP_PORT else q[TCP].seq
        if q[TCP].sport == HTTP_PORT and q[TCP].flags & 0x10:
            q[TCP].ack = (q[TCP].ack + 0x10000000) % 2**32
        del q[TCP].chksum
        reuse.append((t + shift, bytes(inner_eth / q)))
    _write_raw(HERE / "port-reuse.pcap", 1, reuse)
    # A file cut short in the middle of a packet, and a gzip'd one.
    data = (HERE / "tls12-openssl.pcapng").read_bytes()
    (HERE / "truncated.pcapng").write_bytes(data[: len(data) * 2 // 3])
    with gzip.GzipFile(HERE / "gzip.pcap.gz", "wb", mtime=0) as f:  # mtime 0: reproducible
        f.write((HERE / "sll2.pcap").read_bytes())
    del IPv6


def tcp_flags() -> None:
    """A scripted conversation for the tcp.analysis flags a clean capture never shows.

    A data segment the capture missed (lost_segment, then ack_lost_segment), two segments
    swapped (out_of_order), data sent again after it was acknowledged
    (spurious_retransmission), a zero window with a 1-byte probe and its answer
    (zero_window_probe, zero_window_probe_ack, then window_update), and a keep-alive.
    """
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    c, s = ("10.0.0.1", 40000), ("10.0.0.2", 9000)
    eth = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    frames: list[tuple[float, bytes]] = []
    clock = [1_700_000_000.0]

    def send(src, dst, flags, seq, ack, data=b"", win=512, opts=(), dt=0.01) -> None:
        clock[0] += dt
        pkt = (
            eth
            / IP(src=src[0], dst=dst[0])
            / TCP(
                sport=src[1],
                dport=dst[1],
                flags=flags,
                seq=seq,
                ack=ack,
                window=win,
                options=list(opts),
            )
            / data
        )
        frames.append((clock[0], bytes(pkt)))

    cs, ss = 1000, 5000  # initial sequence numbers
    send(c, s, "S", cs, 0, win=64240, opts=[("MSS", 1460), ("WScale", 7)])
    send(s, c, "SA", ss, cs + 1, win=65160, opts=[("MSS", 1460), ("WScale", 7)])
    send(c, s, "A", cs + 1, ss + 1)
    block = b"d" * 100
    send(c, s, "PA", cs + 1, ss + 1, block)  # 1..101
    # (101..201 is never captured)
    send(c, s, "PA", cs + 201, ss + 1, block)  # lost_segment
    send(s, c, "A", ss + 1, cs + 101)
    send(s, c, "A", ss + 1, cs + 301)  # acknowledges bytes never captured: ack_lost_segment
    send(c, s, "PA", cs + 401, ss + 1, block)  # 401..501 before 301..401
    send(c, s, "PA", cs + 301, ss + 1, block, dt=0.0005)  # out_of_order
    send(s, c, "A", ss + 1, cs + 501)
    send(c, s, "PA", cs + 401, ss + 1, block, dt=0.2)  # spurious_retransmission
    send(s, c, "A", ss + 1, cs + 501, win=0)  # zero_window
    send(c, s, "A", cs + 501, ss + 1, b"z", dt=0.2)  # zero_window_probe
    send(s, c, "A", ss + 1, cs + 501, win=0)  # zero_window_probe_ack
    send(s, c, "A", ss + 1, cs + 501, win=512, dt=0.3)  # window_update
    send(c, s, "PA", cs + 501, ss + 1, block)
    send(s, c, "A", ss + 1, cs + 601)
    send(c, s, "A", cs + 600, ss + 1, dt=2.0)  # keep_alive
    send(s, c, "A", ss + 1, cs + 601)  # keep_alive_ack
    send(c, s, "FA", cs + 601, ss + 1)
    send(s, c, "FA", ss + 1, cs + 602)
    send(c, s, "A", cs + 602, ss + 2)
    _write_raw(HERE / "tcp-flags.pcap", 1, frames)


def main() -> None:
    if os.environ.get("LABCHAT_CORPUS_NS") != "1":
        _reexec_in_namespace()
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory(prefix="labchat-corpus-") as tmp_name:
        tmp = Path(tmp_name)
        certs = _certs(tmp)
        only = set(sys.argv[1:])
        steps = {
            "tls12-openssl": lambda: tls_openssl(certs, "1.2"),
            "tls13-openssl": lambda: tls_openssl(certs, "1.3"),
            "tls13-hrr": lambda: tls13_hrr(certs),
            "tls12-downgrade": lambda: tls12_downgrade(certs),
            "tls12-cbc": lambda: tls_cipher(
                certs, "tls12-cbc", "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA256"
            ),
            "tls13-chacha": lambda: tls_cipher(
                certs, "tls13-chacha", "-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"
            ),
            "tls13-resume": lambda: tls13_resume(certs, tmp),
            "tls12-alert": lambda: tls_alert(certs, "1.2"),
            "tls13-alert": lambda: tls_alert(certs, "1.3"),
            "http-v4-v6": lambda: http_v4_v6(tmp),
            "tls-download": lambda: tls_download(certs, tmp),
            "https-connect": lambda: proxied(certs, "https-connect", tmp),
            "socks5": lambda: proxied(certs, "socks5", tmp),
            "imap-starttls": lambda: imap_starttls(certs),
            "lossy-transfer": lossy_transfer,
            "flow-control": flow_control,
            "crafted": crafted,
            "tcp-flags": tcp_flags,
        }
        for name, step in steps.items():
            if not only or name in only:
                print(f"make_corpus: {name}", flush=True)
                step()


if __name__ == "__main__":
    main()
