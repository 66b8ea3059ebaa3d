"""The simulated Ops Manager: domain state, its rules, and its persistence.

:class:`Store` is the one object the HTTP layer talks to. It holds the state document and combines
one class per resource (``opsman_simulator.store``: certificate authorities, installations and
their logs, the clock, products, faults, the control view), which share only
:class:`~opsman_simulator.store.base.StoreBase`.

Everything here is synchronous and is only ever called from the event loop thread while the
request lock (see :mod:`opsman_simulator.middleware`) is held, so every operation is atomic with
respect to other requests.  Every mutation is written to ``<state-dir>/state.json`` atomically
(temporary file + fsync + ``os.replace``, :mod:`opsman_simulator.persistence`) before the HTTP
answer is sent.
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import ApiError, Config
from .persistence import read_state
from .store.certificate_authorities import CertificateAuthorities
from .store.clock import Clock
from .store.control_view import ControlView
from .store.faults import Faults
from .store.installation_logs import InstallationLogs
from .store.products import Products
from .store.seed import initial_state

__all__ = ["ApiError", "Config", "Store"]


class Store(CertificateAuthorities, Clock, InstallationLogs, Products, Faults, ControlView):
    """All simulated Ops Manager state plus the operations on it."""

    def __init__(self, config: Config, now: float | None = None):
        self.config = config
        self.path = Path(config.state_dir) / "state.json"
        self.max_concurrent_requests = 0
        if config.persist and self.path.exists():
            self.data = read_state(self.path)
        else:
            self.data = initial_state(config, now if now is not None else time.time(), keep={})
            self.save()

    def reset(self, now: float | None = None) -> None:
        # The root CA is always new; the leaf and services-CA key pairs are reused (RSA key
        # generation is the slow part of a reset).
        keep = {k: self.data.get(k) for k in ("revoked_before", "leaf_key_pem", "services_key_pem")}
        self.data = initial_state(self.config, now if now is not None else time.time(), keep=keep)
        self.max_concurrent_requests = 0
        self.save()
