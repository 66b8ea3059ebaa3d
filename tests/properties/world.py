"""Everything a history runs in: the in-process simulators, the hook wired to them, virtual time.

Set up once per test session (:func:`make_world`); each history then starts from the initial state
(:meth:`World.begin`). Patches, all undone by the caller's ``MonkeyPatch`` context:

- ``OpsManagerHook._configure_session_from_mount_adapters`` (HttpHook's place for transport adapters)
  mounts :class:`inprocess.AsgiAdapter` on the hook's session, with ``trust_env`` off (no proxies,
  no ``REQUESTS_CA_BUNDLE``: there is no socket or TLS to configure).
- ``time.sleep`` as seen by ``opsman.operators.apply_changes`` (waiting out someone else's installation
  in the worker: histories run the operator with ``deferrable=False``, see runs.py) and by
  tenacity (the hook's backoff) moves the simulator's clock instead: virtual time, so a history
  never waits in real time and installations progress exactly as far as the waits say.
- ``opsman.transport.mask_secret`` and ``opsman.custom_ca.mask_secret``: no-ops. Every try fetches a token and Airflow's masker recompiles
  one regex of all secrets per token (milliseconds each); masking is tested in tests/dags/test_secrets.py.
- ``OpsManagerHook.get_connection``: looked up once (Airflow parses the environment variable's JSON
  on every call); the hook still validates it into its settings on every try.
- ``OpsManagerHook._fetch_token``: a new hook (every try) starts with the last token UAA issued, as
  long as it is fresh; when Ops Manager rejects it (revoked, expired) the hook's own 401 handling
  fetches a new one from UAA as usual. A token per try would be a third of all calls.
- ``load_custom_ca`` as the operators see it: the uploaded CA is validated once per window, not on
  every try (loading an RSA key checks it: ~60 ms); tests/plugins/opsman/test_custom_ca.py covers it.
- ``opsman_simulator.pki.new_rsa_key`` hands out keys from a pool made once: RSA-2048 generation
  (~50 ms) would dominate a history. No two CAs that exist together share a key (checked), so key
  identifiers still tell every CA apart.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import tempfile
import types
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from inprocess import BASE_URL, InProcessOpsManager

USER, PASSWORD = "admin", "pw-histories"
#: Ops Manager answer styles the simulator offers (legacy 2.9 and 2.10 CA answers).
PROFILES = ("legacy", "2.10")
#: Simulated length of an Apply Changes: only clock moves finish one, never real time.
APPLY_SECONDS = 30.0
KEY_POOL_SIZE = 12
#: The connection holding the CA to upload, for histories that rotate to an uploaded CA.
UPLOADED_CA_CONN = "history_corporate_ca"


class KeyPool:
    def __init__(self, size: int) -> None:
        self.keys = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(size)]
        self.next = 0

    def __call__(self):
        key = self.keys[self.next % len(self.keys)]
        self.next += 1
        return key


def corporate_ca() -> dict[str, str]:
    """A CA "from the corporate PKI" for rotations to an uploaded CA: issued a month ago, valid 3 years."""
    import datetime as dt

    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    from opsman_simulator import pki

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    subject = pki.x509.Name(
        [
            pki.x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Corp"),
            pki.x509.NameAttribute(NameOID.COMMON_NAME, "Corp Ops Manager root"),
        ]
    )
    cert = pki.make_ca(key, subject, now - dt.timedelta(days=30), now + dt.timedelta(days=3 * 365))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {"certificate_pem": pki.cert_to_pem(cert), "private_key_pem": key_pem}


class World:
    def __init__(self, root: Path) -> None:
        self.servers = {
            style: InProcessOpsManager(
                root / style,
                apply_seconds=APPLY_SECONDS,
                username=USER,
                password=PASSWORD,
                answer_style=style,
            )
            for style in PROFILES
        }
        self.srv = self.servers[PROFILES[0]]
        self.tokens: dict[int, object] = {}

    @property
    def corporate_ski(self) -> str:
        from opsman_simulator import pki

        return pki.ski_of(pki.load_cert(self.corporate_ca["certificate_pem"]))

    def begin(self, style: str) -> InProcessOpsManager:
        self.srv = self.servers[style]
        self.srv.restore_initial()
        return self.srv

    def adapter_for_session(self, hook, session):
        session.mount("https://", self.srv.adapter)
        session.trust_env = False
        return session

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.srv.clock(advance_seconds=float(seconds))


def connection_json() -> str:
    return json.dumps(
        {
            "conn_type": "opsman",
            "host": BASE_URL,
            "login": USER,
            "password": PASSWORD,
            # Zero backoff: retries still happen, as often as configured, without waiting.
            "extra": {"read_retries": 3, "retry_backoff_seconds": 0, "request_timeout": 30},
        }
    )


def make_world(monkeypatch) -> World:
    import tenacity.nap

    import opsman.hooks
    import opsman.operators.apply_changes
    import opsman.operators.base
    import opsman.transport
    import opsman_simulator.pki

    monkeypatch.setattr(opsman_simulator.pki, "new_rsa_key", KeyPool(3 * len(PROFILES)))
    world = World(Path(tempfile.mkdtemp(prefix="opsman-histories-")))
    # CAs made during histories draw from other keys than the initial CAs and leaves.
    monkeypatch.setattr(opsman_simulator.pki, "new_rsa_key", KeyPool(KEY_POOL_SIZE))
    monkeypatch.setattr(
        opsman.hooks.OpsManagerHook,
        "_configure_session_from_mount_adapters",
        lambda hook, session: world.adapter_for_session(hook, session),
    )
    monkeypatch.setattr(opsman.operators.apply_changes, "time", types.SimpleNamespace(sleep=world.sleep))
    monkeypatch.setattr(tenacity.nap, "time", types.SimpleNamespace(sleep=world.sleep))
    monkeypatch.setattr(opsman.transport, "mask_secret", lambda *a, **k: None)
    import opsman.custom_ca

    monkeypatch.setattr(opsman.custom_ca, "mask_secret", lambda *a, **k: None)
    validated = functools.lru_cache(maxsize=8)(
        lambda conn_id, window_days: opsman.custom_ca.load_custom_ca(
            conn_id, now=dt.datetime.now(dt.UTC), window_days=window_days
        )
    )
    monkeypatch.setattr(
        opsman.operators.base,
        "load_custom_ca",
        lambda conn_id, *, now, window_days: validated(conn_id, window_days),
    )
    world.corporate_ca = corporate_ca()
    monkeypatch.setenv(
        "AIRFLOW_CONN_" + UPLOADED_CA_CONN.upper(),
        json.dumps({"conn_type": "generic", "extra": world.corporate_ca}),
    )
    hook_class = opsman.hooks.OpsManagerHook
    lookup = functools.lru_cache(maxsize=8)(hook_class.get_connection.__func__)
    monkeypatch.setattr(hook_class, "get_connection", classmethod(lambda cls, conn_id: lookup(cls, conn_id)))
    fetch = hook_class._fetch_token

    def fetch_or_reuse(hook):
        cached = world.tokens.get(id(world.srv))
        if cached is not None and cached.is_fresh() and not getattr(hook, "_reused_token", False):
            hook._reused_token = True  # the next fetch on this hook follows a 401: really fetch
            return cached
        token = world.tokens[id(world.srv)] = fetch(hook)
        return token

    monkeypatch.setattr(hook_class, "_fetch_token", fetch_or_reuse)
    monkeypatch.setenv("AIRFLOW_CONN_OPSMAN_DEFAULT", connection_json())
    return world
