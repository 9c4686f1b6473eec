"""The webhook's certificates over years of a clock passed in (sart.k8s.certs): the leader
wakes when `next_check` says or earlier (sometimes late, when it was down), the Secret is
sometimes deleted or spoiled, and replicas serve a certificate until they read its successor,
up to LAG after it was written. At no moment is a served, unexpired certificate not trusted by
the bundle the apiserver has; the current one is always valid; no CA key is ever written; an
earlier CA leaves the bundle at the latest OVERLAP after it stopped being the current one (or
at the leader's next pass, when it is late), and never comes back."""

from __future__ import annotations

import datetime

import attrs
import hypothesis.strategies as st
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from hypothesis import given

from sart.k8s import certs
from sart.k8s.certs import Renew, decide, next_check, renew, service_names

START = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
NAMES = service_names("sart-webhook", "sart-system")
LAG = datetime.timedelta(hours=6)  # a replica reads a new Secret within this (it watches)


@attrs.define
class Served:
    cert: x509.Certificate
    replaced: datetime.datetime | None = None  # when its successor was written


@attrs.define
class Cluster:
    now: datetime.datetime
    data: dict[str, bytes]  # the Secret's
    bundle: bytes  # the configuration's caBundle: what the apiserver trusts
    served: list[Served]
    retired: dict[x509.Certificate, datetime.datetime]  # when each CA stopped being current

    def sync(self) -> None:
        """The leader's pass (sart.k8s.runtime.certs.WebhookCertificates.sync): a new bundle
        goes to the configuration before the Secret."""
        while (decision := decide(self.data, NAMES, self.now)).renew is not Renew.NOTHING:
            fresh = renew(decision, self.data, NAMES, self.now, self.bundle)
            assert certs.CA_KEY not in fresh
            before = x509.load_pem_x509_certificates(self.bundle)[:1] if self.bundle else []
            self.retired.update(
                (ca, self.now)
                for ca in before
                if ca != x509.load_pem_x509_certificates(fresh[certs.CA_CERT])[0]
            )
            self.bundle = fresh[certs.CA_CERT]
            if fresh[certs.TLS_CERT] != self.data.get(certs.TLS_CERT):
                for served in self.served:
                    served.replaced = served.replaced or self.now
                self.served.append(Served(x509.load_pem_x509_certificate(fresh[certs.TLS_CERT])))
            self.data = fresh
        self.bundle = self.data[certs.CA_CERT]

    def check(self) -> None:
        """Every certificate a replica may serve now is trusted."""
        trusted = x509.load_pem_x509_certificates(self.bundle)
        current = self.served[-1].cert
        assert current.not_valid_before_utc <= self.now < current.not_valid_after_utc
        for served in self.served:
            if served.replaced is not None and self.now > served.replaced + LAG:
                continue
            if self.now >= served.cert.not_valid_after_utc:
                continue
            assert any(signed(served.cert, ca, self.now) for ca in trusted), served

    def check_written(self) -> None:
        """What the leader leaves: no CA key, earlier CAs only within the overlap."""
        assert certs.CA_KEY not in self.data
        ca, *earlier = x509.load_pem_x509_certificates(self.data[certs.CA_CERT])
        x509.load_pem_x509_certificate(self.data[certs.TLS_CERT]).verify_directly_issued_by(ca)
        for old in earlier:
            assert self.now < self.retired[old] + certs.OVERLAP


def signed(cert: x509.Certificate, ca: x509.Certificate, now: datetime.datetime) -> bool:
    if not ca.not_valid_before_utc <= now < ca.not_valid_after_utc:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def legacy(now: datetime.datetime) -> dict[str, bytes]:
    """As sart kept it before: a 10-year CA with its key in the Secret."""
    ca, ca_key = certs.issue_ca(now, datetime.timedelta(days=3650))
    cert, key = certs.issue_serving(ca, ca_key, NAMES, now)
    pem = ca_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {**certs.secret_data(ca, cert, key), certs.CA_KEY: pem}


STEPS = st.lists(
    st.tuples(
        st.sampled_from(["wake", "wake", "wake", "delete", "spoil"]),
        st.one_of(st.just(1.0), st.floats(0.0, 1.0)),  # where before the next check
        st.one_of(st.just(0.0), st.floats(0.0, 1.0)),  # how late, in WINDOW
    ),
    max_size=14,
)


@given(st.none() | st.integers(0, 360), STEPS)
def test_every_served_certificate_stays_trusted(
    legacy_age: int | None, steps: list[tuple[str, float, float]]
) -> None:
    if legacy_age is None:
        cluster = Cluster(START, {}, b"", [], {})
    else:
        made = START - datetime.timedelta(days=legacy_age)
        data = legacy(made)
        first = Served(x509.load_pem_x509_certificate(data[certs.TLS_CERT]))
        cluster = Cluster(START, data, data[certs.CA_CERT], [first], {})
    cluster.sync()
    cluster.check()
    cluster.check_written()
    for action, where, late in steps:
        due = next_check(cluster.data)
        assert due is not None
        assert due > cluster.now
        cluster.now += (due - cluster.now) * where  # the leader wakes by `due`
        cluster.now += (certs.WINDOW - datetime.timedelta(days=1)) * late  # or not, when down
        cluster.check()  # before the leader acts
        if action == "delete":
            cluster.data = {}
        elif action == "spoil":
            cluster.data = {**cluster.data, certs.TLS_KEY: b"junk"}
        cluster.sync()
        cluster.check()
        cluster.check_written()
