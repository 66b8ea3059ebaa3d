"""The HTTP routes, one ``APIRouter`` per resource (``app.create_app`` includes them in this order):

- ``uaa``: ``POST /uaa/oauth/token`` and ``GET /api/v0/info`` (no token needed);
- ``certificate_authorities``: ``/api/v0/certificate_authorities...`` (docs/ops-manager-api.md §2);
- ``installations``: Apply Changes, its logs and the ``current_log`` stream (§4, §8), director flags;
- ``products``: staged/deployed products, pending changes, deployed certificates, credentials (§3, §5);
- ``control``: the ``/_simulator/*`` control surface for tests.

Each module's ``router(sim)`` builds its router around one :class:`~opsman_simulator.context.Simulator`.
"""
