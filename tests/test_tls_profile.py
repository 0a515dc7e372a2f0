"""The server's TLS profile, checked from outside (issue 3).

* An sslyze scan of a running `labchat serve` must pass the Mozilla "intermediate" check
  (server side TLS guidelines 5.7, as shipped in sslyze).
* Private keys are written 0600, and `labchat serve` refuses a key that others can read,
  with one line that names the file and the `chmod 600` that fixes it.

docs/security.md explains each setting and records what the scan reports.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from labchat.auth import UserStore
from labchat.certs import create_lab_certs
from labchat.tls import MOZILLA_INTERMEDIATE_CIPHERS, client_context, server_context

posix_only = pytest.mark.skipif(os.name == "nt", reason="POSIX file modes")

# Mozilla intermediate, TLS 1.2 part, in IANA names (the TLS 1.3 suites are all AEAD).
INTERMEDIATE_TLS12_IANA = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}


TLS13_SUITES = {"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


@dataclass
class Served:
    host: str
    port: int
    certs: Path
    process: subprocess.Popen


def _start_serve(tmp: Path, *extra: str) -> Served:
    certs = tmp / "certs"
    if not certs.exists():
        create_lab_certs(certs)
    users = tmp / "users.json"
    if not users.exists():
        UserStore(users, n=2**10, r=8, p=1).add("alice", "correct horse")
    cmd = [sys.executable, "-m", "labchat", "serve", "--port", "0", "--certs", str(certs)]
    cmd += ["--users", str(users), *extra]
    # The server logs every connection on stderr: send that to a file, not to a pipe that
    # nobody reads (a full pipe would block the server's logging, and so the server).
    log = tmp / "serve.log"
    with log.open("w") as err:
        process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=tmp)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.match(r"listening on (\S+):(\d+) ", line)
    if not match:
        process.kill()
        process.communicate(timeout=5)
        raise AssertionError(f"labchat serve did not start: {line!r} {log.read_text()!r}")
    return Served(match.group(1), int(match.group(2)), certs, process)


def _stop(served: Served) -> None:
    served.process.terminate()
    try:
        served.process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        served.process.kill()
        served.process.communicate()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # Generous limits: a scanner opens a few hundred short connections from one address.
    s = _start_serve(tmp_path_factory.mktemp("profile"), "--handshake-timeout", "5")
    try:
        yield s
    finally:
        _stop(s)


# --------------------------------------------------------------------------- the profile


def test_tls12_cipher_list_is_mozilla_intermediate_ecdhe_aead() -> None:
    ctx = client_context()
    tls12 = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 == set(MOZILLA_INTERMEDIATE_CIPHERS.split(":"))
    for name in tls12:
        assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)


def test_contexts_default_to_tls12_and_tls13_only(tmp_path: Path) -> None:
    paths = create_lab_certs(tmp_path / "certs")
    for ctx in (
        server_context(paths.server_cert, paths.server_key),
        client_context(cafile=paths.ca_cert),
    ):
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
        assert ctx.maximum_version in (ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_3)
        assert ctx.options & ssl.OP_NO_COMPRESSION


@pytest.mark.parametrize("old", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_served_port_refuses_old_tls(served: Served, old: ssl.TLSVersion) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # that is the point here
            ctx.minimum_version = old
            ctx.maximum_version = old
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except (ValueError, ssl.SSLError):
        pytest.skip(f"this OpenSSL cannot even offer {old.name}")
    with socket.create_connection((served.host, served.port), timeout=5) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.recv(1)


def _sslyze_scan(served: Served):  # -> ServerScanResult
    sslyze = pytest.importorskip("sslyze")
    from sslyze import (
        CertificateInfoExtraArgument,
        ScanCommandsExtraArguments,
        Scanner,
        ServerNetworkConfiguration,
        ServerNetworkLocation,
        ServerScanRequest,
    )
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    )

    # hostname is what goes into SNI and is checked against the certificate; giving
    # ip_address as well means sslyze does no DNS lookup.
    location = ServerNetworkLocation(hostname="localhost", port=served.port, ip_address=served.host)
    request = ServerScanRequest(
        server_location=location,
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication="localhost", network_timeout=5
        ),
        scan_commands=set(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER),
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=served.certs / "ca.pem")
        ),
    )
    scanner = Scanner(per_server_concurrent_connections_limit=4)
    scanner.queue_scans([request])
    results = list(scanner.get_results())
    assert len(results) == 1
    assert sslyze.ServerScanStatusEnum.COMPLETED == results[0].scan_status, results[0]
    return results[0]


# sslyze's bundled trust stores hold a root with a negative serial number; cryptography warns.
@pytest.mark.filterwarnings("ignore:Parsed a serial number")
def test_sslyze_mozilla_intermediate(served: Served) -> None:
    pytest.importorskip("sslyze")
    from sslyze.mozilla_tls_profile.tls_config_checker import (
        MozillaTlsConfiguration,
        ServerNotCompliantWithTlsConfiguration,
        TlsConfigurationEnum,
        check_server_against_tls_configuration,
    )

    start = time.monotonic()
    result = _sslyze_scan(served)
    elapsed = time.monotonic() - start
    scan = result.scan_result
    assert scan is not None

    # What the scan saw, spelled out, so a failure says which part broke.
    supported = {
        name: getattr(scan, f"{name}_cipher_suites").result.is_tls_version_supported
        for name in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3")
    }
    assert supported == {
        "ssl_2_0": False,
        "ssl_3_0": False,
        "tls_1_0": False,
        "tls_1_1": False,
        "tls_1_2": True,
        "tls_1_3": True,
    }
    tls12 = {s.cipher_suite.name for s in scan.tls_1_2_cipher_suites.result.accepted_cipher_suites}
    # The lab certificate is ECDSA, so only the ECDSA half of the list can be negotiated.
    assert tls12 and tls12 <= INTERMEDIATE_TLS12_IANA
    assert all("_ECDSA_" in name for name in tls12)
    tls13 = {s.cipher_suite.name for s in scan.tls_1_3_cipher_suites.result.accepted_cipher_suites}
    assert tls13 <= {
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    }
    assert not scan.tls_compression.result.supports_compression
    assert scan.tls_fallback_scsv.result.supports_fallback_scsv
    assert not scan.heartbleed.result.is_vulnerable_to_heartbleed
    assert not scan.openssl_ccs_injection.result.is_vulnerable_to_ccs_injection
    assert scan.session_renegotiation.result.supports_secure_renegotiation
    assert scan.tls_extended_master_secret.result.supports_ems_extension
    deployment = scan.certificate_info.result.certificate_deployments[0]
    assert deployment.verified_certificate_chain is not None  # the lab CA, given as custom CA
    curves = {c.name for c in scan.elliptic_curves.result.supported_curves or []}

    config = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    try:
        check_server_against_tls_configuration(result, config)
        issues: dict[str, str] = {}
    except ServerNotCompliantWithTlsConfiguration as exc:
        issues = exc.issues
    print(f"\nsslyze scan in {elapsed:.1f} s: TLS 1.2 {sorted(tls12)}, TLS 1.3 {sorted(tls13)}")
    print(f"curves offered: {sorted(curves)}; Mozilla intermediate issues: {issues or 'none'}")
    # No finding at all: the key-exchange groups are exactly the profile's three
    # (labchat.tlsgroups; before issue 11 OpenSSL's defaults added X448 and P-521).
    assert issues == {}
    assert curves == {"X25519", "secp256r1", "secp384r1"}


# --------------------------------------------------------------------------- key exchange

openssl = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(openssl is None, reason="openssl is not installed (.ci/run)")


def s_client(served: Served, version: str, groups: str) -> subprocess.CompletedProcess:
    """`openssl s_client -brief` offering only *groups*; stdin at EOF, so it says nothing."""
    assert openssl is not None
    return subprocess.run(
        [openssl, "s_client", "-connect", f"{served.host}:{served.port}", version]
        + ["-groups", groups, "-servername", "localhost", "-brief"]
        + ["-CAfile", str(served.certs / "ca.pem")],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
    )


@needs_openssl
@pytest.mark.parametrize(
    ("version", "groups"),
    [
        ("-tls1_3", "ffdhe2048"),
        ("-tls1_3", "ffdhe8192"),
        ("-tls1_3", "ffdhe2048:ffdhe3072:ffdhe4096:ffdhe6144:ffdhe8192"),
        ("-tls1_3", "X448"),
        ("-tls1_3", "secp521r1"),
        ("-tls1_2", "ffdhe2048"),
        ("-tls1_2", "ffdhe8192"),
    ],
)
def test_key_exchange_outside_the_profile_is_refused(
    served: Served, version: str, groups: str
) -> None:
    result = s_client(served, version, groups)
    assert result.returncode != 0
    assert "handshake failure" in result.stderr + result.stdout


@needs_openssl
@pytest.mark.parametrize(
    ("version", "groups", "temp_key"),
    [
        ("-tls1_3", "X25519", "X25519"),
        ("-tls1_3", "P-256", "prime256v1"),
        ("-tls1_3", "P-384", "secp384r1"),
        # TLS 1.2 also needs P-256 offered: the client's groups must name the curve of the
        # server's ECDSA certificate (RFC 8422 section 5.1.1), whatever the key exchange.
        ("-tls1_2", "X25519:P-256", "X25519"),
        ("-tls1_2", "P-384:P-256", "prime256v1"),  # both allowed: the server's preference
        ("-tls1_2", "X448:ffdhe2048:P-256", "prime256v1"),
        ("-tls1_3", "ffdhe8192:secp521r1:X448:P-384", "secp384r1"),
    ],
)
def test_profile_groups_are_negotiated(
    served: Served, version: str, groups: str, temp_key: str
) -> None:
    result = s_client(served, version, groups)
    assert result.returncode == 0, result.stderr
    assert f"Server Temp Key: {temp_key}" in result.stderr.replace("ECDH, ", "")


_KERNEL = """
import ssl, sys, time
# Like a Jupyter kernel: ssl was imported and OpenSSL fully initialised (a handshake done in
# memory) long before anybody starts a labchat server.
server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
server_ctx.load_cert_chain(sys.argv[1] + "/server.pem", sys.argv[1] + "/server.key")
client_ctx = ssl.create_default_context(cafile=sys.argv[1] + "/ca.pem")
c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
for _ in range(10):
    for obj, out, peer_in in ((client, c_out, s_in), (server, s_out, c_in)):
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        peer_in.write(out.read())
assert client.version() == "TLSv1.3"
from labchat import Server
with Server(port=0, certs_dir=sys.argv[1], users=sys.argv[2]) as labchat_server:
    print(labchat_server.address[1], flush=True)
    sys.stdin.read()
