"""The rotation DAG: integrity, and whole rotations under dag.test() against the simulator."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState
from airflow_versions import DagBag, serialized_for_dag_test
from cryptography import x509
from support import journal_calls, polling_fast

from opsman.compat import DOUBLING_BACKOFF

DAGS = Path(__file__).resolve().parents[2] / "dags"

DOCUMENTED_ORDER = [
    "preflight.check_ops_manager",
    "preflight.plan_rotation",
    "initial_apply_changes.apply_changes",
    "initial_apply_changes.wait_for_apply_changes",
    "create_new_ca.generate_ca",
    "activate_new_ca.verify_new_ca_inactive",
    "activate_new_ca.apply_changes",
    "activate_new_ca.wait_for_apply_changes",
    "activate_new_ca.activate_ca",
    "regenerate_certificates.regenerate_leaf_certificates",
    "regenerate_certificates.apply_changes",
    "regenerate_certificates.wait_for_apply_changes",
    "delete_old_ca.delete_ca",
    "delete_old_ca.apply_changes",
    "delete_old_ca.wait_for_apply_changes",
    "verify.verify_rotation",
]


@pytest.fixture(scope="module")
def dagbag() -> DagBag:
    return DagBag(dag_folder=str(DAGS))


@pytest.fixture
def dag(request):
    # A fresh DAG object per run: dag.test() keeps the last run_conf in the DAG's params.
    return polling_fast(serialized_for_dag_test(request, DagBag(dag_folder=str(DAGS)), "opsman_ca_rotation"))


class TestIntegrity:
    def test_loads_without_errors_or_deprecated_imports(self, dagbag):
        assert dagbag.import_errors == {}
        assert dagbag.captured_warnings == {}
        assert "opsman_ca_rotation" in dagbag.dags

    def test_shape(self, dag):
        assert dag.schedule is None and dag.max_active_runs == 1
        assert (
            dag.default_args["retries"] >= 1
            and dag.default_args["retry_exponential_backoff"] == DOUBLING_BACKOFF
        )
        assert set(dag.params.keys()) >= {
            "opsman_conn_id",
            "poll_interval_seconds",
            "deploy_products",
            "initial_apply_changes",
            "dry_run",
            "errands",
            "recreate_vms",
            "force_latest_variables",
            "ignore_warnings",
            "apply_changes_mode",
        }
        for name in dag.params.keys():
            assert dag.params.get_param(name).description, f"param {name} has no description"
        assert "Apply Changes" in dag.doc_md

    def test_tasks_follow_the_documented_order(self, dag):
        # Every task depends (transitively) on the one before it in the documented procedure.
        for earlier, later in pairwise(DOCUMENTED_ORDER):
            assert earlier in dag.get_task(later).get_flat_relative_ids(upstream=True), (
                f"{earlier} !< {later}"
            )


def states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def ca_guids(state) -> dict[str, bool]:
    return {ca["guid"]: ca["active"] for ca in state["certificate_authorities"]}


def leaf_aki(pem: str) -> str:
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier.hex()


@pytest.mark.e2e
class TestRotation:
    def test_a_full_rotation(self, sim, dag, airflow_db):
        before = sim.state()
        (old_guid,) = ca_guids(before)
        first_install = max(i["id"] for i in before["installations"])
        sim.clear_journal()

        dag_run = dag.test(run_conf={"poll_interval_seconds": 1})

        assert dag_run.state == DagRunState.SUCCESS, states(dag_run)
        task_states = states(dag_run)
        assert task_states.pop("preflight.wait_for_running_installation") == TaskInstanceState.SKIPPED
        assert set(task_states.values()) == {TaskInstanceState.SUCCESS}, task_states
        after = sim.state()
        (new_guid,) = ca_guids(after)
        assert new_guid != old_guid and ca_guids(after) == {new_guid: True}
        assert old_guid in after["deleted_certificate_authorities"]

        installs = sorted(
            (i for i in after["installations"] if i["id"] > first_install), key=lambda i: i["id"]
        )
        assert [i["status"] for i in installs] == ["succeeded"] * 4

        # The calls, in the documented order (reads left out).
        writes = [
            (e["method"], e["path"])
            for e in sim.journal()
            if e["method"] in ("POST", "DELETE") and e["path"].startswith("/api/")
        ]
        assert writes == [
            ("POST", "/api/v0/installations"),
            ("POST", "/api/v0/certificate_authorities/generate"),
            ("POST", "/api/v0/installations"),
            ("POST", f"/api/v0/certificate_authorities/{new_guid}/activate"),
            ("POST", "/api/v0/certificate_authorities/active/regenerate"),
            ("POST", "/api/v0/installations"),
            ("DELETE", f"/api/v0/certificate_authorities/{old_guid}"),
            ("POST", "/api/v0/installations"),
        ]
        # Each Apply Changes finished before the next step's write.
        journal = sim.journal()
        install_posts = [e for e in journal if (e["method"], e["path"]) == ("POST", "/api/v0/installations")]
        for install, post in zip(installs, install_posts, strict=True):
            later_writes = [
                e
                for e in journal
                if e["seq"] > post["seq"]
                and e["method"] in ("POST", "DELETE")
                and e["path"].startswith("/api/v0/certificate_authorities")
            ]
            if later_writes:
                assert install["finished_at"] <= _iso(later_writes[0]["started_at"])

        # Every rotated leaf is now signed by the new CA; nothing refers to the old one.
        new_ski = next(ca for ca in after["certificate_authorities"] if ca["guid"] == new_guid)[
            "subject_key_identifier"
        ]
        rotated = [leaf for leaf in after["leaves"] if not leaf["excluded"] and not leaf["configurable"]]
        assert rotated and all(leaf_aki(leaf["cert_pem"]) == new_ski for leaf in rotated)
        assert all(leaf["issuer_ca_guid"] != old_guid for leaf in after["leaves"])
        assert after["trusted_ca_guids"] == [new_guid]

    def test_without_the_initial_apply_changes(self, sim, dag, airflow_db):
        sim.clear_journal()
        dag_run = dag.test(run_conf={"poll_interval_seconds": 1, "initial_apply_changes": False})
        assert dag_run.state == DagRunState.SUCCESS, states(dag_run)
        assert states(dag_run)["initial_apply_changes.apply_changes"] == TaskInstanceState.SKIPPED
        assert len(journal_calls(sim, "POST", "/api/v0/installations")) == 3
        assert len(ca_guids(sim.state())) == 1

    def test_a_failed_apply_changes_fails_the_run_and_leaves_the_old_ca_active_even_with_skipped_steps(
        self, sim, dag, airflow_db
    ):
        (old_guid,) = ca_guids(sim.state())
        sim.faults(fail_next_installs=1)
        dag_run = dag.test(run_conf={"poll_interval_seconds": 1, "initial_apply_changes": False})
        assert dag_run.state == DagRunState.FAILED
        task_states = states(dag_run)
        assert task_states["activate_new_ca.wait_for_apply_changes"] == TaskInstanceState.FAILED
        assert task_states["activate_new_ca.activate_ca"] == TaskInstanceState.UPSTREAM_FAILED
        assert task_states["summary"] == TaskInstanceState.UPSTREAM_FAILED
        cas = ca_guids(sim.state())
        assert cas[old_guid] is True and len(cas) == 2, "the new CA stays inactive; nothing was activated"
        assert journal_calls(sim, "POST", "/api/v0/certificate_authorities/active/regenerate") == []


def _iso(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
