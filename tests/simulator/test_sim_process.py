"""Process lifecycle: ready line, HTTPS, persistence across restarts (also mid-install), atomic writes."""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography import x509

from opsman_simulator.process import INCLUDE_DIR, SimulatorProcess


@pytest.fixture(scope="module")
def own(tmp_path_factory, launch):
    s = launch(tmp_path_factory, "restart", apply_seconds=1.5)
    yield s
    s.stop()


def test_ready_line_and_tls(tmp_path, creds):
    env = dict(os.environ, PYTHONPATH=INCLUDE_DIR)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "opsman_simulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--state-dir",
            str(tmp_path / "s"),
            "--password",
            creds["password"],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        m = re.fullmatch(r"opsman-simulator ready https://127\.0\.0\.1:(\d+) ca=(\S+) pid=(\d+)\n", line)
        assert m, line
        port, ca, pid = int(m.group(1)), m.group(2), int(m.group(3))
        assert port > 0 and pid == proc.pid and ca == str(tmp_path / "s" / "ca.pem")
        # HTTPS only, certificate valid for 127.0.0.1 and localhost
        cert = x509.load_pem_x509_certificate(ssl.get_server_certificate(("127.0.0.1", port)).encode())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "localhost" in san.get_values_for_type(x509.DNSName)
        assert [str(i) for i in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
        for host in ("127.0.0.1", "localhost"):
            assert (
                requests.get(f"https://{host}:{port}/api/v0/info", verify=ca, timeout=10).status_code == 200
            )
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(f"https://127.0.0.1:{port}/api/v0/info", timeout=10)  # not in the system trust store
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/api/v0/info", timeout=10)  # no plain HTTP
    finally:
        proc.terminate()
        proc.wait(10)


def test_restart_keeps_state_port_and_tokens(own):
    ca_pem = Path(own.ca_path).read_text()
    tok = own.token()
    own.reset()
    r = requests.post(
        own.url + "/api/v0/certificate_authorities/generate",
        headers={"Authorization": f"Bearer {tok}"},
        verify=own.ca_path,
        timeout=10,
    )
    assert r.status_code == 200
    before = own.state()
    port, pid = own.port, own.pid
    own.restart()
    assert own.port == port and own.pid != pid
    assert Path(own.ca_path).read_text() == ca_pem  # TLS material reused
    after = own.state()
    assert after["certificate_authorities"] == before["certificate_authorities"]
    assert after["leaves"] == before["leaves"]
    # tokens are signed, so they survive a restart like UAA JWTs
    r = requests.get(
        own.url + "/api/v0/certificate_authorities",
        headers={"Authorization": f"Bearer {tok}"},
        verify=own.ca_path,
        timeout=10,
    )
    assert r.status_code == 200 and len(r.json()["certificate_authorities"]) == 2
    # the journal survives too
    assert [e["path"] for e in own.journal()][-2:] == [
        "/api/v0/certificate_authorities/generate",
        "/api/v0/certificate_authorities",
    ]


def test_restart_mid_install_finishes_on_wall_clock(own):
    own.reset()
    tok = own.token()
    h = {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
    new = requests.post(
        own.url + "/api/v0/certificate_authorities/generate", headers=h, verify=own.ca_path, timeout=10
    ).json()
    r = requests.post(
        own.url + "/api/v0/installations",
        json={"deploy_products": "all"},
        headers=h,
        verify=own.ca_path,
        timeout=10,
    )
    iid = r.json()["install"]["id"]
    t0 = time.time()
    own.stop()
    saved = json.loads((own.state_dir / "state.json").read_text())
    assert [i["status"] for i in saved["installations"] if i["id"] == iid] == ["running"]
    own.start()
    r = requests.get(f"{own.url}/api/v0/installations/{iid}", headers=h, verify=own.ca_path, timeout=10)
    if time.time() - t0 < 1.3:
        assert r.json() == {"status": "running"}
    deadline = time.time() + 10
    while r.json()["status"] == "running" and time.time() < deadline:
        time.sleep(0.1)
        r = requests.get(f"{own.url}/api/v0/installations/{iid}", headers=h, verify=own.ca_path, timeout=10)
    assert r.json() == {"status": "succeeded"}
    inst = requests.get(f"{own.url}/api/v0/installations", headers=h, verify=own.ca_path, timeout=10).json()
    started = inst["installations"][0]["started_at"]
    finished = inst["installations"][0]["finished_at"]
    from datetime import datetime

    dur = (
        datetime.fromisoformat(finished.replace("Z", "+00:00"))
        - datetime.fromisoformat(started.replace("Z", "+00:00"))
    ).total_seconds()
    assert abs(dur - 1.5) < 0.01
    assert new["guid"] in own.state()["trusted_ca_guids"]


def test_install_finishes_and_is_persisted_without_polling(own):
    own.reset()
    tok = own.token()
    h = {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
    requests.post(own.url + "/api/v0/installations", json={}, headers=h, verify=own.ca_path, timeout=10)
    # Nobody polls: the background ticker finishes it and saves it. Wait for that event, not a fixed time.
    deadline = time.monotonic() + 30
    status = "running"
    while status == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        status = json.loads((own.state_dir / "state.json").read_text())["installations"][-1]["status"]
    assert status == "succeeded"


def test_atomic_state_writes(own):
    own.reset()
    d = own.state_dir
    tok = own.token()
    h = {"Authorization": f"Bearer {tok}"}
    for _ in range(5):
        requests.post(
            own.url + "/api/v0/certificate_authorities/generate", headers=h, verify=own.ca_path, timeout=10
        )
        # every observation of state.json is complete JSON
        json.loads((d / "state.json").read_text())
    leftovers = [p.name for p in d.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert (d / "state.json").stat().st_mode & 0o777 == 0o600
    # a crash (SIGKILL) right after a write loses nothing that was acknowledged
    r = requests.post(
        own.url + "/api/v0/certificate_authorities/generate", headers=h, verify=own.ca_path, timeout=10
    )
    guid = r.json()["guid"]
    own.kill()
    saved = json.loads((d / "state.json").read_text())
    assert guid in [c["guid"] for c in saved["cas"]]
    # a stray temp file from an interrupted write is ignored on start
    (d / ".state.json.garbage.tmp").write_text("{ torn")
    own.start()
    assert guid in [c["guid"] for c in own.state()["certificate_authorities"]]
    (d / ".state.json.garbage.tmp").unlink()


def test_stop_is_by_pid_and_restart_reuses_port(own):
    port = own.port
    own.stop()
    assert not own.running
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"https://127.0.0.1:{port}/api/v0/info", verify=own.ca_path, timeout=2)
    own.start()
    assert own.port == port
    assert requests.get(own.url + "/api/v0/info", verify=own.ca_path, timeout=10).status_code == 200


def test_simulator_process_context_manager(tmp_path):
    with SimulatorProcess(tmp_path / "cm", password="x") as s:
        assert s.url == f"https://127.0.0.1:{s.port}"
        assert s.ca_path == str(tmp_path / "cm" / "ca.pem")
        assert s.state()["max_concurrent_requests"] == 0
        pid = s.pid
    assert not s.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_secrets_that_start_with_a_dash_reach_the_simulator(tmp_path):
    # token_urlsafe() can start with "-"; passed as "--password -x..." argparse would take it for a flag.
    with SimulatorProcess(
        tmp_path / "dash", password="-Ab3-secret", client_id="-bot", client_secret="-Cd4"
    ) as sim:
        grant = {
            "grant_type": "password",
            "username": "admin",
            "password": "-Ab3-secret",
            "client_id": "opsman",
        }
        r = requests.post(
            f"{sim.url}/uaa/oauth/token", data=grant, auth=("opsman", ""), verify=sim.ca_path, timeout=30
        )
        assert r.status_code == 200 and r.json()["access_token"]
        r = requests.post(
            f"{sim.url}/uaa/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=("-bot", "-Cd4"),
            verify=sim.ca_path,
            timeout=30,
        )
        assert r.status_code == 200
