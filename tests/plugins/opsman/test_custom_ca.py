"""Bring your own CA: validation before upload, the upload step, and a whole rotation to it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.utils.state import DagRunState
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from support import api_writes, polling_fast, task_context

from opsman.custom_ca import load_custom_ca
from opsman.exceptions import OpsManagerConfigError
from opsman.hooks import OpsManagerHook
from opsman.operators import CheckOpsManagerOperator, GenerateCertificateAuthorityOperator

NOW = dt.datetime.now(dt.UTC)
DAGS = Path(__file__).resolve().parents[3] / "dags"
CONN_ID = "corporate_ca"


def make_ca(*, key=None, is_ca=True, days=(-1, 3650), signer_key=None) -> tuple[str, str]:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example Corp"),
            x509.NameAttribute(NameOID.COMMON_NAME, "Example Corp Platform Root CA"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(signer_key or key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def set_ca_connection(monkeypatch, cert_pem, key_pem):
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps(
            {"conn_type": "generic", "extra": {"certificate_pem": cert_pem, "private_key_pem": key_pem}}
        ),
    )


def key_body(key_pem: str) -> str:
    """A distinctive line of the key's base64, to search logs and XCom for."""
    return key_pem.splitlines()[3]


OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: make_ca(is_ca=False), "is not a CA"),
        (lambda: (make_ca()[0], make_ca(key=OTHER_RSA)[1]), "does not belong to the certificate"),
        (lambda: make_ca(key=ec.generate_private_key(ec.SECP256R1())), "needs an RSA CA"),
        (lambda: make_ca(days=(-400, -1)), "expired at"),
        (lambda: make_ca(days=(-1, 30)), "within the 93-day expiry window"),
        (lambda: (make_ca()[0], "not a key"), "not an unencrypted PEM private key"),
        (lambda: ("not a cert", make_ca()[1]), "not a PEM certificate"),
    ],
    ids=["not-ca", "key-mismatch", "not-rsa", "expired", "expiring", "bad-key", "bad-cert"],
)
def test_a_bad_ca_is_refused_before_any_call_to_ops_manager(sim, monkeypatch, make, message):
    cert_pem, key_pem = make()
    set_ca_connection(monkeypatch, cert_pem, key_pem)
    sim.clear_journal()
    with pytest.raises(OpsManagerConfigError, match=message) as err:
        CheckOpsManagerOperator(task_id="check", custom_ca_conn_id=CONN_ID).execute(task_context())
    assert sim.journal() == []
    if "BEGIN" in key_pem:
        assert key_body(key_pem) not in str(err.value)


def test_a_connection_without_the_pems_is_refused(monkeypatch):
    monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps({"conn_type": "generic", "extra": {}}))
    with pytest.raises(OpsManagerConfigError, match="needs extras certificate_pem and private_key_pem"):
        load_custom_ca(CONN_ID, now=NOW, window_days=90)


def test_upload_then_a_retry_adopts_it(sim, monkeypatch):
    cert_pem, key_pem = make_ca()
    set_ca_connection(monkeypatch, cert_pem, key_pem)
    sim.clear_journal()
    op = GenerateCertificateAuthorityOperator(task_id="g", custom_ca_conn_id=CONN_ID)
    first, again = op.execute(task_context()), op.execute(task_context())
    assert first == again
    assert [(e["method"], e["path"]) for e in api_writes(sim)] == [
        ("POST", "/api/v0/certificate_authorities")
    ]
    uploaded = {ca.guid: ca for ca in OpsManagerHook().list_certificate_authorities()}[first]
    assert uploaded.cert_pem.strip() == cert_pem.strip() and not uploaded.active


@pytest.mark.e2e
def test_a_rotation_to_an_uploaded_ca_without_leaking_its_key(sim, airflow_db, monkeypatch, capfd):
    cert_pem, key_pem = make_ca(
        days=(-3000, 3650)
    )  # issued long before the current CA: identity, not age, counts
    set_ca_connection(monkeypatch, cert_pem, key_pem)
    dag = polling_fast(DagBag(dag_folder=str(DAGS)).dags["opsman_ca_rotation"])
    dag_run = dag.test(run_conf={"poll_interval_seconds": 1, "custom_ca_conn_id": CONN_ID})
    assert dag_run.state == DagRunState.SUCCESS

    (active,) = OpsManagerHook().list_certificate_authorities()
    assert active.active and active.cert_pem.strip() == cert_pem.strip()
    state = sim.state()
    assert {
        leaf["issuer_ca_guid"]
        for leaf in state["leaves"]
        if not leaf["excluded"] and not leaf["configurable"]
    } == {active.guid}

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = [
            json.dumps(x.value, default=str)
            for x in session.query(XComModel).filter(XComModel.run_id == dag_run.run_id)
        ]
    assert xcoms
    output = "".join(capfd.readouterr())
    for where, text in (
        ("XCom", "".join(xcoms)),
        ("task logs", output),
        ("journal", json.dumps(sim.journal())),
    ):
        assert key_body(key_pem) not in text, f"the CA's private key leaked into {where}"
        assert "PRIVATE KEY" not in text, f"key material in {where}"
