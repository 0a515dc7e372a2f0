"""Why a TLS client trusts a certificate chain, or not: the chain from a capture, checked link
by link against the CA file the client trusts (issue 13).

A client decides with three questions (RFC 5280 section 6 for the path, RFC 6125 for the
name): does every certificate carry a valid signature of the next one up, ending at a CA *it
already trusts* (never one the peer merely sent); is every certificate valid at this moment;
does the leaf name the host it asked for. `explain` asks them of the certificates a capture
holds (`labchat.analysis.Connection.certificates`) and lets ``cryptography``'s own path
validation give the verdict; `labchat.plots.certificate_chain` draws the answer.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import NameOID

from .diagnose import CertificateInfo

__all__ = ["ChainReport", "Check", "explain", "load_pem_certificates", "signed_by"]


@dataclass(frozen=True)
class Check:
    """One answer about one certificate.

    Attributes:
        what: ``"signature"``, ``"validity"`` or ``"name"``.
        ok: whether it passed.
        detail: one line a learner can read (``"signed by CN=labchat lab CA root"``).
    """

    what: str
    ok: bool
    detail: str


@dataclass
class ChainReport:
    """What `explain` found.

    Attributes:
        chain: the certificates as the peer sent them, its own first.
        anchor: the trusted CA certificate that signed the top of the chain, or None.
        checks: per certificate of ``chain``, its checks (signature, validity, name).
        verdict: ``"trusted"``, or why ``cryptography``'s path validation refused it.
        host: the name that was checked (None: no name check, as for a client certificate).
        at: the moment the validity was checked at.
    """

    chain: list[x509.Certificate]
    anchor: x509.Certificate | None
    checks: list[list[Check]] = field(default_factory=list)
    verdict: str = ""
    host: str | None = None
    at: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        """True if the chain is trusted."""
        return self.verdict == "trusted"


def load_pem_certificates(pem: str | bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM text (a ``ca.pem`` may hold several)."""
    data = pem.encode() if isinstance(pem, str) else pem
    return x509.load_pem_x509_certificates(data)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer``'s public key verifies ``cert``'s signature (and names match).

    This is the one cryptographic step of a chain check: the CA signed the certificate's
    to-be-signed bytes (``tbs_certificate_bytes``) with its private key.
    """
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _name(name: x509.Name) -> str:
    """``CN=...`` of a subject or issuer, else the whole name (RFC 4514)."""
    cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return f"CN={cns[0].value}" if cns else name.rfc4514_string()


def _name_matches(host: str, names: list[str]) -> bool:
    try:
        wanted: str = str(ipaddress.ip_address(host))
    except ValueError:
        wanted = host.lower().rstrip(".")
    return any(n.lower() == wanted for n in names)  # the lab issues no wildcards


def _validity(cert: x509.Certificate, at: dt.datetime) -> Check:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    when = f"{start:%Y-%m-%d %H:%M} .. {end:%Y-%m-%d %H:%M} UTC"
    if at < start:
        return Check("validity", False, f"not valid yet: {when}")
    if at > end:
        return Check("validity", False, f"expired: {when}")
    return Check("validity", True, f"valid {when}")


def _verdict(
    leaf: x509.Certificate,
    rest: list[x509.Certificate],
    trusted: list[x509.Certificate],
    host: str | None,
    at: dt.datetime,
) -> str:
    from cryptography.x509.verification import (
        ExtensionPolicy,
        PolicyBuilder,
        Store,
        VerificationError,
    )

    builder = PolicyBuilder().store(Store(trusted)).time(at)
    try:
        if host is None:
            # The web PKI profile wants a subjectAltName in every leaf; a client certificate
            # for a person (CN=alice, as `labchat certs --client` makes) has none, and OpenSSL,
            # which checked it in the capture, does not ask for one.
            builder = builder.extension_policies(
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            builder.build_client_verifier().verify(leaf, rest)
        else:
            try:
                subject: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
            except ValueError:
                subject = x509.DNSName(host)
            builder.build_server_verifier(subject).verify(leaf, rest)
    except VerificationError as exc:
        # "validation failed: <why> (encountered processing <Certificate(...)>)": keep <why>.
        why = str(exc).removeprefix("validation failed: ")
        return re.sub(r" \(encountered processing .*\)$", "", why, flags=re.S)
    return "trusted"


def explain(
    chain: Sequence[bytes | x509.Certificate],
    trusted: str | bytes | Sequence[x509.Certificate],
    *,
    host: str | None,
    at: dt.datetime | None = None,
) -> ChainReport:
    """Check a certificate chain as a TLS client (or, with ``host=None``, a server) would.

    Args:
        chain: the certificates the peer sent, its own first (DER bytes, as
            `labchat.analysis.Connection.certificates` returns them, or certificates).
        trusted: the CA certificates the checker trusts (a ``ca.pem`` text or certificates).
        host: the name the client asked for (checked against the subjectAltName); None for
            a client certificate, which names a person, not a host.
        at: when to check validity (default: now); for a capture, the time it was made.

    Returns:
        The report: each certificate's checks, the trusted CA that signed the chain, and the
        verdict of ``cryptography``'s path validation.

    Raises:
        ValueError: ``chain`` is empty, or holds something that is not a certificate.
    """
    certs = [c if isinstance(c, x509.Certificate) else x509.load_der_x509_certificate(c)
             for c in chain]  # fmt: skip
    if not certs:
        raise ValueError("no certificate to check: the peer sent none (or it was encrypted)")
    anchors = load_pem_certificates(trusted) if isinstance(trusted, str | bytes) else list(trusted)
    at = at or dt.datetime.now(dt.timezone.utc)
    report = ChainReport(certs, None, host=host, at=at)
    for i, cert in enumerate(certs):
        checks = []
        issuer = next((a for a in anchors if signed_by(cert, a)), None)
        if issuer is not None:
            checks.append(
                Check("signature", True, f"signed by {_name(issuer.subject)}, a CA you trust")
            )
            report.anchor = report.anchor or issuer
        elif i + 1 < len(certs) and signed_by(cert, certs[i + 1]):
            checks.append(
                Check("signature", True, f"signed by {_name(certs[i + 1].subject)} (sent)")
            )
        elif signed_by(cert, cert):
            checks.append(Check("signature", False, "self-signed, and not a CA you trust"))
        else:
            issuer_name = _name(cert.issuer)
            checks.append(
                Check("signature", False, f"no CA you trust signed it (issuer {issuer_name})")
            )
        checks.append(_validity(cert, at))
        if i == 0 and host is not None:
            names = list(CertificateInfo.from_x509(cert).names)  # DNS names, then IPs
            ok = _name_matches(host, names)
            listed = ", ".join(names) or "none"
            checks.append(Check("name", ok, f"{'names' if ok else 'does not name'} {host} "
                                            f"(subjectAltName: {listed})"))  # fmt: skip
        report.checks.append(checks)
        if issuer is not None:
            break  # the rest (a copy of the root, say) plays no part: trust ends here
    report.verdict = _verdict(certs[0], certs[1:], anchors, host, at)
    return report
