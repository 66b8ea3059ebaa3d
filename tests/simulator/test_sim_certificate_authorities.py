"""Certificate-authority endpoints (reference §2), legacy answer style, date-only created_on."""

from __future__ import annotations

import datetime as dt
import re

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

CA_KEYS = {"guid", "issuer", "created_on", "expires_on", "active", "cert_pem"}
NOT_FOUND = {"errors": ["Certificate with specified guid not found"]}
ACTIVE_DELETE = {"errors": ["Active certificates cannot be deleted"]}
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
GUID_RE = re.compile(r"^[0-9a-f]{20}$")


def _ski(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest


def _assert_opsman_root_ca(cert: x509.Certificate) -> None:
    assert isinstance(cert.public_key(), rsa.RSAPublicKey)
    assert cert.public_key().key_size == 2048
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is True
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert cert.subject == cert.issuer
    assert cert.subject.rfc4514_string() == "O=Pivotal,C=US"
    _ski(cert)  # present
    # self-signed: verify the signature with its own key
    cert.verify_directly_issued_by(cert)


def test_initial_list(api):
    cas = api.cas()
    assert len(cas) == 1
    ca = cas[0]
    assert set(ca) == CA_KEYS
    assert GUID_RE.match(ca["guid"])
    assert ca["issuer"] == "Pivotal"
    assert ca["active"] is True
    assert DATE_RE.match(ca["created_on"]) and DATE_RE.match(ca["expires_on"])
    created = dt.date.fromisoformat(ca["created_on"])
    expected = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1200)
    assert abs((created - expected).days) <= 1
    cert = x509.load_pem_x509_certificate(ca["cert_pem"].encode())
    _assert_opsman_root_ca(cert)
    assert cert.not_valid_before_utc.date() == created
    assert cert.not_valid_after_utc.date().isoformat() == ca["expires_on"]
    assert cert.not_valid_after_utc.year - cert.not_valid_before_utc.year == 4


def test_generate_is_inactive_with_same_subject(api):
    old = api.cas()[0]
    r = api.post("/api/v0/certificate_authorities/generate")  # om: no body
    assert r.status_code == 200
    new = r.json()
    assert set(new) == CA_KEYS
    assert new["active"] is False
    assert new["issuer"] == "Pivotal"
    today = dt.datetime.now(dt.UTC).date()
    assert new["created_on"] == today.isoformat()
    assert new["expires_on"] == today.replace(year=today.year + 4).isoformat()
    c_old = x509.load_pem_x509_certificate(old["cert_pem"].encode())
    c_new = x509.load_pem_x509_certificate(new["cert_pem"].encode())
    _assert_opsman_root_ca(c_new)
    assert c_old.subject == c_new.subject  # only the key identifiers tell them apart
    assert _ski(c_old) != _ski(c_new)
    # the docs' curl sends '{}'
    r2 = api.post("/api/v0/certificate_authorities/generate", data="{}")
    assert r2.status_code == 200 and r2.json()["active"] is False
    cas = api.cas()
    assert [c["guid"] for c in cas] == [old["guid"], new["guid"], r2.json()["guid"]]
    assert [c["active"] for c in cas] == [True, False, False]


def test_activate(api):
    old = api.cas()[0]
    new = api.post("/api/v0/certificate_authorities/generate").json()
    r = api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={})
    assert r.status_code == 200
    assert r.json() == {}
    cas = {c["guid"]: c["active"] for c in api.cas()}
    assert cas == {old["guid"]: False, new["guid"]: True}
    # activating the active one again is harmless
    r = api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={})
    assert r.status_code == 200
    assert sum(c["active"] for c in api.cas()) == 1


def test_activate_unknown_guid_404(api):
    r = api.post("/api/v0/certificate_authorities/0123456789abcdef0123/activate", json={})
    assert r.status_code == 404
    assert r.json() == NOT_FOUND
    # om's auto-pick quirk posts to an empty guid
    r = api.post("/api/v0/certificate_authorities//activate", json={})
    assert r.status_code == 404


def test_delete(api):
    old = api.cas()[0]
    r = api.delete(f"/api/v0/certificate_authorities/{old['guid']}")
    assert r.status_code == 422
    assert r.json() == ACTIVE_DELETE
    r = api.delete("/api/v0/certificate_authorities/ffffffffffffffffffff")
    assert r.status_code == 404
    assert r.json() == NOT_FOUND
    new = api.post("/api/v0/certificate_authorities/generate").json()
    r = api.delete(f"/api/v0/certificate_authorities/{new['guid']}")
    assert r.status_code == 200
    assert r.json() == {}
    assert [c["guid"] for c in api.cas()] == [old["guid"]]
    # a deleted CA is gone for good
    r = api.delete(f"/api/v0/certificate_authorities/{new['guid']}")
    assert r.status_code == 404 and r.json() == NOT_FOUND
    r = api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={})
    assert r.status_code == 404 and r.json() == NOT_FOUND
    st = api.sim.state()
    assert st["deleted_certificate_authorities"] == [new["guid"]]


