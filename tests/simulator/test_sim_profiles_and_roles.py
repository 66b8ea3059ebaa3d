"""Profiles (--profile 2.9|2.10|3.0) and roles (--role, --extra-user): what each answers and allows."""

from __future__ import annotations

import json

import pytest
import requests


def sse_events(text: str) -> list[tuple[str, str]]:
    events, event, data = [], None, []
    for line in text.split("\n"):
        if line == "":
            if event or data:
                events.append((event or "message", "\n".join(data)))
            event, data = None, []
        elif line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data.append(line[6:])
    return events


def as_user(make_api, sim, username: str, password: str):
    """An Api of the simulator's tests, logged in as another user."""
    api = make_api(sim)

    def token(refresh: bool = False) -> str:
        if api._token is None or refresh:
            r = requests.post(sim.url + "/uaa/oauth/token", auth=("opsman", ""), verify=sim.ca_path, timeout=30,
                              data={"grant_type": "password", "username": username, "password": password,
                                    "client_id": "opsman", "token_format": "jwt"})
            assert r.status_code == 200, r.text
            api._token = r.json()["access_token"]
        return api._token

    api.token = token
    return api


@pytest.fixture(scope="module", params=["2.9", "2.10", "3.0"])
def profiled(request, tmp_path_factory, launch):
    s = launch(tmp_path_factory, f"sim-{request.param}",
                  extra_args=("--profile", request.param, "--extra-user", "control:c-pw:restricted_control",
                              "--extra-user", "viewer:v-pw:read_only"))
    s.profile = request.param
    yield s
    s.stop()


@pytest.fixture
def papi(profiled, make_api):
    profiled.reset()
    return make_api(profiled)


VERSIONS = {"2.9": "2.9.", "2.10": "2.10.", "3.0": "3.0."}


def test_info_reports_the_profiles_version_without_a_token(papi):
    r = papi.get("/api/v0/info", auth=False)
    assert r.status_code == 200 and r.json()["info"]["version"].startswith(VERSIONS[papi.sim.profile])
    config = papi.sim.state()["config"]
    assert config["profile"] == papi.sim.profile and config["version"] == r.json()["info"]["version"]
    assert config["extra_users"] == [{"name": "control", "role": "restricted_control"}, {"name": "viewer", "role": "full_view"}]
    assert "c-pw" not in str(config)


def test_answer_style_and_safety_checks_follow_the_profile(papi):
    generated = papi.post("/api/v0/certificate_authorities/generate", json={}).json()
    assert ("certificates" in generated) == (papi.sim.profile != "2.9")
    activate = papi.post(f"/api/v0/certificate_authorities/{generated['guid']}/activate", json={})
    # 2.10+: activating a CA no Apply Changes has distributed is a safety violation.
    assert activate.status_code == (200 if papi.sim.profile == "2.9" else 422), activate.text


def test_root_cas_in_deployed_certificates_from_2_10(papi):
    certs = papi.get("/api/v0/deployed/certificates").json()["certificates"]
    roots = [c for c in certs if c["is_ca"] and c["issuer"] == "/C=US/O=Pivotal"]
    if papi.sim.profile == "2.9":
        assert roots == []
        return
    (active,) = papi.cas()
    assert len(roots) == 1 and roots[0]["location"] == "ops_manager" and roots[0]["product_guid"] is None
    assert roots[0]["valid_until"][:10] == active["expires_on"][:10]
    papi.post("/api/v0/certificate_authorities/generate", json={})
    assert len([c for c in papi.get("/api/v0/deployed/certificates").json()["certificates"] if c["is_ca"]
                and c["issuer"] == "/C=US/O=Pivotal"]) == 2
    # The expiry filter applies to them as to leaves: a 4-year CA is not expiring within a day.
    soon = papi.get("/api/v0/deployed/certificates?expires_within=1d").json()["certificates"]
    assert not [c for c in soon if c["issuer"] == "/C=US/O=Pivotal" and c["is_ca"]]


def test_current_log_by_profile(papi):
    iid = papi.apply()
    r = papi.get("/api/v0/installations/current_log")
    if papi.sim.profile != "3.0":
        assert r.status_code == 404 and r.json() == {"errors": ["Not Found"]}
        papi.wait_install(iid)
        return
    events = sse_events(r.text)
    assert events[0][0] == "step_info" and isinstance(json.loads(events[0][1]), list)
    assert {k for k, _ in events[1:-1]} == {"step_state_changed", "message"}
    assert events[-1] == ("exit", json.dumps({"type": "exit", "code": 0}))
    logs = papi.get(f"/api/v0/installations/{iid}/logs").json()["logs"]
    assert "".join(d + "\n" for k, d in events if k == "message") == logs


