"""What every resource of the store shares: settings, the state document, saving it, the clock, lookups.

Everything here is synchronous and is only ever called from the event loop thread while the
request lock (see :mod:`opsman_simulator.middleware`) is held, so every operation is atomic with
respect to other requests.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..config import Config
from ..persistence import write_state


class StoreBase:
    config: Config
    #: ``<state-dir>/state.json``
    path: Path
    #: The whole state, as ``state.json`` holds it (one JSON document).
    data: dict[str, Any]
    #: The most requests that were in flight at once since the journal was last cleared.
    max_concurrent_requests: int

    def save(self) -> None:
        """Write the state before the HTTP answer is sent (nothing with ``persist=False``)."""
        if not self.config.persist:
            return
        write_state(self.path, self.data)

    @property
    def answers_like_2_10(self) -> bool:
        """``--answer-style 2.10``: answers carry what 2.10 added (CredHub Maestro's ``certificates``
        reports, ``nats_cert_pem``, rotation procedures)."""
        return self.config.answer_style == "2.10"

    @property
    def faults(self) -> dict[str, Any]:
        return self.data["faults"]

    def now(self) -> float:
        """Simulated time (epoch seconds): the wall clock plus how far the control surface moved it.

        Tests move it forward (``POST /_simulator/clock``) to finish an installation at once, age a CA
        or expire a token exactly, instead of waiting in real time; a reset puts it back to the wall clock.
        """
        return time.time() + self.clock_offset()

    def clock_offset(self) -> float:
        """How far (seconds) the control surface moved the clock ahead of the wall clock."""
        return float(self.data.get("clock_offset_seconds", 0.0))

    # ------------------------------------------------------------------------------------------
    # certificate authorities and leaves
    # ------------------------------------------------------------------------------------------

    def existing_cas(self) -> list[dict[str, Any]]:
        return [c for c in self.data["cas"] if not c["deleted"]]

    def cas_oldest_first(self) -> list[dict[str, Any]]:
        return sorted(self.existing_cas(), key=lambda c: c["created_at"])

    def find_ca(self, guid: str) -> dict[str, Any] | None:
        return next((c for c in self.existing_cas() if c["guid"] == guid), None)

    def active_ca(self) -> dict[str, Any]:
        for c in self.existing_cas():
            if c["active"]:
                return c
        raise RuntimeError("no active CA")  # cannot happen: the active CA cannot be deleted

    def find_leaf(self, name: str) -> dict[str, Any] | None:
        return next((leaf for leaf in self.data["leaves"] if leaf["name"] == name), None)

    def rotated_leaves(self) -> list[dict[str, Any]]:
        """The leaves the active root CA signs and regenerate renews: neither configurable nor excluded."""
        return [leaf for leaf in self.data["leaves"] if not leaf["configurable"] and not leaf["excluded"]]

    # ------------------------------------------------------------------------------------------
    # products and installations
    # ------------------------------------------------------------------------------------------

    def product_guids(self) -> list[str]:
        return [p["guid"] for p in self.data["products"]]

    def trusted_ca_guids(self) -> list[str]:
        """CAs present in the deployed trust store of *every* product."""
        sets = [set(p["trusted_ca_guids"]) for p in self.data["products"]]
        common = set.intersection(*sets) if sets else set()
        order = [c["guid"] for c in self.data["cas"]]
        return sorted(common, key=lambda g: order.index(g) if g in order else len(order))

    def running_installation(self) -> dict[str, Any] | None:
        return next((i for i in self.data["installations"] if i["status"] == "running"), None)

    def find_installation(self, install_id: int) -> dict[str, Any] | None:
        return next((i for i in self.data["installations"] if i["id"] == install_id), None)

    def installations_newest_first(self) -> list[dict[str, Any]]:
        return sorted(self.data["installations"], key=lambda i: i["id"], reverse=True)
