"""The documented CA rotation end to end, checked with real X.509 key identifiers."""

from __future__ import annotations

from cryptography import x509

P_BOSH = "p-bosh-4a5b6c7d8e9f0a1b2c3d"
CF = "cf-0f1e2d3c4b5a69788796"


def _cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def _ski(cert: x509.Certificate) -> str:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()


def _aki(cert: x509.Certificate) -> str:
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier.hex()


def _leaves(sim) -> dict[str, dict]:
    return {leaf["name"]: leaf for leaf in sim.state()["leaves"]}


def _rotated(sim) -> list[str]:
    return [n for n, leaf in _leaves(sim).items() if not leaf["configurable"] and not leaf["excluded"]]


def test_initial_leaves_are_signed_by_the_initial_ca(api):
    st = api.sim.state()
    (ca,) = st["certificate_authorities"]
    ca_cert = _cert(ca["cert_pem"])
    names = [leaf["name"] for leaf in st["leaves"]]
    assert names == [
        "nats_server",
        "diego_rep",
        "director_ssl",
        "cf_credhub_internal",
        "cf_router_wildcard",
        "services_tls_ca",
    ]
    for leaf in st["leaves"]:
        cert = _cert(leaf["cert_pem"])
        assert leaf["authority_key_identifier"] == _aki(cert)
        if leaf["excluded"]:
            assert leaf["issuer_ca_guid"] is None and leaf["is_ca"] is True
            assert _aki(cert) == _ski(cert) != ca["subject_key_identifier"]
            continue
        assert leaf["issuer_ca_guid"] == ca["guid"]
        assert _aki(cert) == ca["subject_key_identifier"]
        cert.verify_directly_issued_by(ca_cert)
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert bc.ca is False


def test_full_rotation(api):
    sim = api.sim
    old = api.cas()[0]
    old_ski = sim.state()["certificate_authorities"][0]["subject_key_identifier"]

    # Step 1: generate (inactive) + Apply Changes: the new CA reaches the trust stores
    new = api.post("/api/v0/certificate_authorities/generate", data="{}").json()
    assert new["active"] is False
    assert sim.state()["trusted_ca_guids"] == [old["guid"]]
    assert api.apply_and_wait() == "succeeded"
    st = sim.state()
    assert st["trusted_ca_guids"] == [old["guid"], new["guid"]]
    assert st["installations"][0]["deployed"]["trusted_ca_guids"] == [old["guid"], new["guid"]]
    assert st["installations"][0]["deployed"]["reissued_leaves"] == []
    new_ski = [c for c in st["certificate_authorities"] if c["guid"] == new["guid"]][0][
        "subject_key_identifier"
    ]
    assert new_ski != old_ski

    # Step 2: activate
    assert api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={}).status_code == 200

    # Step 4: regenerate + Apply Changes: non-configurable leaves re-issued by the new CA
    assert api.post("/api/v0/certificate_authorities/active/regenerate").status_code == 200
    before = _leaves(sim)
    assert all(before[n]["pending_regeneration"] for n in _rotated(sim))
    assert all(before[n]["authority_key_identifier"] == old_ski for n in _rotated(sim))
    assert api.apply_and_wait() == "succeeded"
    after = _leaves(sim)
    new_cert = _cert(new["cert_pem"])
    for n in _rotated(sim):
        leaf = after[n]
        cert = _cert(leaf["cert_pem"])
        assert _aki(cert) == new_ski == leaf["authority_key_identifier"]
        cert.verify_directly_issued_by(new_cert)
        assert leaf["issuer_ca_guid"] == new["guid"] and leaf["pending_regeneration"] is False
        assert leaf["serial_number"] != before[n]["serial_number"]
    # configurable and excluded leaves untouched by regenerate
    assert after["cf_router_wildcard"]["cert_pem"] == before["cf_router_wildcard"]["cert_pem"]
    assert after["services_tls_ca"]["cert_pem"] == before["services_tls_ca"]["cert_pem"]
    # the ops_manager-location leaf PEM is visible through the credentials API too
    cred = api.get(f"/api/v0/deployed/products/{P_BOSH}/credentials/.properties.director_ssl").json()
    assert _aki(_cert(cred["credential"]["value"]["cert_pem"])) == new_ski
    # the deployed-certificates issuer name cannot tell the CAs apart (same subject)
    issuers = {
        c["issuer"] for c in api.get("/api/v0/deployed/certificates").json()["certificates"] if not c["is_ca"]
    }
    assert issuers == {"/C=US/O=Pivotal"}

    # Step 5: delete the old CA + Apply Changes: nothing deployed refers to it any more
    assert api.delete(f"/api/v0/certificate_authorities/{old['guid']}").status_code == 200
    assert [c["guid"] for c in api.cas()] == [new["guid"]]
    assert api.apply_and_wait() == "succeeded"
    st = sim.state()
    assert st["trusted_ca_guids"] == [new["guid"]]
    assert st["deleted_certificate_authorities"] == [old["guid"]]
    for leaf in st["leaves"]:
        assert leaf["issuer_ca_guid"] != old["guid"]
        assert leaf["authority_key_identifier"] != old_ski
    # the configurable leaf, orphaned by the delete, was re-issued by the active CA
    assert st["leaves"][4]["name"] == "cf_router_wildcard"
    assert st["leaves"][4]["authority_key_identifier"] == new_ski
    assert st["installations"][0]["deployed"]["reissued_leaves"] == ["cf_router_wildcard"]
    for inst in st["installations"]:
        if inst["id"] == st["installations"][0]["id"]:
            assert old["guid"] not in inst["deployed"]["trusted_ca_guids"]
            assert old["guid"] not in inst["deployed"]["leaf_issuers"].values()
    # history: newest first, 4 installations
    assert [i["status"] for i in api.get("/api/v0/installations").json()["installations"]] == [
        "succeeded"
    ] * 4


