"""sart.k8s.certs: when the webhook's CA and serving certificate are made again, with the clock
passed in; the certificates made are checked with `cryptography` and with Python's own TLS."""

from __future__ import annotations

import contextlib
import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from sart.k8s import certs
from sart.k8s.certs import Renew, decide, next_check, renew, service_names
from sart.k8s.runtime import webhook

NOW = datetime.datetime(2026, 11, 28, tzinfo=datetime.UTC)
NAMES = service_names("sart-webhook", "sart-system")
DAY = datetime.timedelta(days=1)


def fresh(now: datetime.datetime = NOW) -> dict[str, bytes]:
    return renew(decide({}, NAMES, now), {}, NAMES, now)


def serving(data: dict[str, bytes]) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data[certs.TLS_CERT])


def cas(data: dict[str, bytes]) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(data[certs.CA_CERT])


def other_serving() -> dict[str, bytes]:
    other = fresh()
    return {"tls.crt": other["tls.crt"], "tls.key": other["tls.key"]}


def test_service_names() -> None:
    assert NAMES == ("sart-webhook.sart-system.svc", "sart-webhook.sart-system.svc.cluster.local")


def test_an_empty_secret_gets_a_ca_and_a_serving_certificate_and_no_ca_key() -> None:
    assert decide({}, NAMES, NOW) == certs.Decision(Renew.ROTATE, "no ca.crt")
    data = fresh()
    assert set(data) == {"tls.crt", "tls.key", "ca.crt"}
    assert decide(data, NAMES, NOW) == certs.Decision(Renew.NOTHING, "")
    [ca] = cas(data)
    assert ca.not_valid_after_utc == NOW + certs.LIFETIME
    cert = serving(data)
    assert cert.not_valid_after_utc == NOW + certs.LIFETIME
    assert certs.expires(data["tls.crt"]) == cert.not_valid_after_utc
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == list(NAMES)


def handshake(server: ssl.SSLContext, ca: bytes) -> dict[str, object]:
    """A TLS handshake over memory with a client that trusts `ca` and checks the name; the
    certificate the server presented, as the client read it."""
    client = ssl.create_default_context(cadata=ca.decode())
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    server_in, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls_client = client.wrap_bio(incoming, outgoing, server_hostname=NAMES[0])
    tls_server = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(4):
        for side in (tls_client, tls_server):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        server_in.write(outgoing.read())
        incoming.write(server_out.read())
    tls_client.do_handshake()
    peer: dict[str, object] = tls_client.getpeercert()
    return peer


def test_python_tls_accepts_the_pair_and_trusts_the_bundle() -> None:
    data = fresh(datetime.datetime.now(datetime.UTC))
    server = webhook.server_context()
    webhook.load_pair(server, data["tls.crt"], data["tls.key"])
    assert handshake(server, data["ca.crt"])["subject"] == ((("commonName", NAMES[0]),),)


def test_a_pair_that_does_not_fit_leaves_the_served_one() -> None:
    now = datetime.datetime.now(datetime.UTC)
    data, other = fresh(now), fresh(now)
    server = webhook.server_context()
    webhook.load_pair(server, data["tls.crt"], data["tls.key"])
    with pytest.raises(ssl.SSLError):
        webhook.load_pair(server, other["tls.crt"], data["tls.key"])
    served = handshake(server, data["ca.crt"])["serialNumber"]
    assert int(str(served), 16) == serving(data).serial_number


def test_a_rotation_makes_a_new_ca_and_the_old_one_stays_for_the_overlap() -> None:
    data = fresh()
    rotation = NOW + certs.LIFETIME - certs.WINDOW
    assert next_check(data) == rotation
    assert decide(data, NAMES, rotation - DAY).renew is Renew.NOTHING
    decision = decide(data, NAMES, rotation)
    assert decision.renew is Renew.ROTATE
    assert decision.reason.startswith("the CA expires at")  # the CA lives as long
    renewed = renew(decision, data, NAMES, rotation)
    assert set(renewed) == {"tls.crt", "tls.key", "ca.crt"}
    new, old = cas(renewed)
    assert old == cas(data)[0]
    serving(renewed).verify_directly_issued_by(new)
    serving(data).verify_directly_issued_by(old)  # still served by replicas a moment
    assert decide(renewed, NAMES, rotation).renew is Renew.NOTHING
    # the old CA leaves the bundle when the old serving certificate expires, the overlap
    dropped = rotation + certs.OVERLAP
    assert dropped == serving(data).not_valid_after_utc
    assert next_check(renewed) == dropped
    assert decide(renewed, NAMES, dropped - DAY).renew is Renew.NOTHING
    decision = decide(renewed, NAMES, dropped)
    assert decision == certs.Decision(
        Renew.BUNDLE, "ca.crt holds 1 earlier CA certificate(s) no longer due"
    )
    trimmed = renew(decision, renewed, NAMES, dropped)
    assert cas(trimmed) == [new]
    assert {k: v for k, v in trimmed.items() if k != "ca.crt"} == {
        k: v for k, v in renewed.items() if k != "ca.crt"
    }
    assert next_check(trimmed) == new.not_valid_after_utc - certs.WINDOW