class TestRoles:
    def credential_path(self, api) -> str:
        cert = next(c for c in api.get("/api/v0/deployed/certificates").json()["certificates"]
                    if c["location"] == "ops_manager" and c["property_reference"])
        return f"/api/v0/deployed/products/{cert['product_guid']}/credentials/{cert['property_reference']}"

    def test_the_token_lists_the_roles_group(self, papi):
        control = as_user(papi.__class__, papi.sim, "control", "c-pw")
        r = requests.post(papi.sim.url + "/uaa/oauth/token", auth=("opsman", ""), verify=papi.sim.ca_path, timeout=30,
                          data={"grant_type": "password", "username": "control", "password": "c-pw", "client_id": "opsman"})
        assert "opsman.restricted_control" in r.json()["scope"].split() and "opsman.admin" not in r.json()["scope"]
        assert control.token()

    def test_restricted_control_writes_but_may_not_read_credentials(self, papi):
        control = as_user(papi.__class__, papi.sim, "control", "c-pw")
        path = self.credential_path(papi)
        assert papi.get(path).status_code == 200
        refused = control.get(path)
        assert refused.status_code == 403 and refused.json() == {"errors": {"errors": ["You are not authorized to view credentials"]}}
        assert control.get(path.rsplit("/", 1)[0]).status_code == 200, "the list of references stays readable"
        assert control.post("/api/v0/certificate_authorities/generate", json={}).status_code == 200
        assert control.wait_install(control.apply()) == "succeeded"

    def test_read_only_reads_and_every_write_is_refused_unprocessed(self, papi):
        viewer = as_user(papi.__class__, papi.sim, "viewer", "v-pw")
        assert viewer.get("/api/v0/certificate_authorities").status_code == 200
        assert viewer.get("/api/v0/installations").status_code == 200
        (ca,) = papi.cas()
        for method, path in [("POST", "/api/v0/certificate_authorities/generate"), ("POST", "/api/v0/installations"),
                             ("DELETE", f"/api/v0/certificate_authorities/{ca['guid']}"),
                             ("PUT", "/api/v0/staged/director/properties")]:
            r = viewer.call(method, path, json={})
            assert r.status_code == 403 and r.json() == {"errors": {"errors": ["You are not authorized to perform this action"]}}, (method, path)
        assert papi.cas() == [ca] and len(papi.get("/api/v0/installations").json()["installations"]) == 1

    def test_a_wrong_password_for_an_extra_user_is_refused(self, papi, creds):
        r = requests.post(papi.sim.url + "/uaa/oauth/token", auth=("opsman", ""), verify=papi.sim.ca_path, timeout=30,
                          data={"grant_type": "password", "username": "viewer", "password": creds["password"],
                                "client_id": "opsman"})
        assert r.status_code == 401


def test_role_flag_sets_the_main_users_role(tmp_path_factory, launch, make_api):
    s = launch(tmp_path_factory, "sim-ro", extra_args=("--role", "read_only"))
    try:
        api = make_api(s)
        assert api.get("/api/v0/certificate_authorities").status_code == 200
        assert api.post("/api/v0/certificate_authorities/generate", json={}).status_code == 403
    finally:
        s.stop()


def test_unknown_role_is_refused_at_start(tmp_path_factory, launch):
    with pytest.raises(Exception, match="did not|exited|ready|superuser"):
        launch(tmp_path_factory, "sim-bad", extra_args=("--role", "superuser"), start_timeout=10)


def test_stream_cut_ends_the_next_streams_early_and_a_reconnect_replays(papi):
    if papi.sim.profile != "3.0":
        pytest.skip("only 3.0 has current_log")
    iid = papi.apply()
    papi.sim.faults(stream_cut=[2, 0])
    first = sse_events(papi.get("/api/v0/installations/current_log").text)
    assert [k for k, _ in first].count("message") == 2 and first[-1][0] != "exit"
    second = sse_events(papi.get("/api/v0/installations/current_log").text)
    assert [k for k, _ in second] == ["step_info", "step_state_changed"], "cut before the first line"
    third = sse_events(papi.get("/api/v0/installations/current_log").text)
    assert third[-1][0] == "exit"
    assert [d for k, d in third if k == "message"][:2] == [d for k, d in first if k == "message"]
    papi.wait_install(iid)


def test_unterminated_last_line(papi):
    iid = papi.apply()
    papi.wait_install(iid)
    papi.sim.faults(unterminated_last_line=True)
    logs = papi.get(f"/api/v0/installations/{iid}/logs").json()["logs"]
    assert logs.endswith("Exited Successfully") and not logs.endswith("\n")
