"""The rotation's safety rules, checked after every step of a history from the simulator's state and journal.

A step's *our* calls are the journal entries made while a task of a run was executing; calls made
while the simulated person acted (Apply Changes clicked, a CA generated, activated or deleted by
hand) are recorded by sequence number and judged by nobody: people may do anything. Each rule
below is about what the rotation's code did, given the state just before the step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from opsman.exceptions import RotationStateError, SafetyViolationError

WRITES = ("POST", "PUT", "PATCH", "DELETE")
CA_PATH = "/api/v0/certificate_authorities"
ACTIVATE = re.compile(r"^/api/v0/certificate_authorities/([^/]+)/activate$")
DELETE = re.compile(r"^/api/v0/certificate_authorities/([^/]+)$")
REGENERATE = "/api/v0/certificate_authorities/active/regenerate"
GENERATE_PATHS = (CA_PATH + "/generate", CA_PATH)
INSTALLATIONS = "/api/v0/installations"
RECENT_SECONDS = 7 * 86400  # the DAG's recent_rotation_days default
OK = (200, 207)


class Violation(AssertionError):
    pass


def view(store) -> dict[str, Any]:
    """What the rules need from the simulator's state (read from its store: no copies of PEMs)."""
    store.tick()
    d = store.data
    return {
        "now": store.now(),
        "cas": {
            c["guid"]: {
                "active": c["active"],
                "deleted": c["deleted"],
                "created_at": c["created_at"],
                "ski": c["subject_key_identifier"],
            }
            for c in d["cas"]
        },
        "leaves": {
            leaf["name"]: leaf["issuer_ca_guid"]
            for leaf in d["leaves"]
            if not leaf["configurable"] and not leaf["excluded"]
        },
        "trusted": [set(p["trusted_ca_guids"]) for p in d["products"]],
        "pending": [p["pending_action"] for p in d["products"]],
        "installations": [
            (i["id"], i["status"], i["started_at"], i["finished_at"]) for i in d["installations"]
        ],
    }


