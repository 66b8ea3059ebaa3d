"""Trust: the operating system's store plus the connection's ca_cert (as om); environment bundles never replace it."""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pytest
from support import connection_json

from opsman.exceptions import OpsManagerConfigError
from opsman.hooks import OpsManagerAsyncHook, OpsManagerHook

SYSTEM = Path(ssl.get_default_verify_paths().openssl_cafile)


def without_ca_cert(monkeypatch, sim) -> None:
    conn = json.loads(connection_json(sim))
    conn["extra"].pop("ca_cert")
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", json.dumps(conn))


@pytest.fixture
def os_store(tmp_path, monkeypatch):
    """A stand-in for the OS trust store (SSL_CERT_FILE, as OpenSSL and Go's system pool read it)."""
    store = tmp_path / "os-store.pem"
    store.write_text(SYSTEM.read_text() if SYSTEM.is_file() else "")
    monkeypatch.setenv("SSL_CERT_FILE", str(store))
    return store


def test_requests_ca_bundle_does_not_replace_the_trust_the_connection_asked_for(sim, monkeypatch, os_store):
    # The connection asks for the OS store only; the environment points requests at the simulator's CA.
    without_ca_cert(monkeypatch, sim)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(sim.ca_path))
    monkeypatch.setenv("CURL_CA_BUNDLE", str(sim.ca_path))
    with pytest.raises(OpsManagerConfigError, match="TLS verification of .* failed"):
        OpsManagerHook().list_certificate_authorities()


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_ca_installed_in_the_os_store_is_trusted_without_ca_cert(sim, monkeypatch, os_store, kind):
    os_store.write_text(os_store.read_text() + "\n" + Path(sim.ca_path).read_text())
    without_ca_cert(monkeypatch, sim)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    if kind == "sync":
        assert OpsManagerHook().list_certificate_authorities()
    else:
        assert asyncio.run(OpsManagerAsyncHook().list_installations())


def test_ca_cert_is_added_to_the_os_store_not_instead_of_it(sim, monkeypatch, os_store, tmp_path):
    # Any real CA not otherwise trusted stands for a corporate CA: the simulated Ops Manager root CA.
    corporate = sim.state()["certificate_authorities"][0]["cert_pem"]
    os_store.write_text(os_store.read_text() + "\n" + corporate)
    hook = OpsManagerHook()
    assert hook.list_certificate_authorities()
    bundle = Path(hook.get_conn().verify).read_text()
    assert corporate.strip() in bundle, "the OS store is kept"
    assert Path(sim.ca_path).read_text().strip() in bundle, "ca_cert is added"
