"""Constants and helpers shared by the tests (importable: tests/ is on pytest's pythonpath)."""

from __future__ import annotations

import datetime as dt
import json
import os
from itertools import pairwise
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opsman.models import CertificateAuthority, Installation

SIM_USER = "admin"
SIM_PASSWORD = "pw-Simul4tor-" + os.urandom(6).hex()
SIM_CLIENT_ID = "rotation-bot"
SIM_CLIENT_SECRET = "cs-" + os.urandom(8).hex()


def connection_json(sim, **extra_overrides) -> str:
    """The Airflow connection (JSON form) for the simulator, password grant, CA file verified."""
    extra = {"ca_cert": str(sim.ca_path), "read_retries": 4, "retry_backoff_seconds": 0.1}
    extra.update(extra_overrides)
    login = extra.pop("login", SIM_USER)
    password = extra.pop("password", SIM_PASSWORD)
    return json.dumps(
        {"conn_type": "opsman", "host": sim.url, "login": login, "password": password, "extra": extra}
    )


class RecordingTI:
    """Stands in for the task instance when a test calls ``operator.execute`` directly: keeps XComs."""

    def __init__(self) -> None:
        self.xcoms: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.xcoms[key] = value


def task_context() -> dict:
    return {"ti": RecordingTI()}


def certificate_authority(guid: str, active: bool, made: dt.datetime) -> CertificateAuthority:
    """A CA as Ops Manager lists it, without a PEM: its creation time comes from created_on, in RFC 3339
    as om's fixtures have it."""
    from opsman.models import CertificateAuthority

    return CertificateAuthority.from_api(
        {
            "guid": guid,
            "issuer": "Pivotal",
            "created_on": made.isoformat().replace("+00:00", "Z"),
            "expires_on": "2030-01-01",
            "active": active,
            "cert_pem": "not a pem",
        },
        "test",
    )


def installation(id_: int, status: str, started: dt.datetime) -> Installation:
    """An installation as Ops Manager lists it."""
    from opsman.models import Installation

    return Installation.from_api(
        {
            "id": id_,
            "status": status,
            "started_at": started.isoformat().replace("+00:00", "Z"),
            "finished_at": None,
        },
        "test",
    )


def run_to_event(trigger) -> dict:
    """Run a trigger as the triggerer does, to its first event; the event's payload."""
    import asyncio

    async def first_event():
        async for event in trigger.run():
            return event.payload
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(first_event())


def journal_calls(sim, method=None, path=None, status=None) -> list[dict]:
    """Journal entries of API calls, filtered."""
    return [
        e
        for e in sim.journal()
        if (method is None or e["method"] == method)
        and (path is None or e["path"] == path)
        and (status is None or e["status"] == status)
    ]


def wait_for_installation(sim, hook, installation_id: int):
    """Finish the installation on the simulator's clock (its planned outcome, no waiting in real time) and
    return the status the hook then reads."""
    sim.finish_installation()
    status = hook.get_installation_status(installation_id)
    assert status.is_terminal, (
        f"installation {installation_id} still {status} after the simulator finished it"
    )
    return status


def api_writes(sim) -> list[dict]:
    """Journal entries that could change Ops Manager (token requests excluded)."""
    return [
        e
        for e in sim.journal()
        if e["method"] in ("POST", "PUT", "PATCH", "DELETE") and e["path"].startswith("/api/")
    ]


def check_rotation_invariants(sim, old_guid: str, installs_started: int | None = None) -> None:
    """The rotation is complete, and it never did anything unsafe on the way (journal and state).

    :param installs_started: if given, exactly this many ``POST /api/v0/installations`` were accepted
        (one per Apply Changes step: never two for one step).
    """
    state = sim.state()
    journal = sim.journal()
    (new,) = state["certificate_authorities"]
    assert new["active"] and new["guid"] != old_guid
    assert old_guid in state["deleted_certificate_authorities"]
    assert all(leaf["issuer_ca_guid"] != old_guid for leaf in state["leaves"])
    # Exactly one CA generated in total, and the active CA never deleted.
    assert (
        len(
            [
                e
                for e in journal
                if e["path"] == "/api/v0/certificate_authorities/generate" and e["status"] == 200
            ]
        )
        == 1
    )
    deletes = [
        e
        for e in journal
        if e["method"] == "DELETE" and e["path"].startswith("/api/v0/certificate_authorities/")
    ]
    deleted = [e for e in deletes if e["status"] == 200]
    assert deleted and all(e["status"] != 422 for e in deletes), "the active CA was never asked to be deleted"
    # The old CA was deleted only after an Apply Changes that started after the last regenerate succeeded.
    last_regenerate = max(
        e["seq"] for e in journal if e["path"] == "/api/v0/certificate_authorities/active/regenerate"
    )
    regenerate_time = next(e["finished_at"] for e in journal if e["seq"] == last_regenerate)
    delete_time = deleted[0]["started_at"]
    deployed_leaves = [
        i
        for i in state["installations"]
        if i["status"] == "succeeded"
        and _epoch(i["started_at"]) > regenerate_time
        and _epoch(i["finished_at"]) < delete_time
    ]
    assert deployed_leaves, "the old CA was deleted before the regenerated certificates were deployed"
    # Never two installations at once, and the last one succeeded after the delete.
    last = max(state["installations"], key=lambda i: i["id"])
    assert last["status"] == "succeeded" and _epoch(last["started_at"]) > delete_time
    runs = sorted(
        (_epoch(i["started_at"]), _epoch(i["finished_at"] or i["started_at"])) for i in state["installations"]
    )
    assert all(earlier[1] <= later[0] for earlier, later in pairwise(runs)), "two installations overlapped"
    if installs_started is not None:
        accepted = [
            e
            for e in journal
            if (e["method"], e["path"]) == ("POST", "/api/v0/installations") and e["status"] == 200
        ]
        assert len(accepted) == installs_started, (
            f"{len(accepted)} Apply Changes started, expected {installs_started}"
        )
    assert state["max_concurrent_requests"] <= 1, "two API calls were in flight at once"


def _epoch(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


#: How often the dag.test() rotations poll: the trigger form's floor is 1 s, right for an Ops Manager whose
#: Apply Changes takes minutes; the simulator's take a second, so a 1 s poll would be most of a test's time.
TEST_POLL_SECONDS = 0.1


def polling_fast(dag):
    """``dag`` with every wait polling every TEST_POLL_SECONDS: set on its tasks, never through the trigger
    form (whose Param keeps its 1 s minimum)."""
    for task in dag.tasks:
        for attr in ("poll_interval_seconds", "wait_poll_seconds"):
            if hasattr(task, attr):
                setattr(task, attr, TEST_POLL_SECONDS)
    return dag
