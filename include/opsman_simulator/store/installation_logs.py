"""An installation's log: deterministic events from its start, duration and products.

The same installation always logs the same lines at the same offsets, so ``/logs`` and the
``current_log`` stream agree, and a running installation shows the events up to the simulated now.
"""

from __future__ import annotations

from typing import Any

from .. import pki
from ..catalog import P_BOSH_GUID
from .base import StoreBase


class InstallationLogs(StoreBase):
    def log_events(self, inst: dict[str, Any]) -> list[tuple[float, str, Any]]:
        """Deterministic (offset_seconds, kind, payload) events of an installation, in order.

        kind is "line" (payload: text), "step_started"/"step_finished" (payload: dict).
        """
        dur = float(inst["duration_seconds"])
        start = float(inst["started_at"])
        steps: list[tuple[str, str]] = [
            (
                "bosh_director",
                "/usr/local/bin/bosh --no-color --non-interactive --tty create-env "
                "/var/tempest/workspaces/default/deployments/bosh.yml",
            ),
            (
                "cloud_config",
                "/usr/local/bin/bosh --no-color --non-interactive --tty update-cloud-config "
                "/var/tempest/workspaces/default/cloud_config.yml",
            ),
        ]
        for g in inst["deployed_products"]:
            if g != P_BOSH_GUID:
                steps.append(
                    (
                        f"deploy_{g}",
                        f"/usr/local/bin/bosh --no-color --non-interactive --tty "
                        f"--deployment={g} deploy /var/tempest/workspaces/default/deployments/{g}.yml",
                    )
                )
        events: list[tuple[float, str, Any]] = []
        n = len(steps)
        # A few lines per second; never fewer than ~12 progress lines, never more than ~400.
        interval = max(dur / 400.0, min(0.25, dur / 12.0), 0.01)
        pad = int(inst.get("log_bytes_per_second") or 0) * interval

        def ts(off: float) -> str:
            return pki.utc(start + off).strftime("%Y-%m-%d %H:%M:%S")

        for i, (sid, cmd) in enumerate(steps):
            s0, s1 = dur * i / n, dur * (i + 1) / n
            events.append((s0, "step_started", {"type": "step_started", "id": sid}))
            events.append((s0, "line", f'===== {ts(s0)} UTC Running "{cmd}"'))
            k = 1
            t = s0 + interval
            while t < s1:
                events.append(
                    (
                        t,
                        "line",
                        f"Task {100 + inst['id']} | {pki.utc(start + t).strftime('%H:%M:%S')} | "
                        f"Updating instance {sid}: {sid}/{k % 7} ({k:05d})",
                    )
                )
                if pad > 0:
                    filler = f"  debug {sid} {k:05d} "
                    events.append((t, "line", (filler * (int(pad) // len(filler) + 1))[: max(1, int(pad))]))
                k += 1
                t = s0 + k * interval
            last = i == n - 1
            code = 1 if (last and inst["will_fail"]) else 0
            events.append(
                (
                    s1,
                    "line",
                    f'===== {ts(s1)} UTC Finished "{cmd}"; Duration: {int(s1 - s0)}s; Exit Status: {code}',
                )
            )
            events.append((s1, "step_finished", {"type": "step_finished", "id": sid, "exit_code": code}))
        if inst["will_fail"]:
            events.append((dur, "line", "Exited with 1."))
        else:
            events.append((dur, "line", f"===== {ts(dur)} UTC Finished all steps"))
            events.append((dur, "line", "Cleanup complete"))
            events.append((dur, "line", "Exited Successfully"))
        return events

    def visible_events(self, inst: dict[str, Any], now: float | None = None) -> list[tuple[float, str, Any]]:
        now = self.now() if now is None else now
        events = self.log_events(inst)
        if inst["status"] != "running":
            return events
        elapsed = now - float(inst["started_at"])
        return [e for e in events if e[0] <= elapsed and e[0] < float(inst["duration_seconds"])]

    def installation_logs(self, inst: dict[str, Any], now: float | None = None) -> str:
        lines = [e[2] for e in self.visible_events(inst, now) if e[1] == "line"]
        return "".join(line + "\n" for line in lines)
