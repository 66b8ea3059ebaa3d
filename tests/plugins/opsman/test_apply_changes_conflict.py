"""Someone starts an Apply Changes between our look and our POST: whatever Ops Manager answers, we attach."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from support import task_context

from opsman.exceptions import OpsManagerRejectedError
from opsman.operators import ApplyChangesOperator


def start_as_someone_else_once_our_post_is_held(sim, started: list[int]) -> None:
    """Wait until our POST has taken the latency fault (it is being held), then start an installation."""
    deadline = time.monotonic() + 20
    while sim.faults()["latency"] is not None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    r = requests.post(f"{sim.url}/api/v0/installations", json={}, headers={"Authorization": f"Bearer {sim.token()}"},
                      verify=sim.ca_path, timeout=30)
    started.append(r.json()["install"]["id"])


@pytest.mark.parametrize(
    "conflict",
    [None, {"status": 422, "body": {"errors": ["An installation is already running"]}}, {"status": 400, "body": {}}],
    ids=["409", "422", "400"],
)
def test_a_refused_post_attaches_to_the_installation_someone_started(sim, conflict):
    sim.faults(apply_seconds=3, latency={"seconds": 1.5, "count": 1, "methods": ["POST"], "path_prefix": "/api/v0/installations"})
    if conflict is not None:
        sim.faults(install_conflict=conflict)
    started: list[int] = []
    other = threading.Thread(target=start_as_someone_else_once_our_post_is_held, args=(sim, started))
    other.start()
    installation_id = ApplyChangesOperator(task_id="apply", wait_poll_seconds=0.2, after_installation_id=1).execute(task_context())
    other.join()
    assert installation_id == started[0]
    posts = [e["status"] for e in sim.journal() if (e["method"], e["path"]) == ("POST", "/api/v0/installations")]
    assert sorted(posts) == sorted([200, conflict["status"] if conflict else 409])
    assert len(sim.state()["installations"]) == 2, "no second Apply Changes was started"


def test_a_refusal_with_no_newer_installation_still_fails_at_once(sim):
    sim.faults(status_burst={"status": 422, "count": 1, "methods": ["POST"], "path_prefix": "/api/v0/installations",
                             "body": '{"errors": ["deploy_products is invalid"]}'})
    with pytest.raises(OpsManagerRejectedError, match="deploy_products is invalid"):
        ApplyChangesOperator(task_id="apply", wait_poll_seconds=0.2, after_installation_id=1).execute(task_context())
