"""labchat.trust: a certificate chain checked as a TLS client checks it, link by link."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography.hazmat.primitives import serialization

from labchat import trust
from labchat.certs import CA

NOW = dt.datetime.now(dt.timezone.utc)


@pytest.fixture(scope="module")
def lab():
    ca = CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    return ca, leaf.certificate


def _checks(report) -> dict[str, bool]:
    return {c.what: c.ok for c in report.checks[0]}


def test_a_chain_signed_by_the_trusted_ca_is_trusted(lab) -> None:
    ca, leaf = lab
    report = trust.explain([leaf.public_bytes(serialization.Encoding.DER)], ca.cert_pem.bytes(),
                           host="localhost", at=NOW)  # fmt: skip
    assert report.ok and report.verdict == "trusted"
    assert report.anchor == ca.certificate
    assert _checks(report) == {"signature": True, "validity": True, "name": True}
    assert trust.signed_by(leaf, ca.certificate)


def test_another_ca_is_refused_at_the_signature(lab) -> None:
    _, leaf = lab
    other = CA()
    report = trust.explain([leaf], other.cert_pem.bytes().decode(), host="localhost", at=NOW)
    assert not report.ok and "signature" in report.verdict
    assert report.anchor is None
    assert _checks(report) == {"signature": False, "validity": True, "name": True}
    assert not trust.signed_by(leaf, other.certificate)


def test_an_expired_certificate_fails_validity_only(lab) -> None:
    ca, _ = lab
    old = ca.issue_cert("localhost", not_after=NOW - dt.timedelta(days=1)).certificate
    report = trust.explain([old], [ca.certificate], host="localhost", at=NOW)
    assert not report.ok and "not valid at validation time" in report.verdict
    assert _checks(report) == {"signature": True, "validity": False, "name": True}
    assert report.checks[0][1].detail.startswith("expired: ")


def test_a_name_not_in_the_certificate_fails_the_name_check(lab) -> None:
    ca, leaf = lab
    report = trust.explain([leaf], [ca.certificate], host="chat.example.org", at=NOW)
    assert not report.ok and "subjectAltName" in report.verdict
    assert _checks(report) == {"signature": True, "validity": True, "name": False}
    assert trust.explain([leaf], [ca.certificate], host="127.0.0.1", at=NOW).ok


def test_a_root_sent_on_the_wire_earns_no_trust(lab) -> None:
    ca, leaf = lab
    other = CA()
    # The chain the peer sent ends in a root; only the checker's own trusted CAs count.
    report = trust.explain([leaf, ca.certificate], [other.certificate], host="localhost", at=NOW)
    assert not report.ok
    # With the right trust store, the copy of the root plays no part (checks stop at the CA).
    report = trust.explain([leaf, ca.certificate], [ca.certificate], host="localhost", at=NOW)
    assert report.ok and len(report.checks) == 1


def test_a_client_certificate_has_no_host_to_check(lab) -> None:
    ca, _ = lab
    alice = ca.issue_cert(common_name="alice", client=True).certificate
    report = trust.explain([alice], [ca.certificate], host=None, at=NOW)
    assert report.ok, report.verdict
    assert set(_checks(report)) == {"signature", "validity"}


def test_explain_refuses_an_empty_chain() -> None:
    with pytest.raises(ValueError, match="no certificate"):
        trust.explain([], [], host="localhost")


def test_certificate_chain_figure_marks_each_check(lab) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from labchat import plots

    ca, leaf = lab
    good = plots.certificate_chain(trust.explain([leaf], [ca.certificate], host="localhost"))
    bad = plots.certificate_chain(trust.explain([leaf], [CA().certificate], host="localhost"))
    for fig, ok in ((good, True), (bad, False)):
        ax = fig.axes[0]
        gids = {p.get_gid(): p for p in ax.patches if p.get_gid()}
        assert {"cert-anchor", "cert-0"} <= set(gids)
        texts = " ".join(t.get_text() for t in ax.texts)
        assert ("✗" in texts) is not ok
        assert ("trusted" in texts) is ok
        assert fig.get_figwidth() <= 9.6
        assert min(t.get_fontsize() for t in ax.texts) >= 14
