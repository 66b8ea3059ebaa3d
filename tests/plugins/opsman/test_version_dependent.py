"""Requests that depend on the Ops Manager version follow what GET /api/v0/info reports."""

from __future__ import annotations

import pytest
from support import SIM_PASSWORD, SIM_USER, connection_json, journal_calls

from opsman.hooks import OpsManagerHook
from opsman.models import ApplyChangesOptions
from opsman_simulator.process import SimulatorProcess

BOTH = {"bosh_recreate_on_next_deploy": True, "bosh_director_recreate_on_next_deploy": True}
PRODUCTS_ONLY = {"bosh_recreate_on_next_deploy": True}


@pytest.mark.parametrize(
    ("args", "version", "flags"),
    [
        (("--info-version", "2.8.5-build.12"), (2, 8), PRODUCTS_ONLY),  # om: "on a version less than 2.9"
        (("--profile", "2.9"), (2, 9), BOTH),
        (("--profile", "3.0"), (3, 0), BOTH),
        (("--info-version", "unknown"), None, PRODUCTS_ONLY),  # om's VersionAtLeast fails: the older body
    ],
    ids=["2.8", "2.9", "3.0", "unparsable"],
)
def test_recreate_flags_follow_the_version(tmp_path_factory, monkeypatch, args, version, flags):
    sim = SimulatorProcess(tmp_path_factory.mktemp("sim-version"), username=SIM_USER, password=SIM_PASSWORD, extra_args=args)
    sim.start()
    try:
        monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json(sim))
        hook = OpsManagerHook()
        assert hook.get_version() == version
        sim.clear_journal()
        hook.set_recreate_vms_on_next_deploy()
        (info,) = journal_calls(sim, "GET", "/api/v0/info")
        assert info["status"] == 200
        hook.apply_changes(ApplyChangesOptions())
        (installation,) = [i for i in sim.state()["installations"] if i["id"] != 1]
        assert installation["recreate_vms"] == flags
    finally:
        sim.stop()
