"""The /_simulator control surface: journal, state, faults, reset."""

from __future__ import annotations

import threading
import time

import pytest
import requests


def _ctl(sim, method, path, **kw):
    return requests.request(method, sim.url + path, verify=sim.ca_path, timeout=10, **kw)


def test_journal_shape_and_clear(api):
    sim = api.sim
    sim.clear_journal()
    assert sim.journal() == []
    api.token(refresh=True)
    cas = api.get("/api/v0/certificate_authorities")
    api.get("/api/v0/deployed/certificates?expires_within=3m")
    api.post("/api/v0/certificate_authorities/ffffffffffffffffffff/activate", json={})
    sim.state()  # control calls are not journaled
    entries = sim.journal()
    assert entries[1]["bytes"] == len(cas.content), "bytes counts the response body sent"
    assert [(e["method"], e["path"], e["query"], e["status"]) for e in entries] == [
        ("POST", "/uaa/oauth/token", "", 200),
        ("GET", "/api/v0/certificate_authorities", "", 200),
        ("GET", "/api/v0/deployed/certificates", "expires_within=3m", 200),
        ("POST", "/api/v0/certificate_authorities/ffffffffffffffffffff/activate", "", 404),
    ]
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    for e in entries:
        assert set(e) == {"seq", "method", "path", "query", "status", "started_at", "finished_at", "dropped", "bytes"}
        assert isinstance(e["bytes"], int) and e["bytes"] >= 0
        assert isinstance(e["started_at"], float) and e["finished_at"] >= e["started_at"]
        assert e["dropped"] is False
    assert _ctl(sim, "DELETE", "/_simulator/journal").status_code == 200
    assert sim.journal() == []


def test_status_burst(api):
    sim = api.sim
    api.token()
    armed = sim.faults(status_burst={"status": 503, "count": 2, "methods": ["GET"], "path_prefix": "/api/"})
    assert armed["status_burst"] == {"status": 503, "count": 2, "methods": ["GET"], "path_prefix": "/api/"}
    sim.clear_journal()
    # POSTs do not match
    assert api.post("/api/v0/certificate_authorities/generate").status_code == 200
    for _ in range(2):
        r = api.get("/api/v0/certificate_authorities")
        assert r.status_code == 503
        assert r.headers["content-type"] == "text/html"
        assert r.text == "<html><body><h1>503 Service Unavailable</h1></body></html>"
    assert api.get("/api/v0/certificate_authorities").status_code == 200
    assert sim.faults()["status_burst"] is None
    assert [e["status"] for e in sim.journal()] == [200, 503, 503, 200]


def test_drop_next_before_processing(api):
    sim = api.sim
    api.token()
    sim.faults(drop_next={"count": 1, "methods": ["POST"], "path_prefix": "/api/v0/certificate_authorities"})
    sim.clear_journal()
    with pytest.raises(requests.exceptions.ConnectionError):
        api.post("/api/v0/certificate_authorities/generate")
    assert len(api.cas()) == 1  # not processed
    entries = sim.journal()
    assert entries[0]["dropped"] is True and entries[0]["status"] == 0
    assert entries[1]["dropped"] is False
    # the next call goes through
    assert api.post("/api/v0/certificate_authorities/generate").status_code == 200


def test_drop_next_after_processing(api):
    sim = api.sim
    api.token()
    sim.faults(drop_next={"count": 1, "methods": ["POST"], "path_prefix": "/api/v0/installations", "when": "after"})
    sim.clear_journal()
    with pytest.raises(requests.exceptions.ConnectionError):
        api.post("/api/v0/installations", json={"deploy_products": "all"})
    # processed: the install is running although the client never saw its id
    listing = api.get("/api/v0/installations").json()["installations"]
    assert listing[0]["id"] == 2 and listing[0]["status"] == "running"
    entry = sim.journal()[0]
    assert entry["dropped"] is True and entry["status"] == 200
    api.wait_install(2)


def test_latency_and_max_concurrency(api):
    sim = api.sim
    tok = api.token()
    sim.faults(latency={"seconds": 0.6, "count": 2, "methods": ["GET"], "path_prefix": "/api/v0/installations"})
    sim.clear_journal()  # also resets the high-water mark
    assert sim.state()["max_concurrent_requests"] == 0
    results = []

    def call():
        t0 = time.time()
        r = api.get("/api/v0/installations", token=tok)
        results.append((r.status_code, time.time() - t0))

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [s for s, _ in results] == [200, 200]
    assert all(d >= 0.55 for _, d in results)
    assert sim.state()["max_concurrent_requests"] == 2
    assert sim.faults()["latency"] is None  # used up: the next call is not delayed
    sim.clear_journal()
    assert sim.state()["max_concurrent_requests"] == 0


def test_sequential_client_has_concurrency_one(api):
    for _ in range(3):
        api.get("/api/v0/certificate_authorities")
    assert api.sim.state()["max_concurrent_requests"] == 1


def test_fault_validation(fresh):
    for body in ({"nope": 1}, {"fail_next_installs": -1}, {"status_burst": {"status": 99}},
                 {"regenerate_failed": ["not_a_leaf"]}, {"drop_next": {"when": "sometimes"}},
                 {"latency": {"count": 1}}, {"stage_pending_change": {"product_guid": "nope"}},
                 {"stream_cut": [-1]}, {"stream_cut": 3}, {"unterminated_last_line": "yes"},
                 {"install_conflict": {"status": 200}}):
        r = _ctl(fresh, "POST", "/_simulator/faults", json=body)
        assert r.status_code == 400, body
        assert "error" in r.json()
    assert fresh.faults() == {
        "fail_next_installs": 0, "status_burst": None, "drop_next": None, "latency": None, "token_ttl": None,
        "ca_status_207": False, "ca_warnings": [
            "Simulated warning: some certificates could not be processed by CredHub Maestro"],
        "regenerate_failed": [], "log_bytes_per_second": 0, "apply_seconds": None,
        "stream_cut": [], "unterminated_last_line": False, "install_conflict": None,
    }


def test_reset(api):
    sim = api.sim
    old_guid = api.cas()[0]["guid"]
    api.post("/api/v0/certificate_authorities/generate")
    sim.faults(fail_next_installs=3, ca_status_207=True)
    api.apply()
    r = _ctl(sim, "POST", "/_simulator/reset")
    assert r.status_code == 200
    cas = api.cas()  # tokens stay valid across a reset
    assert len(cas) == 1 and cas[0]["active"] and cas[0]["guid"] != old_guid
    inst = api.get("/api/v0/installations").json()["installations"]
    assert [(i["id"], i["status"]) for i in inst] == [(1, "succeeded")]
    assert sim.faults()["fail_next_installs"] == 0 and sim.faults()["ca_status_207"] is False
    assert [e["path"] for e in sim.journal()] == ["/api/v0/certificate_authorities", "/api/v0/installations"]


def test_state_shape(fresh):
    st = fresh.state()
    assert {"certificate_authorities", "deleted_certificate_authorities", "installations", "leaves",
            "trusted_ca_guids", "max_concurrent_requests"} <= set(st)
    leaf_keys = {"name", "location", "variable_path", "product_guid", "property_reference", "configurable",
                 "excluded", "issuer_ca_guid", "authority_key_identifier", "cert_pem", "pending_regeneration"}
    for leaf in st["leaves"]:
        assert leaf_keys <= set(leaf)
    (inst,) = st["installations"]
    assert inst["id"] == 1 and inst["status"] == "succeeded" and inst["deployed"]["trusted_ca_guids"]
