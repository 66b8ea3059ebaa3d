"""What Ops Manager 2.10+ answers: CredHub Maestro safety violations and certificate lists.

Runs against simulators started with ``--safety-checks`` and ``--answer-style 2.10``.
"""

from __future__ import annotations

import pytest
from support import (
    SIM_PASSWORD,
    SIM_USER,
    api_writes,
    connection_json,
    polling_fast,
    task_context,
    wait_for_installation,
)

from opsman.exceptions import OpsManagerError, SafetyViolationError
from opsman.hooks import OpsManagerHook
from opsman.models import ApplyChangesOptions
from opsman.operators import (
    ActivateCertificateAuthorityOperator,
    DeleteCertificateAuthorityOperator,
    GenerateCertificateAuthorityOperator,
    RegenerateCertificatesOperator,
)
from opsman_simulator.process import SimulatorProcess


def start(tmp_path_factory, *args):
    sim = SimulatorProcess(
        tmp_path_factory.mktemp("sim"),
        apply_seconds=0.5,
        username=SIM_USER,
        password=SIM_PASSWORD,
        extra_args=args,
    )
    sim.start()
    return sim


@pytest.fixture(scope="module")
def maestro_sim(tmp_path_factory):
    sim = start(tmp_path_factory, "--safety-checks", "--answer-style", "2.10")
    yield sim
    sim.stop()


@pytest.fixture
def newer(maestro_sim, monkeypatch):
    maestro_sim.reset()
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(maestro_sim))
    return maestro_sim


def apply(sim):
    hook = OpsManagerHook()
    wait_for_installation(sim, hook, hook.apply_changes(ApplyChangesOptions()))


def generate():
    return GenerateCertificateAuthorityOperator(task_id="g").execute(task_context())


class TestSafetyViolations:
    def test_activating_before_the_apply_changes_is_refused_with_the_remedy(self, newer):
        new_guid = generate()
        with pytest.raises(SafetyViolationError) as err:
            ActivateCertificateAuthorityOperator(task_id="a", new_ca_guid=new_guid).execute(task_context())
        message = str(err.value)
        assert message.startswith(
            f"activate certificate authority (POST /api/v0/certificate_authorities/{new_guid}/activate) failed with HTTP 422: "
            "Activating this certificate authority would break trust for deployed certificates; "
            "The certificate authority has not been distributed to all trust stores"
        )
        assert "remedy: Apply Changes to distribute the new CA to all trust stores, then retry" in message
        assert message.endswith(
            "finish the pending Apply Changes and re-run this DAG; do not re-run earlier steps"
        )
        assert {ca.guid: ca.active for ca in OpsManagerHook().list_certificate_authorities()}[
            new_guid
        ] is False

    def test_deleting_the_old_ca_before_the_regenerated_leaves_are_deployed_is_refused(self, newer):
        hook = OpsManagerHook()
        (old,) = hook.list_certificate_authorities()
        new_guid = generate()
        apply(newer)
        ActivateCertificateAuthorityOperator(task_id="a", new_ca_guid=new_guid).execute(task_context())
        RegenerateCertificatesOperator(task_id="r", new_ca_guid=new_guid).execute(task_context())
        with pytest.raises(SafetyViolationError) as err:
            DeleteCertificateAuthorityOperator(
                task_id="d", old_ca_guid=old.guid, new_ca_guid=new_guid
            ).execute(task_context())
        assert "HTTP 422" in str(err.value) and "do not re-run earlier steps" in str(err.value)
        assert err.value.violations and all("certificate_names" in v for v in err.value.violations)
        assert old.guid in {ca.guid for ca in hook.list_certificate_authorities()}

    def test_in_order_the_same_steps_pass(self, newer):
        hook = OpsManagerHook()
        (old,) = hook.list_certificate_authorities()
        new_guid = generate()
        apply(newer)
        ActivateCertificateAuthorityOperator(task_id="a", new_ca_guid=new_guid).execute(task_context())
        counts = RegenerateCertificatesOperator(task_id="r", new_ca_guid=new_guid).execute(task_context())
        assert counts["regenerated"] >= 4 and counts["regenerate_failed"] == 0 and counts["excluded"] >= 1
        apply(newer)
        DeleteCertificateAuthorityOperator(task_id="d", old_ca_guid=old.guid, new_ca_guid=new_guid).execute(
            task_context()
        )
        assert [ca.guid for ca in hook.list_certificate_authorities()] == [new_guid]


class TestCertificateLists:
    def test_a_regenerate_failed_entry_fails_the_step_and_names_the_certificate(self, newer):
        new_guid = generate()
        apply(newer)
        ActivateCertificateAuthorityOperator(task_id="a", new_ca_guid=new_guid).execute(task_context())
        newer.faults(regenerate_failed=["nats_server"])
        with pytest.raises(OpsManagerError) as err:
            RegenerateCertificatesOperator(task_id="r", new_ca_guid=new_guid).execute(task_context())
        assert "could not update 1 certificate(s): /p-bosh/director/nats_server_tls" in str(err.value)

    def test_generate_reports_the_new_fields(self, newer):
        result = OpsManagerHook().generate_certificate_authority()
        assert result.changes is not None and result.authority is not None and not result.authority.active
        assert api_writes(newer)[-1]["path"] == "/api/v0/certificate_authorities/generate"


@pytest.mark.e2e
def test_a_whole_rotation_against_ops_manager_2_10_with_safety_checks(newer, airflow_db):
    from pathlib import Path

    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils.state import DagRunState

    (old,) = OpsManagerHook().list_certificate_authorities()
    dag = polling_fast(
        DagBag(dag_folder=str(Path(__file__).resolve().parents[3] / "dags")).dags["opsman_ca_rotation"]
    )
    dag_run = dag.test(run_conf={"poll_interval_seconds": 1})
    assert dag_run.state == DagRunState.SUCCESS
    (new,) = OpsManagerHook().list_certificate_authorities()
    assert new.active and new.guid != old.guid
    report = next(
        ti for ti in dag_run.get_task_instances() if ti.task_id == "verify.verify_rotation"
    ).xcom_pull(task_ids="verify.verify_rotation")
    assert report["problems"] == [] and any(
        e["procedure"] == "Services TLS CA Procedure" for e in report["excluded"]
    )
