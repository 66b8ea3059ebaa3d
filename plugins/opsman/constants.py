"""Names the hook and the operators share, in a module that imports nothing.

The DAG processor imports the operators every time it parses the DAG file; the hook pulls in
requests, aiohttp and Airflow's HTTP provider (about half of the DAG file's import time), so the
operators import it only when a task runs.
"""

from __future__ import annotations

import re

DEFAULT_CONN_ID = "opsman_default"
#: om's expiry window: a number and d, w, m or y, e.g. 3m.
EXPIRES_WITHIN_PATTERN = re.compile(r"^[1-9]\d*[dwmy]$")

#: UAA groups of Ops Manager's roles (the Ops Manager docs "Creating and managing Ops Manager user and
#: client accounts" list these names).
WRITE_ROLES = ("opsman.admin", "opsman.full_control", "opsman.restricted_control")
CREDENTIAL_ROLES = ("opsman.admin", "opsman.full_control")
READ_ROLES = (*WRITE_ROLES, "opsman.full_view", "opsman.restricted_view")
