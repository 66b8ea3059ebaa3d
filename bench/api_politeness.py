"""API politeness: what waiting for one Apply Changes costs Ops Manager, ours vs an om-style poller.

Two simulated foundations run the same install (same duration, same log growth) side by side:

- ours: ``InstallationTrigger`` as the DAG runs it (status every ``--poll`` s; log lines from the
  streaming ``current_log`` endpoint; the cumulative log only as a fallback);
- om: what ``om apply-changes`` does, every 10 s ``GET /installations/{id}`` and the *whole*
  ``GET /installations/{id}/logs``, printing the new suffix.

Counts come from each simulator's request journal (requests and response body bytes).

Then, per simulator profile (``--profiles``), ours again on that profile with ``--reconnects``
stream breaks spread over the first third of the install (3.0 replays the whole log on every
reconnect; 2.9/2.10 have no stream, so the trigger polls): log bytes downloaded / final log size.

    .venv/bin/python bench/api_politeness.py [--seconds 120] [--log-bytes-per-second 40000] [--poll 30]
        [--profiles 2.9,2.10,3.0] [--reconnects 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="bench-airflow-"))
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
# The installation's log lines would go to a task log; here they would only flood the terminal.
os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "opsman=WARNING")

import requests  # noqa: E402

from opsman_simulator.process import SimulatorProcess  # noqa: E402

PASSWORD = "bench-" + os.urandom(6).hex()
LOG_PATHS = ("/logs", "/current_log")


def connection(sim: SimulatorProcess) -> str:
    return json.dumps({"conn_type": "opsman", "host": sim.url, "login": "admin", "password": PASSWORD,
                       "extra": {"ca_cert": sim.ca_path}})


def token(sim: SimulatorProcess) -> str:
    form = {"grant_type": "password", "username": "admin", "password": PASSWORD, "client_id": "opsman", "token_format": "jwt"}
    return requests.post(f"{sim.url}/uaa/oauth/token", data=form, auth=("opsman", ""), verify=sim.ca_path,
                         timeout=30).json()["access_token"]


def start_install(sim: SimulatorProcess, log_rate: int) -> int:
    sim.faults(log_bytes_per_second=log_rate)
    headers = {"Authorization": f"Bearer {token(sim)}"}
    r = requests.post(f"{sim.url}/api/v0/installations", json={"deploy_products": "all"}, headers=headers,
                      verify=sim.ca_path, timeout=30)
    r.raise_for_status()
    sim.clear_journal()  # count only the wait
    return r.json()["install"]["id"]


def ours(sim: SimulatorProcess, installation_id: int, poll: float) -> None:
    os.environ["AIRFLOW_CONN_OPSMAN_OURS"] = connection(sim)
    from opsman.triggers import InstallationTrigger


    async def wait():
        async for event in InstallationTrigger("opsman_ours", installation_id, poll_interval_seconds=poll).run():
            assert event.payload["status"] == "succeeded", event.payload

    asyncio.run(wait())


def om_style(sim: SimulatorProcess, installation_id: int) -> None:
    """om apply-changes' poll loop (opsman-api.md §4.4): status, then the whole log, every 10 s."""
    headers = {"Authorization": f"Bearer {token(sim)}"}
    printed = 0
    while True:
        status = requests.get(f"{sim.url}/api/v0/installations/{installation_id}", headers=headers,
                              verify=sim.ca_path, timeout=60).json()["status"]
        logs = requests.get(f"{sim.url}/api/v0/installations/{installation_id}/logs", headers=headers,
                            verify=sim.ca_path, timeout=60).json()["logs"]
        printed = max(printed, len(logs))
        if status in ("succeeded", "failed"):
            return
        time.sleep(10)


def measure(sim: SimulatorProcess, installation_id: int, seconds: float) -> dict[str, float]:
    entries = [e for e in sim.journal() if e["path"].startswith("/api/")]
    log_bytes = sum(e.get("bytes", 0) for e in entries if e["path"].endswith(LOG_PATHS))
    headers = {"Authorization": f"Bearer {token(sim)}"}
    final = len(requests.get(f"{sim.url}/api/v0/installations/{installation_id}/logs", headers=headers,
                             verify=sim.ca_path, timeout=60).json()["logs"].encode())
    return {"requests": len(entries), "per_minute": len(entries) / (seconds / 60), "log_bytes": log_bytes,
            "final": final, "ratio": log_bytes / final if final else float("nan")}


