"""--answer-style 2.10, --ca-date-format rfc3339 and --safety-checks (CredHub Maestro)."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import requests

P_BOSH = "p-bosh-4a5b6c7d8e9f0a1b2c3d"
CF = "cf-0f1e2d3c4b5a69788796"
RFC_S = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
ITEM_KEYS = {"location", "product_guid", "property_reference", "variable_path", "reason"}
MITIGATION_RE = re.compile(r"Apply Changes.*Do not run earlier commands", re.S)


@pytest.fixture(scope="module")
def sim(tmp_path_factory, launch):
    s = launch(
        tmp_path_factory,
        "sim210",
        apply_seconds=0.6,
        extra_args=(
            "--answer-style",
            "2.10",
            "--ca-date-format",
            "rfc3339",
            "--safety-checks",
            "--initial-ca-age-days",
            "30",
        ),
    )
    yield s
    s.stop()


def _check_items(items):
    for item in items:
        assert set(item) == ITEM_KEYS
        assert item["location"] in ("credhub", "ops_manager")
        assert isinstance(item["reason"], str) and item["reason"]


def _violation(r, names_include=None):
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error", "safety_violations"}
    assert isinstance(body["error"], str) and body["error"]
    (v,) = body["safety_violations"]
    assert set(v) == {"violation", "certificate_names", "migitation"}  # sic, as documented
    assert isinstance(v["violation"], str) and v["certificate_names"]
    assert MITIGATION_RE.search(v["migitation"])
    if names_include:
        assert set(names_include) <= set(v["certificate_names"])
    return v


def test_info_version(fresh):
    r = requests.get(fresh.url + "/api/v0/info", verify=fresh.ca_path, timeout=10)
    assert r.json() == {"info": {"version": "2.10.60-build.4"}}


def test_ca_objects_rfc3339_and_nats(api):
    (ca,) = api.cas()
    assert set(ca) == {"guid", "issuer", "created_on", "expires_on", "active", "cert_pem", "nats_cert_pem"}
    assert RFC_S.match(ca["created_on"]) and RFC_S.match(ca["expires_on"])
    created = dt.datetime.fromisoformat(ca["created_on"].replace("Z", "+00:00"))
    age = dt.datetime.now(dt.UTC) - created
    assert dt.timedelta(days=29, hours=23) < age < dt.timedelta(days=30, hours=1)
    assert (
        ca["nats_cert_pem"].startswith("-----BEGIN CERTIFICATE-----")
        and ca["nats_cert_pem"] != ca["cert_pem"]
    )


def test_rotation_with_2_10_answers_and_safety_checks(api):
    old = api.cas()[0]
    r = api.post("/api/v0/certificate_authorities/generate")
    assert r.status_code == 200
    new = r.json()
    assert new["active"] is False and "nats_cert_pem" in new
    certs = new["certificates"]
    assert set(certs) == {"regenerated", "excluded", "regenerate_failed"}
    assert certs["regenerated"] == [] and certs["regenerate_failed"] == []
    _check_items(certs["excluded"])
    assert [i["variable_path"] for i in certs["excluded"]] == ["/services/tls_ca"]

    # activate before any Apply Changes: safety violation
    v = _violation(api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={}))
    assert f"Ops Manager Root CA {new['guid']}" in v["certificate_names"]
    assert [c["active"] for c in api.cas()] == [True, False]  # nothing changed
    assert api.apply_and_wait() == "succeeded"

    r = api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={})
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"certificates"} and set(body["certificates"]) == {
        "updated",
        "excluded",
        "update_failed",
    }
    _check_items(body["certificates"]["updated"])
    assert len(body["certificates"]["updated"]) == 4 and body["certificates"]["update_failed"] == []

    r = api.post("/api/v0/certificate_authorities/active/regenerate")
    assert r.status_code == 200
    regen = r.json()["certificates"]
    assert set(regen) == {"regenerated", "excluded", "regenerate_failed"}
    _check_items(regen["regenerated"] + regen["excluded"])
    assert sorted(i["variable_path"] or i["property_reference"] for i in regen["regenerated"]) == sorted(
        [
            "/p-bosh/director/nats_server_tls",
            f"/p-bosh/{CF}/diego_rep_agent_v2",
            ".properties.director_ssl",
            ".properties.credhub_internal_tls",
        ]
    )
    assert regen["regenerate_failed"] == []

    # delete the old CA before the Apply Changes that deploys the regenerated leaves: violation
    _violation(
        api.delete(f"/api/v0/certificate_authorities/{old['guid']}"),
        names_include=["/p-bosh/director/nats_server_tls", ".properties.director_ssl"],
    )
    assert len(api.cas()) == 2
    assert api.apply_and_wait() == "succeeded"
    r = api.delete(f"/api/v0/certificate_authorities/{old['guid']}")
    assert r.status_code == 200
    assert set(r.json()["certificates"]) == {"updated", "excluded", "update_failed"}
    assert api.apply_and_wait() == "succeeded"
    assert api.sim.state()["trusted_ca_guids"] == [new["guid"]]


def test_activate_needs_every_trust_store(api):
    new = api.post("/api/v0/certificate_authorities/generate").json()
    api.apply_and_wait({"deploy_products": "none"})  # only the director learns the new CA
    _violation(
        api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={}),
        names_include=[f"trust store of {CF}"],
    )


def test_regenerate_failed_reported(api):
    api.sim.faults(regenerate_failed=["diego_rep", "director_ssl"])
    r = api.post("/api/v0/certificate_authorities/active/regenerate")
    assert r.status_code == 200
    failed = r.json()["certificates"]["regenerate_failed"]
    _check_items(failed)
    assert [i["variable_path"] or i["property_reference"] for i in failed] == [
        f"/p-bosh/{CF}/diego_rep_agent_v2",
        ".properties.director_ssl",
    ]
    assert len(r.json()["certificates"]["regenerated"]) == 2


def test_207_with_certificates(api):
    api.sim.faults(ca_status_207=True)
    r = api.post("/api/v0/certificate_authorities/active/regenerate")
    assert r.status_code == 207
    assert set(r.json()) == {"certificates", "warnings"}


def test_deployed_certificates_rotation_procedure(api):
    certs = api.get("/api/v0/deployed/certificates").json()["certificates"]
    for c in certs:
        assert {"rotation_procedure_name", "rotation_procedure_url"} <= set(c)
        assert c["rotation_procedure_url"].startswith("https://")
    names = {c["variable_path"] or c["property_reference"]: c["rotation_procedure_name"] for c in certs}
    assert names["/services/tls_ca"] == "Services TLS CA Procedure"
    assert names[".properties.networking_poe_ssl_certs"] == "Configurable Leaf Certificates Procedure"
    assert names["/p-bosh/director/nats_server_tls"] == "Non-Configurable Leaf Certificates Procedure"