def test_regenerate_without_apply_leaves_old_certs_deployed(api):
    sim = api.sim
    old_ski = sim.state()["certificate_authorities"][0]["subject_key_identifier"]
    new = api.post("/api/v0/certificate_authorities/generate").json()
    api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={})
    api.post("/api/v0/certificate_authorities/active/regenerate")
    leaves = _leaves(sim)
    assert all(leaves[n]["authority_key_identifier"] == old_ski for n in _rotated(sim))
    # a failed Apply Changes changes nothing
    sim.faults(fail_next_installs=1)
    assert api.apply_and_wait() == "failed"
    leaves = _leaves(sim)
    assert all(leaves[n]["authority_key_identifier"] == old_ski for n in _rotated(sim))
    assert all(leaves[n]["pending_regeneration"] for n in _rotated(sim))
    assert sim.state()["installations"][0]["deployed"] is None


def test_director_only_apply_updates_only_the_director(api):
    sim = api.sim
    old = api.cas()[0]
    new = api.post("/api/v0/certificate_authorities/generate").json()
    assert api.apply_and_wait({"deploy_products": "none"}) == "succeeded"
    st = sim.state()
    by_product = {p["guid"]: p["trusted_ca_guids"] for p in st["products"]}
    assert by_product == {P_BOSH: [old["guid"], new["guid"]], CF: [old["guid"]]}
    assert st["trusted_ca_guids"] == [old["guid"]]  # trusted by every product
    api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={})
    api.post("/api/v0/certificate_authorities/active/regenerate")
    assert api.apply_and_wait({"deploy_products": [CF]}) == "succeeded"
    st = sim.state()
    assert st["trusted_ca_guids"] == [old["guid"], new["guid"]]
    assert all(
        leaf["issuer_ca_guid"] == new["guid"] for leaf in st["leaves"] if leaf["name"] in _rotated(sim)
    )


def test_regenerate_failed_leaves(api):
    sim = api.sim
    sim.faults(regenerate_failed=["diego_rep"])
    new = api.post("/api/v0/certificate_authorities/generate").json()
    api.apply_and_wait()
    api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={})
    r = api.post("/api/v0/certificate_authorities/active/regenerate")
    assert r.status_code == 200 and r.json() == {}  # legacy answers hide the failure
    api.apply_and_wait()
    leaves = _leaves(sim)
    assert leaves["diego_rep"]["issuer_ca_guid"] != new["guid"]
    assert leaves["nats_server"]["issuer_ca_guid"] == new["guid"]


def test_regenerate_during_running_install_stays_pending(api):
    sim = api.sim
    new = api.post("/api/v0/certificate_authorities/generate").json()
    api.apply_and_wait()
    api.post(f"/api/v0/certificate_authorities/{new['guid']}/activate", json={})
    iid = api.apply()
    api.post("/api/v0/certificate_authorities/active/regenerate")  # after the install started
    assert api.wait_install(iid) == "succeeded"
    leaves = _leaves(sim)
    assert all(leaves[n]["pending_regeneration"] for n in _rotated(sim))
    assert all(leaves[n]["issuer_ca_guid"] != new["guid"] for n in _rotated(sim))
    api.apply_and_wait()
    leaves = _leaves(sim)
    assert all(
        leaves[n]["issuer_ca_guid"] == new["guid"] and not leaves[n]["pending_regeneration"]
        for n in _rotated(sim)
    )