def per_profile(tmp: str, profile: str, args: argparse.Namespace) -> dict[str, float]:
    """Ours on one profile, the stream broken ``--reconnects`` times early in the install."""
    sim = SimulatorProcess(Path(tmp) / f"profile-{profile}", apply_seconds=args.seconds, password=PASSWORD,
                           extra_args=("--profile", profile))
    sim.start()
    try:
        installation_id = start_install(sim, args.log_bytes_per_second)
        # Lines a third of the way in, spread over the reconnects (the simulator writes ~3 lines per interval).
        lines = max(1, int(args.seconds / max(args.seconds / 400, min(0.25, args.seconds / 12), 0.01)) // 3)
        sim.faults(stream_cut=[lines * (i + 1) // max(args.reconnects, 1) for i in range(args.reconnects)])
        started = time.monotonic()
        ours(sim, installation_id, args.poll)
        return measure(sim, installation_id, time.monotonic() - started) | {
            "streams": len([e for e in sim.journal() if e["path"].endswith("/current_log")])}
    finally:
        sim.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=120, help="duration of the simulated Apply Changes")
    parser.add_argument("--log-bytes-per-second", type=int, default=40000, help="log growth of the install")
    parser.add_argument("--poll", type=float, default=30, help="our status poll interval (the DAG's default)")
    parser.add_argument("--profiles", default="2.9,2.10,3.0", help="simulator profiles to measure ours on ('' for none)")
    parser.add_argument("--reconnects", type=int, default=2, help="stream breaks per install in the profile runs")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sims = {name: SimulatorProcess(Path(tmp) / name, apply_seconds=args.seconds, password=PASSWORD)
                for name in ("ours", "om")}
        for sim in sims.values():
            sim.start()
        try:
            ids = {name: start_install(sim, args.log_bytes_per_second) for name, sim in sims.items()}
            started = time.monotonic()
            threads = [
                threading.Thread(target=ours, args=(sims["ours"], ids["ours"], args.poll)),
                threading.Thread(target=om_style, args=(sims["om"], ids["om"])),
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            waited = time.monotonic() - started
            results = {name: measure(sim, ids[name], waited) for name, sim in sims.items()}
        finally:
            for sim in sims.values():
                sim.stop()
        profiles = {p: per_profile(tmp, p, args) for p in args.profiles.split(",") if p}

    print(f"One Apply Changes of {args.seconds:.0f} s, log growing {args.log_bytes_per_second} B/s "
          f"(final log {results['om']['final'] / 1e6:.1f} MB); waited {waited:.0f} s; machine: {os.cpu_count()} cores")
    print()
    print("| client | API requests while waiting | requests / minute | log bytes downloaded | ÷ final log size |")
    print("|---|---|---|---|---|")
    for name, label in (("ours", f"ours (trigger, status every {args.poll:.0f} s, streamed log)"),
                        ("om", "om-style (status + whole log every 10 s)")):
        r = results[name]
        print(f"| {label} | {r['requests']} | {r['per_minute']:.1f} | {r['log_bytes'] / 1e6:.2f} MB | {r['ratio']:.2f}x |")
    print()
    print(f"om-style / ours: {results['om']['requests'] / max(results['ours']['requests'], 1):.1f}x requests, "
          f"{results['om']['log_bytes'] / max(results['ours']['log_bytes'], 1):.1f}x log bytes")
    if profiles:
        print()
        print(f"Ours per simulator profile, the stream broken {args.reconnects} times in the first third:")
        print()
        print("| profile | log source | current_log requests | API requests | log bytes downloaded | ÷ final log size |")
        print("|---|---|---|---|---|---|")
        for name, r in profiles.items():
            source = "replaying stream" if name == "3.0" else "polling (no stream: 404)"
            print(f"| {name} | {source} | {r['streams']} | {r['requests']} | {r['log_bytes'] / 1e6:.2f} MB | {r['ratio']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
