"""Extra links from task instances to the Ops Manager UI behind them.

In Airflow 3 the worker evaluates ``get_link`` when the task finishes and stores the URL as the
XCom ``_link_<ClassName>``; the UI only reads that XCom. So these classes need no plugin
registration, run where connections resolve (the worker), and must never raise: a link that
cannot be built is an empty string (the button is shown disabled), never a failed task.

The base URL is the connection's Ops Manager URL, derived with the hook's own rules
(``OpsManagerConnectionSettings``), so it matches what the tasks called.

UNVERIFIED: the paths of Ops Manager's web UI are not part of its documented HTTP API and could not
be checked against a real Ops Manager here. ``/installation_logs/<id>`` (the log of one Apply
Changes, as the Change Log page links it) and ``/certificates`` (the certificates page) are our best
reading; they are module constants so that a different Ops Manager version needs one change.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseHook, BaseOperatorLink

log = logging.getLogger(__name__)

#: UNVERIFIED UI paths (see the module docstring).
INSTALLATION_PATH = "/installation_logs/{id}"
CHANGE_LOG_PATH = "/change_log"
CERTIFICATES_PATH = "/certificates"


def ops_manager_base_url(operator: Any) -> str | None:
    """The Ops Manager URL of the operator's (rendered) connection, or None when it cannot be built."""
    conn_id = getattr(operator, "opsman_conn_id", None)
    if not conn_id or "{{" in str(conn_id):
        return None
    try:
        from opsman.connection import OpsManagerConnectionSettings

        return OpsManagerConnectionSettings.from_connection(BaseHook.get_connection(str(conn_id))).base_url
    except Exception as err:  # never fail a task because its link cannot be built
        log.warning("No Ops Manager link for connection %r: %s", conn_id, err)
        return None


def _installation_id(operator: Any, ti_key: Any) -> int | None:
    """The installation the task started or waited for: its ``return_value`` XCom, else the
    sensor's rendered ``installation_id`` (a failed wait has no XCom but still names its installation)."""
    candidates: list[Any] = []
    try:
        from airflow.sdk.execution_time.xcom import XCom

        candidates.append(XCom.get_value(ti_key=ti_key, key="return_value"))
    except Exception as err:
        log.debug("No return_value XCom for the Ops Manager link: %s", err)
    candidates.append(getattr(operator, "installation_id", None))
    for value in candidates:
        if isinstance(value, bool) or value is None:
            continue
        try:
            return int(value)
        except (TypeError, ValueError):
            continue
    return None


class OpsManagerInstallationLink(BaseOperatorLink):
    """The Apply Changes (installation) the task started or waited for, in Ops Manager's UI.

    Attach to ``ApplyChangesOperator`` and ``ApplyChangesSensor``. Without an installation id (the
    task found nothing to apply, or failed before starting one) it points at the Change Log.
    """

    name = "Ops Manager installation"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        base = ops_manager_base_url(operator)
        if base is None:
            return ""
        installation_id = _installation_id(operator, ti_key)
        if installation_id is None:
            return base + CHANGE_LOG_PATH
        return base + INSTALLATION_PATH.format(id=installation_id)


class OpsManagerCertificatesLink(BaseOperatorLink):
    """Ops Manager's certificates page (certificate authorities and the certificates they signed).

    Attach to ``VerifyCertificateAuthoritiesOperator`` (and any CA operator).
    """

    name = "Ops Manager certificates"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        base = ops_manager_base_url(operator)
        return "" if base is None else base + CERTIFICATES_PATH
