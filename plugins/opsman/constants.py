"""Names the hook and the operators share, in a module that imports nothing.

The DAG processor imports the operators every time it parses the DAG file; the hook pulls in
requests, aiohttp and Airflow's HTTP provider (about half of the DAG file's import time), so the
operators import it only when a task runs.
"""

from __future__ import annotations

import re

DEFAULT_CONN_ID = "opsman_default"

# The steps of the documented procedure, in order (opsman.planning decides which are left). Apply Changes
# steps are named after the change they carry.
INITIAL_APPLY = "initial_apply_changes"
GENERATE = "generate_ca"
VERIFY = "verify_new_ca_inactive"
APPLY_NEW_CA = "apply_new_ca"
ACTIVATE = "activate_ca"
REGENERATE = "regenerate_certificates"
APPLY_LEAVES = "apply_regenerated_certificates"
DELETE = "delete_ca"
APPLY_DELETE = "apply_old_ca_deletion"
STEPS = (
    INITIAL_APPLY,
    GENERATE,
    VERIFY,
    APPLY_NEW_CA,
    ACTIVATE,
    REGENERATE,
    APPLY_LEAVES,
    DELETE,
    APPLY_DELETE,
)

#: The steps a person can be asked to approve before they run (opsman.approvals): every write step and
#: every Apply Changes; not the verification of the new CA, which only reads.
APPROVABLE_STEPS = tuple(step for step in STEPS if step != VERIFY)
#: Minutes a person has to answer an approval before no answer counts as a Reject.
DEFAULT_APPROVAL_TIMEOUT_MINUTES = 24 * 60

#: Rotate when the active CA, or a leaf certificate the rotation re-issues, expires within this.
#: om's `expiring-certificates` default; see README "A fleet of foundations" for why.
DEFAULT_WINDOW = "3m"
#: om's expiry window: a number and d, w, m or y, e.g. 3m.
EXPIRES_WITHIN_PATTERN = re.compile(r"^[1-9]\d*[dwmy]$")

#: The connection's numeric extras as (default, minimum): the hook reads them (opsman.connection) and the
#: connection form shows them (opsman_ca_rotation_provider), from this one table.
CONNECTION_NUMBERS = {
    "connect_timeout": (10.0, 0.1),
    "request_timeout": (120.0, 0.1),
    "read_retries": (5, 1),
    "retry_backoff_seconds": (2.0, 0),
}

#: UAA groups of Ops Manager's roles (the Ops Manager docs "Creating and managing Ops Manager user and
#: client accounts" list these names).
WRITE_ROLES = ("opsman.admin", "opsman.full_control", "opsman.restricted_control")
CREDENTIAL_ROLES = ("opsman.admin", "opsman.full_control")
READ_ROLES = (*WRITE_ROLES, "opsman.full_view", "opsman.restricted_view")
