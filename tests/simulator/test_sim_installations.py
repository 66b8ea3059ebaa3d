"""Apply Changes (reference §4), pending changes (§5), products and deployed certificates (§3)."""

from __future__ import annotations

import datetime as dt
import json
import re

import requests

MS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
S_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
P_BOSH = "p-bosh-4a5b6c7d8e9f0a1b2c3d"
CF = "cf-0f1e2d3c4b5a69788796"


def _parse(ts: str) -> dt.datetime:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00"))


def test_initial_history(api):
    r = api.get("/api/v0/installations")
    assert r.status_code == 200
    (inst,) = r.json()["installations"]
    assert set(inst) == {"id", "user_name", "status", "started_at", "finished_at"}
    assert inst["id"] == 1 and inst["status"] == "succeeded" and inst["user_name"] == "admin"
    assert MS_RE.match(inst["started_at"]) and MS_RE.match(inst["finished_at"])
    age = dt.datetime.now(dt.timezone.utc) - _parse(inst["started_at"])
    assert dt.timedelta(hours=23) < age < dt.timedelta(hours=25)
    assert _parse(inst["finished_at"]) > _parse(inst["started_at"])
    logs = api.get("/api/v0/installations/1/logs").json()["logs"]
    assert logs.endswith("Exited Successfully\n")


