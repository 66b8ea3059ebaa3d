"""Sensor that waits for an Apply Changes (installation) to succeed."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, Context

from opsman.compat import AirflowFailException, AirflowSkipException
from opsman.constants import DEFAULT_CONN_ID
from opsman.exceptions import OpsManagerError
from opsman.links import OpsManagerInstallationLink
from opsman.models import InstallationStatus, log_tail, new_log_text
from opsman.values import optional_int

if TYPE_CHECKING:
    from opsman.hooks import OpsManagerHook


class ApplyChangesSensor(BaseSensorOperator):
    """Wait for one installation to succeed; fail with the log's tail when it fails.

    Deferrable by default: the wait runs in the triggerer (GET only) and holds no worker slot.
    ``deferrable=False`` falls back to poke or reschedule mode. New installation log lines go to the
    task log as they arrive.

    :param installation_id: the installation to wait for (templated; usually the Apply Changes task's XCom).
        ``None`` when the Apply Changes task was skipped: then there is nothing to wait for, unless
    :param after_installation_id: is set (manual mode): wait for a person to start an installation
        newer than this id, then for it to succeed (templated).
    :param poll_interval_seconds: seconds between status polls.
    :param log_interval_seconds: seconds between downloads of the growing log while it runs.
    :param deferrable: wait in the triggerer (default) instead of a worker slot.
    """

    operator_extra_links = (OpsManagerInstallationLink(),)
    template_fields: Sequence[str] = (
        "opsman_conn_id",
        "installation_id",
        "after_installation_id",
        "poll_interval_seconds",
    )
    ui_color = "#f6eccf"

    def __init__(
        self,
        *,
        installation_id: Any,
        after_installation_id: Any = None,
        opsman_conn_id: str = DEFAULT_CONN_ID,
        poll_interval_seconds: Any = 30,
        log_interval_seconds: float = 60,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("timeout", timedelta(hours=12).total_seconds())
        super().__init__(**kwargs)
        self.installation_id = installation_id
        self.after_installation_id = after_installation_id
        self.opsman_conn_id = opsman_conn_id
        self.poll_interval_seconds = poll_interval_seconds
        self.log_interval_seconds = log_interval_seconds
        self.deferrable = deferrable
        self._log_offset = 0
        self._last_log_fetch = 0.0

    @cached_property
    def hook(self) -> OpsManagerHook:
        from opsman.hooks import (
            OpsManagerHook,
        )  # when a task runs: parsing the DAG file does not need it (see constants)

        return OpsManagerHook(opsman_conn_id=self.opsman_conn_id)

    @property
    def _id(self) -> int:
        try:
            return int(self.installation_id)
        except (TypeError, ValueError):
            raise OpsManagerError(
                f"installation_id must be an integer, got {self.installation_id!r}"
            ) from None

    def _print_new_log(self, final: bool = False) -> None:
        text, self._log_offset = new_log_text(
            self.hook.get_installation_logs(self._id), self._log_offset, final
        )
        for line in text.splitlines():
            self.log.info("[installation %d] %s", self._id, line)
        self._last_log_fetch = time.monotonic()

    def _fail(self) -> None:
        tail = log_tail(self.hook.get_installation_logs(self._id))
        raise AirflowFailException(
            f"Apply Changes (installation {self._id}) failed. Fix the cause in Ops Manager, then clear the "
            f"Apply Changes task to start a new one. Last lines of its log:\n{tail}"
        )

    def _started_by_a_person(self) -> bool:
        """Manual mode: has someone started an installation newer than ``after_installation_id``?"""
        installations = self.hook.list_installations()
        after = optional_int(self.after_installation_id, "after_installation_id") or 0
        if installations and installations[0].id > after:
            self.installation_id = installations[0].id
            self.log.info("Installation %d was started in Ops Manager; waiting for it to finish", self._id)
            return True
        self.log.info(
            "Waiting for someone to click Apply Changes in Ops Manager (an installation newer than %d)", after
        )
        return False

    def poke(self, context: Context) -> bool:
        if self.installation_id is None and not self._started_by_a_person():
            return False
        status = self.hook.get_installation_status(self._id)
        # In reschedule mode every poke is a new process with no offset: the log only at the end, once.
        periodic = (
            not self.reschedule and time.monotonic() - self._last_log_fetch >= self.log_interval_seconds
        )
        if status.is_terminal or periodic:
            self._print_new_log(final=status.is_terminal)
        if status is InstallationStatus.FAILED:
            self._fail()
        if status.is_successful:
            self.log.info("Installation %d succeeded", self._id)
            return True
        self.log.info("Installation %d is %s", self._id, status.value)
        return False

    def execute(self, context: Context) -> int:
        self.poke_interval = float(self.poll_interval_seconds)
        self.installation_id = optional_int(self.installation_id, "installation_id")
        if (
            self.installation_id is None
            and optional_int(self.after_installation_id, "after_installation_id") is None
        ):
            raise AirflowSkipException(
                "the Apply Changes step was skipped; there is no installation to wait for"
            )
        if not self.deferrable:
            super().execute(context)
            return self._id
        if self.poke(context):
            return self._id
        from opsman.triggers import InstallationTrigger  # imports the hook (see constants)

        self.defer(
            trigger=InstallationTrigger(
                opsman_conn_id=self.opsman_conn_id,
                installation_id=self.installation_id,
                after_installation_id=optional_int(self.after_installation_id, "after_installation_id"),
                poll_interval_seconds=self.poke_interval,
                log_interval_seconds=self.log_interval_seconds,
                log_offset=self._log_offset,
                end_time=time.time() + float(self.timeout),
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=float(self.timeout)),
        )
        raise AssertionError("defer() returned")  # pragma: no cover

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> int:
        from opsman.triggers import checked_event  # imports the hook (see constants)

        event = checked_event(event)
        if event.get("installation_id") is not None:
            self.installation_id = event["installation_id"]
        if event["status"] == "succeeded":
            self.log.info("Installation %d succeeded", self._id)
            return self._id
        if event["status"] == "failed":
            self._fail()
        raise AirflowFailException(
            f"gave up after {self.timeout} s: {event.get('message')}; nothing was cancelled. "
            "Check Ops Manager, then clear this task to wait again."
        )
