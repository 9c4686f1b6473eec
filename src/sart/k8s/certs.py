"""The webhook's certificates, as the controller keeps them itself: a serving certificate for
the webhook Service's DNS names and the CA that signed it, in one Secret (kubernetes.io/tls:
tls.crt, tls.key; with ca.crt, the bundle the apiserver trusts). The CA's private key is never
kept: it signs the one serving certificate it is made with and is dropped, so whoever can read
the Secret (the node agent reads every Secret of its namespace) cannot make a certificate the
apiserver would trust. A renewal is therefore always a new CA with a new serving certificate.

Sans-IO: `decide` reads the Secret's data at `now` and says what must be written and why;
`renew` makes it; `next_check` is when to look again. No clock, no apiserver here: the caller
passes the time in and writes the result. The crypto is `cryptography`'s.

Rotation rule: the serving certificate and its CA (both valid LIFETIME) are made again once the
certificate is within WINDOW of expiry, or does not fit (missing, unreadable, another key, not
signed by the first CA of ca.crt, other names), or when the Secret holds a CA key (ca.key, as
sart kept it before: that key could be read by the nodes). The CAs trusted until then (ca.crt's,
or the bundle the apiserver trusts when the Secret is gone) stay after the new one in ca.crt
while they are valid, for at most OVERLAP after each was replaced (told by the certificates'
dates, so no later rotation prolongs it), so the apiserver trusts the replicas that still serve
the previous certificate until they read the new Secret.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Mapping, Sequence

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

LIFETIME = datetime.timedelta(days=365)  # of a serving certificate, and of the CA signing it
WINDOW = datetime.timedelta(days=30)  # a serving certificate this near expiry is made again
OVERLAP = datetime.timedelta(days=30)  # an earlier CA stays trusted this long once replaced
BACKDATE = datetime.timedelta(minutes=5)  # clocks of the apiserver and of us may differ a little

TLS_CERT, TLS_KEY, CA_CERT = "tls.crt", "tls.key", "ca.crt"
CA_KEY = "ca.key"  # where sart kept the CA's key before; a Secret holding it is rotated
CA_NAME = "sart-webhook-ca"


def service_names(service: str, namespace: str) -> tuple[str, ...]:
    """The names the apiserver may check when it calls the webhook through its Service."""
    return (f"{service}.{namespace}.svc", f"{service}.{namespace}.svc.cluster.local")


class Renew(enum.Enum):
    """What the Secret needs, least first."""

    NOTHING = "nothing"
    BUNDLE = "bundle"  # an earlier CA's overlap is over: drop it from ca.crt
    ROTATE = "rotate"  # a new CA, and a serving certificate it signs


@attrs.frozen
class Decision:
    renew: Renew
    reason: str  # why, for the log; empty for NOTHING


def _leaving(
    bundle: Sequence[x509.Certificate],
) -> list[tuple[x509.Certificate, datetime.datetime]]:
    """The earlier CAs of a bundle (after its first, the current CA) and when each leaves it:
    once it expires, at the latest OVERLAP after it was replaced. That is when the next CA was
    made (with the serving certificate it signed): the earliest made of the current CA and of
    the CAs before it in the bundle (newest first) made no earlier. Read from the certificates
    alone, so a rotation, even of a Secret made again from the configuration's bundle, does not
    prolong it; CAs made in one second are told apart by their order."""
    current, *earlier = bundle
    leaving = []
    for index, ca in enumerate(earlier):
        made = ca.not_valid_before_utc
        newer = [b.not_valid_before_utc for b in earlier[:index] if b.not_valid_before_utc >= made]
        replaced = min([current.not_valid_before_utc, *newer]) + BACKDATE
        leaving.append((ca, min(ca.not_valid_after_utc, replaced + OVERLAP)))
    return leaving


class _Unfit(Exception):
    """Why a part of the Secret cannot be used."""


def _certificates(data: Mapping[str, bytes], field: str) -> list[x509.Certificate]:
    raw = data.get(field)
    if not raw:
        raise _Unfit(f"no {field}")
    try:
        return x509.load_pem_x509_certificates(raw)
    except ValueError as error:
        raise _Unfit(f"{field} is not PEM certificates: {error}") from None


def _key(data: Mapping[str, bytes], field: str) -> ec.EllipticCurvePrivateKey:
    raw = data.get(field)
    if not raw:
        raise _Unfit(f"no {field}")
    try:
        key = serialization.load_pem_private_key(raw, password=None)
    except (ValueError, TypeError) as error:
        raise _Unfit(f"{field} is not an unencrypted PEM private key: {error}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _Unfit(f"{field} is not an EC key")  # what renew makes; anything else is replaced
    return key


def _expiry(cert: x509.Certificate, what: str, now: datetime.datetime) -> None:
    if now < cert.not_valid_before_utc:
        raise _Unfit(f"{what} is not valid before {cert.not_valid_before_utc.isoformat()}")
    if now >= cert.not_valid_after_utc - WINDOW:
        raise _Unfit(f"{what} expires at {cert.not_valid_after_utc.isoformat()}")


def _read(
    data: Mapping[str, bytes], names: Sequence[str], now: datetime.datetime
) -> list[x509.Certificate]:
    """ca.crt, if the Secret fits `names` at `now`."""
    if CA_KEY in data:
        raise _Unfit(f"the Secret holds {CA_KEY}, a CA key the nodes may have read")
    bundle = _certificates(data, CA_CERT)
    ca, cert = bundle[0], _certificates(data, TLS_CERT)[0]
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise _Unfit("the CA has no basicConstraints") from None
    if not constraints.ca:
        raise _Unfit("the first certificate of ca.crt is not a CA")
    _expiry(ca, "the CA", now)
    if cert.public_key() != _key(data, TLS_KEY).public_key():
        raise _Unfit(f"{TLS_KEY} is not the key of the serving certificate")
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise _Unfit("the serving certificate is not signed by the CA") from None
    try:
        alternative = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise _Unfit("the serving certificate has no DNS names") from None
    have = alternative.get_values_for_type(x509.DNSName)
    if sorted(have) != sorted(names):
        raise _Unfit(f"the serving certificate is for {', '.join(have)}")
    _expiry(cert, "the serving certificate", now)
    return bundle


def decide(data: Mapping[str, bytes], names: Sequence[str], now: datetime.datetime) -> Decision:
    """What the Secret's `data` (decoded) needs at `now` to serve `names`."""
    try:
        bundle = _read(data, names, now)
    except _Unfit as unfit:
        return Decision(Renew.ROTATE, str(unfit))
    over = sum(leaves <= now for _, leaves in _leaving(bundle))
    if over:
        return Decision(
            Renew.BUNDLE, f"ca.crt holds {over} earlier CA certificate(s) no longer due"
        )
    return Decision(Renew.NOTHING, "")


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    now: datetime.datetime,
    not_after: datetime.datetime,
    *,
    ca: bool,
) -> x509.CertificateBuilder:
    """What a CA and a serving certificate have alike: ECDSA signatures only (of TLS handshakes;
    for a CA of certificates and CRLs), valid from a little before `now`."""
    usage = x509.KeyUsage(
        digital_signature=True, key_cert_sign=ca, crl_sign=ca, content_commitment=False,
        key_encipherment=False, data_encipherment=False, key_agreement=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
        .add_extension(usage, critical=True)
    )


