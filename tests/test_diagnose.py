"""labchat.diagnose: the facts behind error messages, from real files and real servers."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from cryptography.hazmat.primitives import serialization

from labchat.certs import CA
from labchat.diagnose import (
    CertificateFileError,
    CertificateInfo,
    check_key_pair,
    check_server_certificate,
    is_listening,
    probe_server,
    read_certificates,
)

pytestmark = pytest.mark.usefixtures("no_thread_leak")


def test_read_certificates_reads_a_bundle_in_order(tmp_path) -> None:
    ca = CA()
    leaf = ca.issue_cert("chat.lab", "192.0.2.7")
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(leaf.cert_chain_pems[0].bytes() + ca.cert_pem.bytes())
    first, second = read_certificates(bundle)
    assert first.names == ("chat.lab", "192.0.2.7") and not first.is_ca
    assert first.issuer == second.subject == "labchat lab CA root" and second.is_ca
    assert first.validity_problem() is None


def test_read_certificates_names_the_file_it_cannot_use(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="CA file .*nope.pem not found") as missing:
        read_certificates(tmp_path / "nope.pem", what="CA file")
    assert missing.value.filename == str(tmp_path / "nope.pem")
    key = tmp_path / "key.pem"
    CA().private_key_pem.write_to_path(key, private=True)
    with pytest.raises(CertificateFileError, match="holds no PEM certificate .*private key"):
        read_certificates(key)
    with pytest.raises(CertificateFileError, match="is a directory"):
        read_certificates(tmp_path)


def test_validity_problem_gives_the_dates() -> None:
    start = dt.datetime(2030, 1, 2, 3, 4, tzinfo=dt.timezone.utc)
    info = CertificateInfo("s", "i", (), start, start + dt.timedelta(days=1))
    assert info.validity_problem(start - dt.timedelta(seconds=1)) == (
        "is not valid before 2030-01-02 03:04 UTC "
        "(valid 2030-01-02 03:04 UTC to 2030-01-03 03:04 UTC)"
    )
    assert info.validity_problem(start + dt.timedelta(days=2)).startswith(
        "expired on 2030-01-03 03:04 UTC"
    )
    assert info.validity_problem(start + dt.timedelta(hours=1)) is None


def test_check_key_pair_with_the_key_in_the_certificate_file(tmp_path) -> None:
    leaf = CA().issue_cert("localhost")
    both = tmp_path / "both.pem"
    both.write_bytes(leaf.cert_chain_pems[0].bytes() + leaf.private_key_pem.bytes())
    assert check_key_pair(both).names == ("localhost",)
    other = tmp_path / "other.key"
    CA().issue_cert("x").private_key_pem.write_to_path(other, private=True)
    with pytest.raises(CertificateFileError, match="does not match the private key") as mismatch:
        check_key_pair(both, other)
    assert mismatch.value.path == other


def test_check_key_pair_refuses_an_encrypted_key(tmp_path) -> None:
    leaf = CA().issue_cert("localhost")
    cert, key = tmp_path / "c.pem", tmp_path / "c.key"
    leaf.cert_chain_pems[0].write_to_path(cert)
    pkey = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), None)
    key.write_bytes(
        pkey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(CertificateFileError, match="encrypted with a passphrase"):
        check_key_pair(cert, key)


def test_check_server_certificate_refuses_an_expired_one(tmp_path) -> None:
    ended = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)
    leaf = CA().issue_cert("localhost", not_after=ended)
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    leaf.cert_chain_pems[0].write_to_path(cert)
    leaf.private_key_pem.write_to_path(key, private=True)
    with pytest.raises(CertificateFileError, match=f"server certificate {cert} expired on"):
        check_server_certificate(cert, key)
    assert check_server_certificate(cert, key, now=ended - dt.timedelta(hours=1)).names == (
        "localhost",
    )


def test_probe_server_tells_plaintext_from_tls_and_reads_the_certificate(make_server) -> None:
    plain = make_server(plain=True)
    probe = probe_server(*plain.address)
    assert probe.reachable and probe.plaintext_labchat and not probe.speaks_tls
    assert probe.greeting.startswith("HELLO labchat/1 ")

    tls13 = make_server(tls_version="1.3")
    probe = probe_server(*tls13.address)
    assert probe.greeting is None and probe.tls_versions == ("1.3",)
    assert probe.certificate is not None and "127.0.0.1" in probe.certificate.names

    both = make_server()
    assert probe_server(*both.address, listen_first=False).tls_versions == ("1.2", "1.3")


def test_probe_server_on_a_closed_port() -> None:
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        port = bound.getsockname()[1]
        assert probe_server("127.0.0.1", port) == probe_server("127.0.0.1", port, versions=())
        assert not probe_server("127.0.0.1", port).reachable
        assert not is_listening("127.0.0.1", port)
