"""UAA token endpoint (reference §1) and API authentication."""

from __future__ import annotations

import requests

INVALID_TOKEN = {
    "errors": {
        "base": [
            "Unable to successfully verify the access token with UAA.  Error: 'CF::UAA::InvalidToken - error response'"
        ]
    }
}
BAD_CREDENTIALS = {"error": "unauthorized", "error_description": "Bad credentials"}


def _password_grant(sim, username="admin", password=None, basic=("opsman", "")):
    return requests.post(
        sim.url + "/uaa/oauth/token",
        auth=basic,
        data={
            "grant_type": "password",
            "username": username,
            "password": sim.password if password is None else password,
            "client_id": "opsman",
            "token_format": "jwt",
        },
        verify=sim.ca_path,
        timeout=10,
    )


def _client_grant(sim, cid, secret):
    return requests.post(
        sim.url + "/uaa/oauth/token",
        auth=(cid, secret),
        data={"grant_type": "client_credentials", "token_format": "jwt"},
        verify=sim.ca_path,
        timeout=10,
    )


def test_password_grant_response_shape(fresh):
    r = _password_grant(fresh)
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/json"
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope", "jti"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert isinstance(body["access_token"], str) and len(body["access_token"]) > 20
    assert "opsman.admin" in body["scope"].split()
    assert isinstance(body["jti"], str) and body["jti"]
    # the token works
    r2 = requests.get(
        fresh.url + "/api/v0/certificate_authorities",
        headers={"Authorization": "Bearer " + body["access_token"]},
        verify=fresh.ca_path,
        timeout=10,
    )
    assert r2.status_code == 200


def test_client_credentials_grant(fresh, creds):
    r = _client_grant(fresh, creds["client_id"], creds["client_secret"])
    assert r.status_code == 200
    body = r.json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == "opsman.admin"
    r2 = requests.get(
        fresh.url + "/api/v0/installations",
        headers={"Authorization": "Bearer " + body["access_token"], "Content-Type": "application/json"},
        verify=fresh.ca_path,
        timeout=10,
    )
    assert r2.status_code == 200


def test_bad_credentials(fresh, creds):
    for r in (
        _password_grant(fresh, password="wrong"),
        _password_grant(fresh, username="nobody"),
        _password_grant(fresh, basic=("opsman", "not-empty")),
        _password_grant(fresh, basic=("other-client", "")),
        _client_grant(fresh, creds["client_id"], "wrong"),
        _client_grant(fresh, "unknown", creds["client_secret"]),
    ):
        assert r.status_code == 401, r.text
        assert r.json() == BAD_CREDENTIALS
        assert r.headers["content-type"].split(";")[0] == "application/json"


def test_unsupported_grant(fresh):
    r = requests.post(
        fresh.url + "/uaa/oauth/token",
        auth=("opsman", ""),
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        verify=fresh.ca_path,
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"


def test_missing_garbage_and_wrong_scheme_tokens_get_401(api):
    for headers in ({}, {"Authorization": "Bearer garbage"}, {"Authorization": "Basic b3BzbWFuOg=="}):
        r = requests.get(
            api.sim.url + "/api/v0/certificate_authorities",
            headers=headers,
            verify=api.sim.ca_path,
            timeout=10,
        )
        assert r.status_code == 401
        assert r.json() == INVALID_TOKEN
    # a token with a flipped signature character
    tok = api.token()
    bad = tok[:-2] + ("A" if tok[-2] != "A" else "B") + tok[-1]
    assert api.get("/api/v0/installations", token=bad).status_code == 401


def test_info_is_unauthenticated(fresh):
    r = requests.get(fresh.url + "/api/v0/info", verify=fresh.ca_path, timeout=10)
    assert r.status_code == 200
    assert r.json() == {"info": {"version": "2.9.13-build.165"}}


def test_token_really_expires(api):
    api.sim.faults(token_ttl=1.0)
    r = _password_grant(api.sim)
    assert r.json()["expires_in"] == 1
    tok = r.json()["access_token"]
    assert api.get("/api/v0/certificate_authorities", token=tok).status_code == 200
    api.sim.clock(advance_seconds=1.0)
    r2 = api.get("/api/v0/certificate_authorities", token=tok)
    assert r2.status_code == 401
    assert r2.json() == INVALID_TOKEN
    # a fresh grant works again
    assert api.get("/api/v0/certificate_authorities", token=api.token(refresh=True)).status_code == 200


def test_revoked_tokens_get_401(api):
    tok = api.token()
    assert api.get("/api/v0/installations", token=tok).status_code == 200
    api.sim.faults(revoke_tokens=True)
    r = api.get("/api/v0/installations", token=tok)
    assert r.status_code == 401
    assert r.json() == INVALID_TOKEN
    assert api.get("/api/v0/installations", token=api.token(refresh=True)).status_code == 200


def test_journal_never_contains_secrets(api, creds):
    api.sim.clear_journal()
    tok = api.token(refresh=True)
    _client_grant(api.sim, creds["client_id"], creds["client_secret"])
    _password_grant(api.sim, password="wrong-" + creds["password"])
    api.get("/api/v0/installations")
    api.get("/api/v0/installations?password=hunter2&page_num=1")
    r = requests.get(api.sim.url + "/_simulator/journal", verify=api.sim.ca_path, timeout=10)
    text = r.text
    for secret in (creds["password"], creds["client_secret"], tok, "hunter2", tok.split(".")[2]):
        assert secret not in text
    entries = r.json()["entries"]
    token_calls = [e for e in entries if e["path"] == "/uaa/oauth/token"]
    assert [e["status"] for e in token_calls] == [200, 200, 401]
    assert all(e["method"] == "POST" and e["query"] == "" for e in token_calls)
    redacted = [e for e in entries if "page_num" in e["query"]]
    assert redacted and "REDACTED" in redacted[0]["query"]