"""


@needs_openssl
def test_groups_are_restricted_in_a_process_that_initialised_openssl_first(
    tmp_path: Path,
) -> None:
    certs = tmp_path / "certs"
    create_lab_certs(certs)
    users = tmp_path / "users.json"
    UserStore(users, n=2**10, r=8, p=1).add("alice", "correct horse")
    process = subprocess.Popen(
        [sys.executable, "-c", _KERNEL, str(certs), str(users)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        served = Served("127.0.0.1", port, certs, process)
        assert s_client(served, "-tls1_3", "ffdhe2048").returncode != 0
        accepted = s_client(served, "-tls1_3", "X25519")
        assert accepted.returncode == 0, accepted.stderr
    finally:
        process.communicate("", timeout=30)
    assert process.returncode == 0


def test_set_groups_reports_how_and_refuses_unknown_names() -> None:
    from labchat.tlsgroups import set_groups

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    how = set_groups(ctx)
    expected = "SSLContext.set_groups" if hasattr(ctx, "set_groups") else "SSL_CTX_set1_groups_list"
    assert how == expected
    with pytest.raises(ValueError, match="refused"):
        set_groups(ctx, ("X25519", "no-such-group"))
    # The failed call left no error behind for the next ssl call in this thread.
    ctx.set_ciphers("ECDHE+AESGCM")


# --------------------------------------------------------------------------- key files


@posix_only
def test_lab_private_keys_are_0600(tmp_path: Path) -> None:
    paths = create_lab_certs(tmp_path / "certs")
    for key in (paths.ca_key, paths.server_key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    for cert in (paths.ca_cert, paths.server_cert):
        assert not stat.S_IMODE(cert.stat().st_mode) & 0o022, cert


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_serve_refuses_key_readable_by_others(tmp_path: Path, mode: int) -> None:
    paths = create_lab_certs(tmp_path / "certs")
    UserStore(tmp_path / "users.json", n=2**10, r=8, p=1).add("alice", "correct horse")
    os.chmod(paths.server_key, mode)
    proc = subprocess.run(
        [sys.executable, "-m", "labchat", "serve", "--port", "0", "--certs", str(paths.directory)]
        + ["--users", str(tmp_path / "users.json")],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "listening" not in proc.stdout
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, proc.stderr
    assert str(paths.server_key) in err[0]
    assert f"chmod 600 {paths.server_key}" in err[0]
    assert "Traceback" not in proc.stderr
