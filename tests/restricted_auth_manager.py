"""An auth manager for tests: Airflow's SimpleAuthManager with per-user DAG lists.

SimpleAuthManager authorizes by role only (a viewer reads every DAG), so "a user without access to
one foundation's DAG" needs this: ``$OPSMAN_TEST_DAG_ACCESS`` is JSON ``{"username": ["dag_id", ...]}``;
a listed user reads only those DAGs (and only what their role allows), everyone else is unchanged.
Select it with ``AIRFLOW__CORE__AUTH_MANAGER=restricted_auth_manager.DagListAuthManager`` (tests/ is on
the path of the test session and of a local Airflow started with it on PYTHONPATH).
"""

from __future__ import annotations

import json
import os
from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

ACCESS_ENV = "OPSMAN_TEST_DAG_ACCESS"


class DagListAuthManager(SimpleAuthManager):
    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        allowed = json.loads(os.environ.get(ACCESS_ENV) or "{}").get(user.get_name())
        if allowed is not None and (details is None or details.id not in allowed):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
