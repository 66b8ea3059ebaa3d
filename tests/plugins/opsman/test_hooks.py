"""OpsManagerHook against the bundled simulator over real HTTPS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from itertools import pairwise
from pathlib import Path

import pytest
from support import SIM_CLIENT_ID, SIM_CLIENT_SECRET, SIM_PASSWORD, connection_json, journal_calls

from opsman.exceptions import (
    OpsManagerApiError,
    OpsManagerAuthError,
    OpsManagerConfigError,
    OpsManagerNotFoundError,
    OpsManagerTransientError,
)
from opsman.hooks import OpsManagerAsyncHook, OpsManagerHook
from opsman.models import ApplyChangesOptions, InstallationStatus
from opsman.transport import UaaToken


def use_connection(monkeypatch, sim, **extra):
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(sim, **extra))


class TestAuthentication:
    def test_password_grant_token_is_fetched_once_and_reused(self, sim):
        sim.clear_journal()
        hook = OpsManagerHook()
        hook.list_certificate_authorities()
        hook.list_installations()
        hook.list_pending_changes()
        assert len(journal_calls(sim, "POST", "/uaa/oauth/token")) == 1
        assert [e["status"] for e in journal_calls(sim, "GET")] == [200, 200, 200]

    def test_client_credentials_grant(self, sim, monkeypatch):
        monkeypatch.setenv(
            "AIRFLOW_CONN_OPSMAN_DEFAULT",
            json.dumps(
                {
                    "conn_type": "opsman",
                    "host": sim.url,
                    "extra": {
                        "client_id": SIM_CLIENT_ID,
                        "client_secret": SIM_CLIENT_SECRET,
                        "ca_cert": str(sim.ca_path),
                    },
                }
            ),
        )
        cas = OpsManagerHook().list_certificate_authorities()
        assert [ca.active for ca in cas] == [True]

    def test_token_is_renewed_a_quarter_of_its_life_before_it_expires(self, sim, monkeypatch):
        # One clock for both sides: the hook's token clock and Ops Manager's move together, by exact steps.
        elapsed = [0.0]
        monkeypatch.setattr(UaaToken, "clock", staticmethod(lambda: elapsed[0]))

        def advance(seconds: float) -> None:
            elapsed[0] += seconds
            sim.clock(advance_seconds=seconds)

        sim.faults(token_ttl=200)  # renewed a quarter of its life (50 s) before it expires: at 150 s
        sim.clear_journal()
        hook = OpsManagerHook()
        hook.list_installations()
        advance(149.5)
        hook.list_installations()
        assert len(journal_calls(sim, "POST", "/uaa/oauth/token")) == 1, "renewed before its lead time"
        advance(1.0)
        hook.list_installations()
        assert len(journal_calls(sim, "POST", "/uaa/oauth/token")) == 2, "not renewed within its lead time"
        assert [e["status"] for e in journal_calls(sim, "GET")] == [200, 200, 200], (
            "a call went out with an expired token"
        )
        # Past the new token's expiry on Ops Manager's clock only (a suspended worker, a skewed clock): the 401 is
        # answered by one new token and one repeat.
        sim.clock(advance_seconds=201)
        hook.list_installations()
        assert [(e["path"], e["status"]) for e in sim.journal()][-3:] == [
            ("/api/v0/installations", 401),
            ("/uaa/oauth/token", 200),
            ("/api/v0/installations", 200),
        ]

    def test_a_401_on_a_token_believed_valid_fetches_a_new_token_once(self, sim):
        hook = OpsManagerHook()
        hook.list_installations()
        sim.faults(revoke_tokens=True)
        sim.clear_journal()
        assert hook.list_installations()
        statuses = [(e["method"], e["path"], e["status"]) for e in sim.journal()]
        assert statuses == [
            ("GET", "/api/v0/installations", 401),
            ("POST", "/uaa/oauth/token", 200),
            ("GET", "/api/v0/installations", 200),
        ]

    def test_wrong_password_gives_the_uaa_message_without_the_password(self, sim, monkeypatch):
        use_connection(monkeypatch, sim, password="not-the-password")
        with pytest.raises(OpsManagerAuthError) as err:
            OpsManagerHook().list_certificate_authorities()
        text = str(err.value)
        assert "Bad credentials" in text and "user 'admin'" in text
        assert "not-the-password" not in text and SIM_PASSWORD not in text


class TestTls:
    def test_custom_ca_is_verified(self, sim):
        hook = OpsManagerHook()
        assert hook.get_conn().verify.endswith(".pem")
        assert hook.list_certificate_authorities()

    def test_without_the_ca_verification_fails_clearly_and_is_not_retried(self, sim, monkeypatch):
        use_connection(monkeypatch, sim, ca_cert=None)
        sim.clear_journal()
        with pytest.raises(
            OpsManagerConfigError, match="TLS verification of https://127.0.0.1.* failed.*ca_cert"
        ):
            OpsManagerHook().list_certificate_authorities()
        assert journal_calls(sim, "POST", "/uaa/oauth/token") == [], "the handshake failed before any request"

    def test_skip_ssl_validation_works_and_warns(self, sim, monkeypatch, caplog, capfd):
        use_connection(monkeypatch, sim, ca_cert=None, skip_ssl_validation=True)
        with caplog.at_level(logging.WARNING):
            assert OpsManagerHook().list_certificate_authorities()
        logged = caplog.text + "".join(capfd.readouterr())
        assert "TLS certificate validation for Ops Manager" in logged and "is OFF" in logged

    def test_inline_pem_is_accepted(self, sim, monkeypatch):
        use_connection(monkeypatch, sim, ca_cert=Path(sim.ca_path).read_text())
        assert OpsManagerHook().list_certificate_authorities()


class TestConnectionValidation:
    @pytest.mark.parametrize(
        ("conn", "message"),
        [
            ({"host": ""}, "has no host"),
            ({"host": "http://127.0.0.1:1"}, "plain http"),
            ({"host": "https://127.0.0.1:1", "login": None, "password": None}, "has no credentials"),
            ({"extra": {"ca_cert": "/nonexistent/ca.pem"}}, "cannot read the file '/nonexistent/ca.pem'"),
            (
                {
                    "extra": {
                        "ca_cert": "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
                    }
                },
                "no usable PEM",
            ),
            ({"extra": {"skip_ssl_validation": "maybe"}}, "must be true or false"),
            ({"extra": {"request_timeout": "soon"}}, "must be a number"),
        ],
        ids=["no-host", "http", "no-credentials", "unreadable-ca", "invalid-ca", "bad-bool", "bad-timeout"],
    )
    def test_bad_connection_is_refused_before_any_request(self, sim, monkeypatch, conn, message):
        body = {"conn_type": "opsman", "host": sim.url, "login": "admin", "password": "x", "extra": {}}
        body.update(conn)
        monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", json.dumps(body))
        sim.clear_journal()
        with pytest.raises(OpsManagerConfigError, match=message):
            OpsManagerHook().list_certificate_authorities()
        assert sim.journal() == []

    def test_host_without_scheme_means_https_and_port_is_kept(self, sim, monkeypatch):
        body = json.loads(connection_json(sim))
        body["host"], body["port"] = "127.0.0.1", sim.port
        monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", json.dumps(body))
        hook = OpsManagerHook()
        assert hook.settings.base_url == f"https://127.0.0.1:{sim.port}"
        assert hook.settings.uaa_url == f"https://127.0.0.1:{sim.port}/uaa"
        assert hook.list_installations()

    def test_custom_extras_never_become_headers(self, sim):
        hook = OpsManagerHook()
        hook.list_installations()
        sent = {k.lower() for k in hook.get_conn().headers}
        assert not sent & {
            "ca_cert",
            "client_id",
            "client_secret",
            "uaa_url",
            "read_retries",
            "retry_backoff_seconds",
        }

    def test_password_and_token_never_appear_in_repr(self, sim):
        hook = OpsManagerHook()
        hook.list_installations()
        assert SIM_PASSWORD not in repr(hook.settings)
        token = hook._tokens.token
        assert token is not None and token.value not in repr(token)


class TestCertificateAuthorities:
    def test_lifecycle_with_typed_results(self, sim):
        hook = OpsManagerHook()
        (old,) = hook.list_certificate_authorities()
        assert old.active and old.created_at is not None and old.subject_key_identifier

        generated = hook.generate_certificate_authority()
        new = generated.authority
        assert generated.status == 200 and new is not None and new.active is False
        assert new.created_at > old.created_at
        listed = {ca.guid: ca.active for ca in hook.list_certificate_authorities()}
        assert listed == {old.guid: True, new.guid: False}

        assert hook.activate_certificate_authority(new.guid).status == 200
        listed = {ca.guid: ca.active for ca in hook.list_certificate_authorities()}
        assert listed == {old.guid: False, new.guid: True}

        assert hook.regenerate_certificates().status == 200
        assert hook.delete_certificate_authority(old.guid).status == 200
        assert [ca.guid for ca in hook.list_certificate_authorities()] == [new.guid]

    def test_deleting_the_active_ca_is_refused_with_ops_managers_message(self, sim):
        hook = OpsManagerHook()
        (active,) = hook.list_certificate_authorities()
        with pytest.raises(OpsManagerApiError) as err:
            hook.delete_certificate_authority(active.guid)
        assert err.value.status == 422
        assert str(err.value) == (
            f"delete certificate authority (DELETE /api/v0/certificate_authorities/{active.guid}) failed with "
            "HTTP 422: Active certificates cannot be deleted"
        )

    def test_unknown_guid_is_a_not_found_error(self, sim):
        with pytest.raises(
            OpsManagerNotFoundError, match="HTTP 404: Certificate with specified guid not found"
        ):
            OpsManagerHook().activate_certificate_authority("0123456789abcdef0123")

    def test_a_guid_that_could_change_the_path_is_refused_locally(self, sim):
        sim.clear_journal()
        with pytest.raises(OpsManagerConfigError, match="is not a GUID"):
            OpsManagerHook().delete_certificate_authority("../installations")
        assert journal_calls(sim, "DELETE") == []

    def test_207_is_success_and_its_warnings_are_kept(self, sim):
        sim.faults(ca_status_207=True)
        result = OpsManagerHook().generate_certificate_authority()
        assert result.status == 207
        assert result.warnings and all(isinstance(w, str) and w for w in result.warnings)
        assert result.authority is not None and not result.authority.active


class TestTransientFailures:
    def test_reads_are_retried_through_a_503_burst(self, sim):
        sim.faults(status_burst={"status": 503, "count": 2, "methods": ["GET"], "path_prefix": "/api/"})
        sim.clear_journal()
        assert len(OpsManagerHook().list_certificate_authorities()) == 1
        assert [e["status"] for e in journal_calls(sim, "GET", "/api/v0/certificate_authorities")] == [
            503,
            503,
            200,
        ]

    def test_reads_give_up_after_the_configured_attempts(self, sim):
        sim.faults(status_burst={"status": 502, "count": 10, "methods": ["GET"], "path_prefix": "/api/"})
        sim.clear_journal()
        with pytest.raises(OpsManagerTransientError, match="HTTP 502"):
            OpsManagerHook().list_installations()
        assert len(journal_calls(sim, "GET", "/api/v0/installations")) == 4

    def test_a_dropped_connection_on_a_read_is_retried(self, sim):
        sim.faults(drop_next={"count": 1, "methods": ["GET"], "path_prefix": "/api/v0/installations"})
        assert OpsManagerHook().list_installations()

    def test_a_write_is_never_resent_after_a_503(self, sim):
        sim.faults(
            status_burst={
                "status": 503,
                "count": 1,
                "methods": ["POST"],
                "path_prefix": "/api/v0/installations",
            }
        )
        sim.clear_journal()
        with pytest.raises(OpsManagerTransientError, match="start Apply Changes .* HTTP 503"):
            OpsManagerHook().apply_changes(ApplyChangesOptions())
        assert len(journal_calls(sim, "POST", "/api/v0/installations")) == 1

    def test_a_slow_response_past_the_timeout_is_transient(self, sim, monkeypatch):
        use_connection(monkeypatch, sim, request_timeout=0.5, read_retries=1)
        hook = OpsManagerHook()
        hook.list_installations()
        sim.faults(
            latency={"seconds": 2, "count": 1, "methods": ["GET"], "path_prefix": "/api/v0/installations"}
        )
        sim.clear_journal()
        with pytest.raises(OpsManagerTransientError, match="Timeout") as err:
            hook.list_installations()
        assert err.value.timed_out
        # The abandoned request still runs on the simulator (a request is journaled when it ends): wait for
        # it, so the next test starts with nothing in flight.
        deadline = time.monotonic() + 30
        while not journal_calls(sim, "GET", "/api/v0/installations"):
            assert time.monotonic() < deadline, "the slow request never finished on the simulator"
            time.sleep(0.05)

    def test_after_a_timeout_the_retry_waits_so_calls_never_overlap(self, sim, monkeypatch):
        use_connection(monkeypatch, sim, request_timeout=0.5, read_retries=3, retry_backoff_seconds=0.01)
        hook = OpsManagerHook()
        hook.list_installations()
        sim.faults(
            latency={"seconds": 0.8, "count": 1, "methods": ["GET"], "path_prefix": "/api/v0/installations"}
        )
        sim.clear_journal()
        assert hook.list_installations()
        calls = journal_calls(sim, "GET", "/api/v0/installations")
        # The delayed call and its retry; on a loaded machine the retry itself may time out once more
        # (0.5 s), so two or more calls: what must hold is that none overlaps the one before it.
        assert len(calls) >= 2 and calls[0]["finished_at"] - calls[0]["started_at"] >= 0.8
        for earlier, later in pairwise(calls):
            assert later["started_at"] >= earlier["finished_at"]
        assert calls[-1]["status"] == 200
        assert sim.state()["max_concurrent_requests"] == 1


class TestInstallations:
    def test_apply_changes_runs_to_success_with_a_growing_log(self, sim):
        sim.faults(apply_seconds=3)
        hook = OpsManagerHook()
        before = hook.list_installations()
        installation_id = hook.apply_changes(ApplyChangesOptions(deploy_products="all"))
        listed = hook.list_installations()
        assert listed[0].id == installation_id and listed[0].status is InstallationStatus.RUNNING
        assert listed[1:] == before
        first_log = hook.get_installation_logs(installation_id)
        deadline = time.monotonic() + 15
        while (status := hook.get_installation_status(installation_id)) is InstallationStatus.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status is InstallationStatus.SUCCEEDED
        final_log = hook.get_installation_logs(installation_id)
        assert final_log.startswith(first_log) and len(final_log) > len(first_log)
        done = hook.list_installations()[0]
        assert done.finished_at is not None and done.duration_seconds >= 0.5

    def test_a_second_apply_changes_while_one_runs_is_refused(self, sim):
        sim.faults(apply_seconds=30)
        hook = OpsManagerHook()
        hook.apply_changes(ApplyChangesOptions())
        with pytest.raises(OpsManagerApiError) as err:
            hook.apply_changes(ApplyChangesOptions())
        assert err.value.status not in (200, 502, 503, 504)

    def test_pending_changes_products_and_certificates(self, sim):
        hook = OpsManagerHook()
        staged = hook.list_staged_products()
        deployed = hook.list_deployed_products()
        assert {p.type for p in staged} >= {"p-bosh", "cf"} and {p.type for p in deployed} >= {"p-bosh", "cf"}
        changes = hook.list_pending_changes()
        assert {c.guid for c in changes} == {p.guid for p in staged}
        assert not any(c.is_change for c in changes)
        every = hook.list_deployed_certificates()
        assert every and all(c.valid_until is not None for c in every)
        assert len(hook.list_deployed_certificates(expires_within="1d")) < len(every) or not every
        with pytest.raises(OpsManagerConfigError, match="expires_within '3 months'"):
            hook.list_deployed_certificates(expires_within="3 months")


class TestAsyncHook:
    def test_status_and_logs_with_its_own_token(self, sim):
        sim.faults(apply_seconds=30)
        installation_id = OpsManagerHook().apply_changes(ApplyChangesOptions())

        async def read():
            hook = OpsManagerAsyncHook()
            return await hook.get_installation_status(installation_id), await hook.get_installation_logs(
                installation_id
            )

        status, logs = asyncio.run(read())
        assert status is InstallationStatus.RUNNING and isinstance(logs, str)

    def test_async_reads_retry_through_a_503_burst(self, sim):
        sim.faults(apply_seconds=30)
        installation_id = OpsManagerHook().apply_changes(ApplyChangesOptions())
        sim.faults(
            status_burst={
                "status": 503,
                "count": 2,
                "methods": ["GET"],
                "path_prefix": "/api/v0/installations",
            }
        )
        status = asyncio.run(OpsManagerAsyncHook().get_installation_status(installation_id))
        assert status is InstallationStatus.RUNNING

    def test_async_hook_fetches_a_new_token_after_a_401(self, sim):
        installation_id = OpsManagerHook().apply_changes(ApplyChangesOptions())

        async def poll_revoke_poll():
            hook = OpsManagerAsyncHook()
            await hook.get_installation_status(installation_id)
            await asyncio.to_thread(sim.faults, revoke_tokens=True)
            await asyncio.to_thread(sim.clear_journal)
            return await hook.get_installation_status(installation_id)

        asyncio.run(poll_revoke_poll())
        assert [(e["method"], e["path"], e["status"]) for e in sim.journal()] == [
            ("GET", f"/api/v0/installations/{installation_id}", 401),
            ("POST", "/uaa/oauth/token", 200),
            ("GET", f"/api/v0/installations/{installation_id}", 200),
        ]


def test_get_version_reads_api_v0_info(sim):
    sim.clear_journal()
    assert OpsManagerHook().get_version() == "2.9.13-build.165"
    assert [e["status"] for e in journal_calls(sim, "GET", "/api/v0/info")] == [200]
