"""Every Airflow import whose home differs across the supported Airflow versions (3.1 to 3.3).

The rest of the package imports these names from here, so one file records what moved:

- ``AirflowSkipException`` and ``AirflowFailException`` are in ``airflow.sdk.exceptions`` from
  Airflow 3.2; on 3.1 only ``airflow.exceptions`` has them. On 3.2+ ``airflow.exceptions`` gives the
  very same classes, so the task runner recognises whichever one we raise.
- ``SkipMixin`` is exported by ``airflow.sdk`` from 3.2; on 3.1 it lives in ``airflow.models.skipmixin``.
"""

from __future__ import annotations

try:
    from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowFailException, AirflowSkipException  # type: ignore[no-redef]

try:
    from airflow.sdk import SkipMixin
except ImportError:  # Airflow 3.1
    from airflow.models.skipmixin import SkipMixin  # type: ignore[no-redef,attr-defined]

__all__ = ["AirflowFailException", "AirflowSkipException", "SkipMixin"]