def legacy(now: datetime.datetime = NOW) -> dict[str, bytes]:
    """A Secret as sart kept it before: a CA of 10 years with its key, a serving certificate
    of 1 year."""
    ca, ca_key = certs.issue_ca(now, 10 * certs.LIFETIME)
    cert, key = certs.issue_serving(ca, ca_key, NAMES, now)
    pem = ca_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return {**certs.secret_data(ca, cert, key), "ca.key": pem}


def test_a_secret_holding_a_ca_key_is_rotated_and_the_key_dropped() -> None:
    """Taken over from the previous version: a new CA at once (the old key may have been read
    by the nodes), the old CA trusted only for the overlap, not for the years it is valid."""
    data = legacy(NOW - 100 * DAY)
    decision = decide(data, NAMES, NOW)
    assert decision == certs.Decision(
        Renew.ROTATE, "the Secret holds ca.key, a CA key the nodes may have read"
    )
    renewed = renew(decision, data, NAMES, NOW)
    assert "ca.key" not in renewed
    new, old = cas(renewed)
    assert old == cas(data)[0]
    assert old.not_valid_after_utc > NOW + 5 * certs.LIFETIME
    serving(data).verify_directly_issued_by(old)
    assert next_check(renewed) == NOW + certs.OVERLAP
    trimmed = renew(
        decide(renewed, NAMES, NOW + certs.OVERLAP), renewed, NAMES, NOW + certs.OVERLAP
    )
    assert cas(trimmed) == [new]


def test_a_secret_made_again_keeps_trusting_what_the_configuration_trusts() -> None:
    """The Secret is gone (deleted by hand): the new CA's bundle keeps the CA the apiserver
    trusts now while it is valid, once, and not one that has expired."""
    before = fresh()
    expired = fresh(NOW - certs.LIFETIME - DAY)
    trusted = before["ca.crt"] + expired["ca.crt"] + before["ca.crt"]
    decision = decide({}, NAMES, NOW)
    new, kept = cas(renew(decision, {}, NAMES, NOW, trusted))
    assert kept == cas(before)[0]
    assert new != kept


def test_a_second_rotation_does_not_prolong_an_earlier_ca() -> None:
    """The Secret deleted twice, 10 days apart: the first CA leaves 30 days after it was
    replaced, not 30 days after the second rotation."""
    data = fresh()
    first = renew(decide({}, NAMES, NOW), {}, NAMES, NOW, data["ca.crt"])
    later = NOW + 10 * DAY
    second = renew(decide({}, NAMES, later), {}, NAMES, later, first["ca.crt"])
    assert cas(second)[1:] == [cas(first)[0], cas(data)[0]]
    assert next_check(second) == NOW + certs.OVERLAP
    dropped = renew(decide(second, NAMES, NOW + certs.OVERLAP), second, NAMES, NOW + certs.OVERLAP)
    assert cas(dropped) == cas(second)[:2]
    assert next_check(dropped) == later + certs.OVERLAP


@pytest.mark.parametrize(
    ("spoil", "renewal", "reason"),
    [
        (lambda d: d.pop("ca.crt"), Renew.ROTATE, "no ca.crt"),
        (lambda d: d.update({"ca.crt": b"junk"}), Renew.ROTATE, "ca.crt is not PEM certificates"),
        (lambda d: d.update({"tls.key": fresh()["tls.key"]}), Renew.ROTATE,
         "tls.key is not the key of the serving certificate"),
        (lambda d: d.update({"ca.crt": d["tls.crt"]}), Renew.ROTATE,
         "the first certificate of ca.crt is not a CA"),
        (lambda d: d.pop("tls.crt"), Renew.ROTATE, "no tls.crt"),
        (lambda d: d.update({"tls.key": b"-----BEGIN PRIVATE KEY-----\n"}), Renew.ROTATE,
         "tls.key is not an unencrypted PEM private key"),
        (lambda d: d.update(other_serving()), Renew.ROTATE,
         "the serving certificate is not signed by the CA"),
    ],
)  # fmt: skip
def test_unfit_material_is_made_again(spoil: object, renewal: Renew, reason: str) -> None:
    data = fresh()
    spoil(data)  # type: ignore[operator]
    decision = decide(data, NAMES, NOW)
    assert decision.renew is renewal
    assert decision.reason.startswith(reason)
    assert decide(renew(decision, data, NAMES, NOW), NAMES, NOW).renew is Renew.NOTHING


def test_other_names_get_a_new_serving_certificate() -> None:
    data = fresh()
    names = service_names("sart-webhook", "elsewhere")
    decision = decide(data, names, NOW)
    assert decision == certs.Decision(
        Renew.ROTATE,
        "the serving certificate is for sart-webhook.sart-system.svc,"
        " sart-webhook.sart-system.svc.cluster.local",
    )
    assert decide(renew(decision, data, names, NOW), names, NOW).renew is Renew.NOTHING


def test_a_certificate_from_the_future_is_replaced() -> None:
    data = fresh(NOW + 10 * DAY)
    assert decide(data, NAMES, NOW).reason.startswith("the CA is not valid before")
