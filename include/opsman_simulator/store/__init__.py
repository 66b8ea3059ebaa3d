"""The simulated Ops Manager's state, one module per resource.

``opsman_simulator.state.Store`` combines them; each class here holds one resource's rules on the
shared state document and reaches the rest only through :class:`~.base.StoreBase` (the settings,
the document, saving it, the clock and the lookups every resource needs):

- ``records``: building the stored CA and leaf-certificate records (the PKI side);
- ``seed``: the foundation on a fresh start or reset;
- ``certificate_authorities``: list, generate, upload, activate, regenerate leaves, delete;
- ``installations``: Apply Changes: start, finish when their time is up, list, read;
- ``installation_logs``: the deterministic log and step events of an installation;
- ``clock``: moving simulated time forward (which finishes installations);
- ``products``: products, pending changes, deployed certificates and credentials;
- ``faults``: the armed faults of the control surface;
- ``control_view``: the ``GET /_simulator/state`` picture of everything.
"""