def existing(v: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {g: c for g, c in v["cas"].items() if not c["deleted"]}


def is_safety_failure(error: BaseException | None) -> bool:
    return isinstance(error, (RotationStateError, SafetyViolationError, AirflowFailException))


@dataclass
class Checker:
    """Journal position, who made which call, and what our code generated, across one history."""

    srv: Any
    person_seqs: set[int] = field(default_factory=set)
    ours_generated: set[str] = field(default_factory=set)
    seen: int = 0
    our_writes_total: int = 0
    #: Rotating to an uploaded CA: its subject key identifier. That CA is the new one, whatever its age.
    uploaded_ski: str | None = None

    def new_entries(self) -> list[dict[str, Any]]:
        entries = self.srv.journal()[self.seen :]
        self.seen = len(self.srv.journal())
        return entries

    def person(self, entries: list[dict[str, Any]]) -> None:
        self.person_seqs.update(e["seq"] for e in entries)

    def our_writes(self, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            e
            for e in entries
            if e["method"] in WRITES and e["path"].startswith("/api/") and e["seq"] not in self.person_seqs
        ]

    def after_try(
        self, pre: dict[str, Any], post: dict[str, Any], entries: list[dict[str, Any]], run, result
    ) -> None:
        """The rules for the calls one task try made, judged against the state before it."""
        writes = self.our_writes(entries)
        self.our_writes_total += len(writes)
        where = f"task {result.task_id} (try {run.tries.get(result.task_id)}, {result.state}: {result.message[:300]})"
        made = set(existing(post)) - set(pre["cas"])
        self.ours_generated |= made
        if run.params.get("dry_run") and writes:
            raise Violation(f"dry run wrote to Ops Manager: {calls(writes)} in {where}")
        if result.state in ("failed", "up_for_retry") and is_safety_failure(result.error) and writes:
            raise Violation(f"{where} failed with a safety message after writing {calls(writes)}")
        generated = [
            e for e in writes if e["method"] == "POST" and e["path"] in GENERATE_PATHS and e["status"] in OK
        ]
        if len(generated) > 1:
            raise Violation(f"{where} generated {len(generated)} CAs in one try")
        run_new_ca = run.xcoms.get(("create_new_ca.generate_ca", "return_value"))
        for e in writes:
            self._judge(e, pre, where, run_new_ca)

    def _judge(
        self, e: dict[str, Any], pre: dict[str, Any], where: str, run_new_ca: str | None = None
    ) -> None:
        path, status = e["path"], e["status"]
        cas = existing(pre)
        active = [g for g, c in cas.items() if c["active"]]
        if e["method"] == "POST" and path in GENERATE_PATHS and status in OK:
            if len(cas) != 1:
                raise Violation(
                    f"{where} made a CA while {len(cas)} CAs existed: a second CA for one rotation"
                )
            (only,) = cas.values()
            if self.uploaded_ski is not None:
                if only["ski"] == self.uploaded_ski:
                    raise Violation(f"{where} uploaded the CA again although it is already the only CA")
            elif pre["now"] - only["created_at"] < RECENT_SECONDS:
                raise Violation(f"{where} made a CA although the only CA is young (the end of a rotation)")
            return
        m = ACTIVATE.match(path)
        if e["method"] == "POST" and m and status in OK:
            guid = m.group(1)
            if guid not in cas:
                return
            if not all(guid in t for t in pre["trusted"]):
                raise Violation(f"{where} activated CA {guid} before every product's trust store had it")
            made = cas[guid]["created_at"]
            if not any(s == "succeeded" and started > made for _, s, started, _f in pre["installations"]):
                raise Violation(
                    f"{where} activated CA {guid} before an Apply Changes started after it succeeded"
                )
            return
        if e["method"] == "POST" and path == REGENERATE and status in OK:
            (current,) = active
            newest = max(cas, key=lambda g: cas[g]["created_at"])
            # The new CA is the newest one, the one this rotation made, or the one the run adopted as new
            # (a person may have made it, or made another one later).
            if current != newest and current not in self.ours_generated and current != run_new_ca:
                raise Violation(
                    f"{where} regenerated while the active CA {current} is not the newest CA {newest}"
                )
            if not all(current in t for t in pre["trusted"]):
                raise Violation(
                    f"{where} regenerated under CA {current} before every product's trust store had it"
                )
            return
        m = DELETE.match(path)
        if e["method"] == "DELETE" and m:
            guid = m.group(1)
            if status == 422:
                raise Violation(f"{where} asked Ops Manager to delete the active CA {guid}")
            if status not in OK:
                return
            newest = max(cas, key=lambda g: cas[g]["created_at"]) if cas else None
            if self.uploaded_ski is not None and cas.get(guid, {}).get("ski") == self.uploaded_ski:
                raise Violation(f"{where} deleted CA {guid}, the uploaded CA the rotation moves to")
            if self.uploaded_ski is None and guid == newest:
                raise Violation(f"{where} deleted CA {guid}, the newest CA (the new CA of a rotation)")
            if cas.get(guid, {}).get("active"):
                raise Violation(f"{where} deleted the active CA {guid}")
            signed = sorted(name for name, issuer in pre["leaves"].items() if issuer == guid)
            if signed:
                raise Violation(
                    f"{where} deleted CA {guid} while deployed certificates still chain to it: {signed}"
                )
            return
        if e["method"] == "POST" and path == INSTALLATIONS and status == 409:
            raise Violation(f"{where} tried to start an Apply Changes while one was running")

    def after_step(self, post: dict[str, Any]) -> None:
        """Rules about the state itself, after any step."""
        cas = post["cas"]
        actives = [g for g, c in cas.items() if c["active"] and not c["deleted"]]
        if len(actives) != 1:
            raise Violation(f"{len(actives)} active CAs")
        if any(c["active"] and c["deleted"] for c in cas.values()):
            raise Violation("the active CA was deleted")
        keys = [c["ski"] for c in cas.values() if not c["deleted"]]
        assert len(set(keys)) == len(keys), "test set-up: two CAs share a key (key pool too small)"
        runs = sorted(
            (started, finished if finished is not None else float("inf"))
            for _, _s, started, finished in post["installations"]
        )
        for earlier, later in pairwise(runs):
            if earlier[1] > later[0]:
                raise Violation("two installations overlapped")
        if self.srv.sim.store.max_concurrent_requests > 1:
            raise Violation("two API calls were in flight at once")


def calls(entries: list[dict[str, Any]]) -> str:
    return ", ".join(f"{e['method']} {e['path']} -> {e['status'] or 'dropped'}" for e in entries)