def test_regenerate_legacy(api):
    r = api.post("/api/v0/certificate_authorities/active/regenerate")
    assert r.status_code == 200
    assert r.json() == {}
    leaves = {leaf["name"]: leaf for leaf in api.sim.state()["leaves"]}
    assert leaves["nats_server"]["pending_regeneration"] is True
    assert leaves["director_ssl"]["pending_regeneration"] is True
    assert leaves["cf_router_wildcard"]["pending_regeneration"] is False  # configurable
    assert leaves["services_tls_ca"]["pending_regeneration"] is False  # excluded


def _custom_ca(cn="Customer Root", ca=True):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Customer"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem, cert


def test_create_custom_ca(api):
    cert_pem, key_pem, cert = _custom_ca()
    r = api.post("/api/v0/certificate_authorities", json={"cert_pem": cert_pem, "private_key_pem": key_pem})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == CA_KEYS
    assert body["active"] is False
    assert body["issuer"] == "Customer"
    assert body["expires_on"] == cert.not_valid_after_utc.date().isoformat()
    assert x509.load_pem_x509_certificate(body["cert_pem"].encode()) == cert
    assert body["guid"] in [c["guid"] for c in api.cas()]


def test_create_custom_ca_errors(api):
    cert_pem, key_pem, _ = _custom_ca()
    _, other_key, _ = _custom_ca()
    leaf_pem, leaf_key, _ = _custom_ca(ca=False)
    cases = [
        (
            {"cert_pem": cert_pem, "private_key_pem": other_key},
            ["Private key pem does not match the certificate"],
        ),
        (
            {
                "cert_pem": "-----BEGIN CERTIFICATE-----\nfake-cert\n-----END CERTIFICATE-----\n",
                "private_key_pem": key_pem,
            },
            ["Cert pem is not a valid PEM-encoded X.509 certificate"],
        ),
        (
            {
                "cert_pem": cert_pem,
                "private_key_pem": "-----BEGIN RSA PRIVATE KEY-----\nfake-key\n-----END RSA PRIVATE KEY-----\n",
            },
            ["Private key pem is not a valid unencrypted PEM-encoded private key"],
        ),
        ({}, ["Cert pem can't be blank", "Private key pem can't be blank"]),
        (
            {"cert_pem": leaf_pem, "private_key_pem": leaf_key},
            ["Cert pem is not a certificate authority (basicConstraints CA:TRUE)"],
        ),
    ]
    for body, errors in cases:
        r = api.post("/api/v0/certificate_authorities", json=body)
        assert r.status_code == 422, r.text
        assert r.json() == {"errors": errors}
    assert len(api.cas()) == 1


def test_207_mode(api):
    api.sim.faults(ca_status_207=True)
    r = api.post("/api/v0/certificate_authorities/generate")
    assert r.status_code == 207
    body = r.json()
    assert set(body) == CA_KEYS | {"warnings"}
    assert (
        isinstance(body["warnings"], list)
        and body["warnings"]
        and all(isinstance(w, str) for w in body["warnings"])
    )
    api.sim.faults(ca_warnings=["oh no! something went wrong!"])
    r = api.post(f"/api/v0/certificate_authorities/{body['guid']}/activate", json={})
    assert r.status_code == 207 and r.json() == {"warnings": ["oh no! something went wrong!"]}
    r = api.post("/api/v0/certificate_authorities/active/regenerate")
    assert r.status_code == 207 and r.json() == {"warnings": ["oh no! something went wrong!"]}
    old = [c for c in api.cas() if not c["active"]][0]
    r = api.delete(f"/api/v0/certificate_authorities/{old['guid']}")
    assert r.status_code == 207
    # errors are still errors
    r = api.delete("/api/v0/certificate_authorities/ffffffffffffffffffff")
    assert r.status_code == 404 and r.json() == NOT_FOUND
    # list is never 207
    assert api.get("/api/v0/certificate_authorities").status_code == 200
    api.sim.faults(ca_status_207=False)
    assert api.post("/api/v0/certificate_authorities/generate").status_code == 200


def test_state_view_of_cas(api):
    st = api.sim.state()
    (ca,) = st["certificate_authorities"]
    assert {"guid", "active", "created_at", "deleted", "cert_pem", "subject_key_identifier"} <= set(ca)
    assert ca["deleted"] is False
    assert dt.datetime.fromisoformat(ca["created_at"].replace("Z", "+00:00"))
    cert = x509.load_pem_x509_certificate(ca["cert_pem"].encode())
    assert ca["subject_key_identifier"] == _ski(cert).hex()
    assert st["trusted_ca_guids"] == [ca["guid"]]
    assert st["deleted_certificate_authorities"] == []
