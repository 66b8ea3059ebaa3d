"""What the tests need that differs between the supported Airflow versions (production's is opsman.compat).

- ``DagBag`` moved from ``airflow.models.dagbag`` (3.1) to ``airflow.dag_processing.dagbag``.
- :func:`serialized_for_dag_test`: 3.1's ``dag.test()`` needs the DAG serialized in the database
  first (its ``airflow dags test`` does that; 3.3's ``dag.test()`` does it itself).
- ``DECLARATIVE_CONNECTION_FORM``: from 3.2 Airflow builds the connection form from the provider
  metadata (``conn-fields``, ``ui-field-behaviour``) without importing the hook. 3.1 builds it only
  from hook methods, and only where FAB's wtforms is installed; there the "opsman" type is listed
  with its hook and our fields go into the connection's Extra JSON.
"""

from __future__ import annotations

from importlib import metadata

from packaging.version import Version

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

AIRFLOW_VERSION = Version(metadata.version("apache-airflow-core"))
DECLARATIVE_CONNECTION_FORM = AIRFLOW_VERSION >= Version("3.2.0")


def serialized_for_dag_test(request, bag: DagBag, dag_id: str):
    """``bag.dags[dag_id]``; on Airflow 3.1 also written to the test DB (as ``airflow dags test`` does)."""
    if AIRFLOW_VERSION < Version("3.2.0"):
        from airflow.dag_processing.bundles.manager import DagBundlesManager
        from airflow.models.dagbag import sync_bag_to_db

        request.getfixturevalue("airflow_db")
        DagBundlesManager().sync_bundles_to_db()
        sync_bag_to_db(bag, "dags-folder", None)
    return bag.dags[dag_id]


__all__ = ["AIRFLOW_VERSION", "DECLARATIVE_CONNECTION_FORM", "DagBag", "serialized_for_dag_test"]