def issue_ca(
    now: datetime.datetime, lifetime: datetime.timedelta = LIFETIME
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA valid for `lifetime` from `now`, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_NAME)])
    identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        _builder(name, name, key, now, now + lifetime, ca=True)
        .add_extension(identifier, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_serving(
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    now: datetime.datetime,
    lifetime: datetime.timedelta = LIFETIME,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A serving certificate for `names` signed by `ca`, valid for `lifetime` from `now` (never
    beyond the CA), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    not_after = min(now + lifetime, ca.not_valid_after_utc)
    authority = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    server = x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH])
    cert = (
        _builder(subject, ca.subject, key, now, not_after, ca=False)
        .add_extension(server, critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(authority, critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def secret_data(
    ca: x509.Certificate,
    serving: x509.Certificate,
    serving_key: ec.EllipticCurvePrivateKey,
    earlier_cas: Sequence[x509.Certificate] = (),
) -> dict[str, bytes]:
    """The Secret's data (decoded) holding these: no CA key."""
    return {
        TLS_CERT: _pem(serving),
        TLS_KEY: _key_pem(serving_key),
        CA_CERT: b"".join(_pem(c) for c in (ca, *earlier_cas)),
    }


def _still_trusted(bundles: Sequence[bytes], now: datetime.datetime) -> list[x509.Certificate]:
    """The CAs of these PEM bundles still to be trusted at `now`: each bundle's current CA
    while it is valid, its earlier ones until they leave; each once, in order (a bundle that
    cannot be read gives none)."""
    trusted: list[x509.Certificate] = []
    for bundle in bundles:
        try:
            found = x509.load_pem_x509_certificates(bundle) if bundle else []
        except ValueError:
            continue
        due = found[:1] + [c for c, leaves in _leaving(found) if now < leaves] if found else []
        for cert in due:
            if cert.not_valid_before_utc <= now < cert.not_valid_after_utc and cert not in trusted:
                trusted.append(cert)
    return trusted


def renew(
    decision: Decision,
    data: Mapping[str, bytes],
    names: Sequence[str],
    now: datetime.datetime,
    trusted: bytes = b"",
) -> dict[str, bytes]:
    """The Secret's new data (decoded) after `decision` (not NOTHING) on `data` at `now`: every
    field of it (a field of `data` missing here is to be removed). `trusted` is the bundle the
    apiserver trusts now (the configuration's caBundle)."""
    if decision.renew is Renew.ROTATE:
        ca, ca_key = issue_ca(now)
        serving, serving_key = issue_serving(ca, ca_key, names, now)
        # The CA's key goes no further than here. The CAs trusted until now stay (from the
        # Secret, or from the configuration when the Secret is gone): the replicas may still
        # serve what they signed until they read the new Secret. Not those whose time was
        # over already (the leader was late): a rotation does not prolong it.
        kept = _still_trusted((data.get(CA_CERT, b""), trusted), now)
        return secret_data(ca, serving, serving_key, kept)
    if decision.renew is Renew.BUNDLE:
        _read(data, names, now)  # fit, but for earlier CAs to drop
        bundle = _still_trusted((data[CA_CERT],), now)
        return {**data, CA_CERT: b"".join(_pem(c) for c in bundle)}
    raise ValueError(f"nothing to renew: {decision}")


def expires(cert: bytes) -> datetime.datetime:
    """When the (first) certificate of this PEM expires; ValueError if it holds none."""
    return x509.load_pem_x509_certificates(cert)[0].not_valid_after_utc


def next_check(data: Mapping[str, bytes]) -> datetime.datetime | None:
    """When `decide` will next answer differently for a Secret it found fit: the rotation time
    of the serving certificate or of its CA, or when an earlier CA leaves ca.crt (None if the
    Secret cannot be read)."""
    try:
        bundle = _certificates(data, CA_CERT)
        serving = _certificates(data, TLS_CERT)[0]
    except _Unfit:
        return None
    due = [c.not_valid_after_utc - WINDOW for c in (serving, bundle[0])]
    return min(due + [leaves for _, leaves in _leaving(bundle)])