def test_install_runs_then_succeeds_and_logs_grow_by_appending(api):
    api.sim.faults(log_bytes_per_second=2000)
    r = api.post(
        "/api/v0/installations",
        json={"ignore_warnings": "false", "force_latest_variables": False, "deploy_products": "all"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/json"
    assert set(r.json()) == {"install"} and set(r.json()["install"]) == {"id"}
    iid = r.json()["install"]["id"]
    assert iid == 2
    assert api.get(f"/api/v0/installations/{iid}").json() == {"status": "running"}
    listing = api.get("/api/v0/installations").json()["installations"]
    assert [i["id"] for i in listing] == [2, 1]  # newest first
    assert listing[0]["status"] == "running" and listing[0]["finished_at"] is None
    assert MS_RE.match(listing[0]["started_at"])
    snapshots = []
    status = "running"
    while status == "running":
        logs = api.get(f"/api/v0/installations/{iid}/logs")
        assert logs.status_code == 200 and set(logs.json()) == {"logs"}
        snapshots.append(logs.json()["logs"])
        status = api.get(f"/api/v0/installations/{iid}").json()["status"]
        api.sim.clock(advance_seconds=api.sim.apply_seconds / 6)  # six steps of simulated time, however loaded the machine
    assert status == "succeeded"
    final = api.get(f"/api/v0/installations/{iid}/logs").json()["logs"]
    snapshots.append(final)
    for a, b in zip(snapshots, snapshots[1:]):
        assert b.startswith(a)  # cumulative: only ever appended to
    assert len({len(s) for s in snapshots}) >= 3  # it really grew while running
    assert len(final) > 1500  # log_bytes_per_second padding
    assert "Running \"/usr/local/bin/bosh" in final and final.endswith("Exited Successfully\n")
    done = api.get("/api/v0/installations").json()["installations"][0]
    assert done["status"] == "succeeded" and MS_RE.match(done["finished_at"])
    dur = (_parse(done["finished_at"]) - _parse(done["started_at"])).total_seconds()
    assert abs(dur - api.sim.apply_seconds) < 0.01


def test_post_while_running_is_refused(api):
    iid = api.apply()
    r = api.post("/api/v0/installations", json={"deploy_products": "all"})
    assert r.status_code == 409
    assert r.json() == {"errors": ["An installation is already in progress"]}
    assert api.wait_install(iid) == "succeeded"
    assert [i["id"] for i in api.get("/api/v0/installations").json()["installations"]] == [2, 1]


def test_failed_install(api):
    api.sim.faults(fail_next_installs=1)
    assert api.sim.faults()["fail_next_installs"] == 1
    iid = api.apply()
    assert api.sim.faults()["fail_next_installs"] == 0
    assert api.wait_install(iid) == "failed"
    logs = api.get(f"/api/v0/installations/{iid}/logs").json()["logs"]
    assert logs.endswith("Exited with 1.\n") and "Exit Status: 1" in logs
    inst = api.get("/api/v0/installations").json()["installations"][0]
    assert inst["status"] == "failed" and inst["finished_at"] is not None
    # the next one succeeds again
    assert api.apply_and_wait() == "succeeded"


def test_unknown_installation_404(api):
    for path in ("/api/v0/installations/999", "/api/v0/installations/999/logs", "/api/v0/installations/abc"):
        r = api.get(path)
        assert r.status_code == 404
        assert r.json() == {"errors": [f"Installation with id '{path.split('/')[4]}' not found"]}


def test_install_body_validation(api):
    cases = [
        ({"deploy_products": "some"}, 'deploy_products must be "all", "none" or an array of product guids'),
        ({"deploy_products": ["nope-123"]}, "Product with guid 'nope-123' could not be found"),
        ({"ignore_warnings": "maybe"}, 'ignore_warnings must be a boolean (or the string "true"/"false")'),
        ({"force_latest_variables": "false"}, "force_latest_variables must be a boolean"),
        ({"errands": {"nope": {"run_post_deploy": {"smoke": True}}}}, "Product with guid 'nope' could not be found"),
        ({"errands": {CF: {"run_post_deploy": {"smoke": "sometimes"}}}},
         f"errands for '{CF}'.run_post_deploy must map errand names to true, false or \"default\""),
    ]
    for body, error in cases:
        r = api.post("/api/v0/installations", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json() == {"errors": [error]}
    r = api.post("/api/v0/installations", data="{not json")
    assert r.status_code == 400 and r.json() == {"errors": ["The request body is not valid JSON"]}
    assert len(api.get("/api/v0/installations").json()["installations"]) == 1
    # accepted variants: bool ignore_warnings, product list, errands, empty body
    body = {"ignore_warnings": True, "deploy_products": [CF], "force_latest_variables": True,
            "errands": {CF: {"run_post_deploy": {"smoke_tests": "default"}, "run_pre_delete": {"x": False}}}}
    assert api.apply_and_wait(body) == "succeeded"
    rec = api.sim.state()["installations"][0]
    assert rec["request"]["deploy_products"] == [CF] and rec["request"]["ignore_warnings"] is True
    assert rec["deployed_products"] == [P_BOSH, CF]
    r = api.post("/api/v0/installations")
    assert r.status_code == 200
    api.wait_install(r.json()["install"]["id"])


def test_installations_pagination(api):
    api.apply_and_wait()
    page = api.get("/api/v0/installations?page_num=2&per_page=1").json()["installations"]
    assert [i["id"] for i in page] == [1]


def test_current_log_idle_and_running(api):
    r = api.get("/api/v0/installations/current_log")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text == 'event: exit\ndata: {"type": "exit", "code": 0, "message": "no install in progress"}\n\n'
    iid = api.apply()
    r = api.get("/api/v0/installations/current_log", stream=True)
    events = []
    event, data = None, []
    for line in r.iter_lines(decode_unicode=True):
        if line == "":
            events.append((event or "message", "\n".join(data)))
            event, data = None, []
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
    kinds = [e[0] for e in events]
    steps = json.loads(events[0][1])
    assert kinds[0] == "step_info" and isinstance(steps, list) and steps[0]["id"] == "bosh_director"
    changes = [json.loads(d) for k, d in events if k == "step_state_changed"]
    assert {c["type"] for c in changes} == {"step_started", "step_finished"}
    assert [c["id"] for c in changes if c["type"] == "step_started"] == [s["id"] for s in steps]
    assert "message" in kinds
    # The stream replays the whole log: its lines are exactly the installation's log.
    lines = [d for k, d in events if k == "message"]
    assert "".join(line + "\n" for line in lines) == api.get(f"/api/v0/installations/{iid}/logs").json()["logs"]
    assert kinds[-1] == "exit" and json.loads(events[-1][1]) == {"type": "exit", "code": 0}
    assert api.get(f"/api/v0/installations/{iid}").json() == {"status": "succeeded"}


def test_products(api):
    for path in ("/api/v0/staged/products", "/api/v0/deployed/products"):
        r = api.get(path)
        assert r.status_code == 200
        assert r.json() == [
            {"installation_name": P_BOSH, "guid": P_BOSH, "type": "p-bosh", "product_version": "2.10.60-build.4"},
            {"installation_name": CF, "guid": CF, "type": "cf", "product_version": "2.11.42"},
        ]


def test_pending_changes(api):
    r = api.get("/api/v0/staged/pending_changes")
    assert r.status_code == 200
    changes = r.json()["product_changes"]
    assert [(c["guid"], c["action"]) for c in changes] == [(P_BOSH, "unchanged"), (CF, "unchanged")]
    assert changes[1]["errands"] == [{"name": "smoke_tests", "post_deploy": "when-changed"}]
    assert changes[0]["completeness_checks"] == {
        "configuration_complete": True, "stemcell_present": True, "configurable_properties_valid": True}
    api.sim.faults(stage_pending_change={"product_guid": CF, "action": "update"})
    changes = api.get("/api/v0/staged/pending_changes").json()["product_changes"]
    assert [(c["guid"], c["action"]) for c in changes] == [(P_BOSH, "unchanged"), (CF, "update")]
    api.sim.faults(clear_pending_changes=True)
    assert all(c["action"] == "unchanged" for c in api.get("/api/v0/staged/pending_changes").json()["product_changes"])
    # a successful Apply Changes of that product clears it; a director-only one does not
    api.sim.faults(stage_pending_change={"product_guid": CF, "action": "update"})
    assert api.apply_and_wait({"deploy_products": "none"}) == "succeeded"
    assert api.get("/api/v0/staged/pending_changes").json()["product_changes"][1]["action"] == "update"
    assert api.apply_and_wait() == "succeeded"
    assert api.get("/api/v0/staged/pending_changes").json()["product_changes"][1]["action"] == "unchanged"


def test_deployed_certificates(api):
    r = api.get("/api/v0/deployed/certificates")
    assert r.status_code == 200
    certs = r.json()["certificates"]
    assert len(certs) == 6
    keys = {"issuer", "valid_from", "valid_until", "configurable", "property_reference", "property_type",
            "product_guid", "location", "variable_path", "is_ca"}
    for c in certs:
        assert set(c) == keys  # legacy: no rotation_procedure_* fields
        assert S_RE.match(c["valid_from"]) and S_RE.match(c["valid_until"])
        assert c["location"] in ("credhub", "ops_manager")
        if c["location"] == "credhub":
            assert c["variable_path"] and c["product_guid"] is None and c["property_reference"] is None
        else:
            assert c["variable_path"] is None and c["product_guid"] in (P_BOSH, CF)
            assert c["property_reference"].startswith(".properties.") and c["property_type"] == "rsa_cert_credentials"
    by_path = {c["variable_path"] or c["property_reference"]: c for c in certs}
    assert by_path["/p-bosh/director/nats_server_tls"]["issuer"] == "/C=US/O=Pivotal"
    assert by_path["/services/tls_ca"]["is_ca"] is True
    assert by_path["/services/tls_ca"]["issuer"] == "/C=US/O=Pivotal/CN=services-tls-ca"
    assert by_path[".properties.networking_poe_ssl_certs"]["configurable"] is True
    assert sum(c["configurable"] for c in certs) == 1
    # expires_within filters on valid_until (nats_server expires in ~30 days)
    soon = api.get("/api/v0/deployed/certificates?expires_within=5w").json()["certificates"]
    assert [c["variable_path"] for c in soon] == ["/p-bosh/director/nats_server_tls"]
    assert api.get("/api/v0/deployed/certificates?expires_within=1d").json() == {"certificates": []}
    assert len(api.get("/api/v0/deployed/certificates?expires_within=2y").json()["certificates"]) == 6
    for bad in ("0d", "3", "3x", "-1m", "m"):
        r = api.get(f"/api/v0/deployed/certificates?expires_within={bad}")
        assert r.status_code == 422
        assert r.json() == {"errors": [f"Invalid expires_within '{bad}': expected an integer followed by d, w, m "
                                       "or y (e.g. 3m)"]}
    only_excluded = api.get("/api/v0/deployed/certificates?show_excluded_from_rotation_only=true").json()
    assert [c["variable_path"] for c in only_excluded["certificates"]] == ["/services/tls_ca"]


def test_credentials_endpoint(api):
    r = api.get(f"/api/v0/deployed/products/{P_BOSH}/credentials/.properties.director_ssl")
    assert r.status_code == 200
    cred = r.json()["credential"]
    assert cred["type"] == "rsa_cert_credentials"
    assert cred["value"]["cert_pem"].startswith("-----BEGIN CERTIFICATE-----")
    leaf = {l["name"]: l for l in api.sim.state()["leaves"]}["director_ssl"]
    assert cred["value"]["cert_pem"] == leaf["cert_pem"]
    assert api.get(f"/api/v0/deployed/products/{CF}/credentials").json() == {
        "credentials": [".properties.credhub_internal_tls", ".properties.networking_poe_ssl_certs"]}
    r = api.get(f"/api/v0/deployed/products/{P_BOSH}/credentials/.properties.nope")
    assert r.status_code == 404 and r.json() == {
        "errors": [f"Credential '.properties.nope' not found for product '{P_BOSH}'"]}
    r = api.get("/api/v0/deployed/products/nope/credentials/.properties.director_ssl")
    assert r.status_code == 404 and r.json() == {"errors": ["Product with guid 'nope' not found"]}


def test_unknown_route_404(api):
    r = api.get("/api/v0/nope")
    assert r.status_code == 404 and r.json() == {"errors": ["Not Found"]}


def test_no_auth_on_every_api_endpoint(api):
    paths = [
        ("GET", "/api/v0/certificate_authorities"), ("POST", "/api/v0/certificate_authorities/generate"),
        ("POST", "/api/v0/certificate_authorities"), ("POST", "/api/v0/certificate_authorities/active/regenerate"),
        ("POST", "/api/v0/certificate_authorities/x/activate"), ("DELETE", "/api/v0/certificate_authorities/x"),
        ("POST", "/api/v0/installations"), ("GET", "/api/v0/installations"), ("GET", "/api/v0/installations/1"),
        ("GET", "/api/v0/installations/1/logs"), ("GET", "/api/v0/installations/current_log"),
        ("GET", "/api/v0/staged/pending_changes"), ("GET", "/api/v0/staged/products"),
        ("GET", "/api/v0/deployed/products"), ("GET", "/api/v0/deployed/certificates"),
        ("GET", f"/api/v0/deployed/products/{P_BOSH}/credentials/.properties.director_ssl"),
    ]
    for method, path in paths:
        r = requests.request(method, api.sim.url + path, verify=api.sim.ca_path, timeout=10)
        assert r.status_code == 401, (method, path)
        assert "Unable to successfully verify the access token with UAA" in r.json()["errors"]["base"][0]
    assert len(api.cas()) == 1 and len(api.get("/api/v0/installations").json()["installations"]) == 1
