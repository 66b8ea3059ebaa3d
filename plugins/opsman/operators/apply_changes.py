"""Apply Changes: start the one that carries a step's change, or attach to the one that does.

Ops Manager runs one installation at a time: this step never starts an Apply Changes while one runs.
It attaches to a running one that carries the change, and waits out (in the triggerer) one that
started before the change. :class:`~opsman.sensors.ApplyChangesSensor` then waits for the result.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from airflow.sdk import Context
from pydantic import ValidationError

from opsman.exceptions import OpsManagerApiError, OpsManagerConfigError
from opsman.links import OpsManagerInstallationLink
from opsman.models import ApplyChangesOptions, Installation
from opsman.operators.base import AFTER_INSTALLATION_KEY, STEP_TEMPLATE_FIELDS, OpsManagerBaseOperator
from opsman.values import DeployProducts, Errands, as_flag, conforming, optional_int
from opsman.verdicts import ApplyChangesAction, apply_changes_action

APPLY_MODES = ("api", "manual")


class ApplyChangesOperator(OpsManagerBaseOperator):
    """Start an Apply Changes that carries the previous step's change, or attach to one that does.

    Decides from the installations list, using the previous step's watermark (the newest
    installation id once its change was made):

    - a running installation newer than the watermark: attach to it (no second Apply Changes);
    - a running installation not newer: it lacks the change; wait for it to end (in the triggerer,
      holding no worker slot), then decide again;
    - a succeeded installation newer than the watermark: the change is deployed, nothing to start;
    - otherwise (none, or the newest one failed): start one.

    In ``manual`` mode it starts nothing: the sensor waits for a person to click Apply Changes.
    Returns the installation id (``None`` in manual mode); :class:`~opsman.sensors.ApplyChangesSensor` waits for it.

    :param step: the plan step this Apply Changes is (e.g. ``apply_new_ca``).
    :param after_installation_id: the previous step's watermark (templated); None for "no baseline".
    :param deploy_products: ``"all"``, ``"none"`` or a list of product GUIDs or names (templated).
    :param errands: ``{product guid or name: {"run_post_deploy": {errand: true|false|"default"}}}`` (templated).
    :param recreate_vms: recreate every VM during this Apply Changes (templated).
    :param ignore_warnings: bypass ignorable verifier warnings (templated).
    :param force_latest_variables: BOSH ``--force-latest-variables`` (templated).
    :param apply_changes_mode: ``api`` (start it) or ``manual`` (a person clicks Apply Changes) (templated).
    :param wait_poll_seconds: poll interval while waiting for someone else's installation to end (templated).
    :param deferrable: wait for someone else's installation in the triggerer (default). ``False`` waits
        in the worker, polling like a poke-mode sensor and holding its slot: for a deployment without a
        triggerer (the fleet file's ``wait_mode: poke`` or ``reschedule``). Reschedule mode is a
        sensor's; this task is no sensor, and such a wait is rare and short (an installation started
        just before the step).
    """

    operator_extra_links = (OpsManagerInstallationLink(),)
    template_fields: Sequence[str] = (
        *STEP_TEMPLATE_FIELDS,
        "after_installation_id",
        "deploy_products",
        "errands",
        "recreate_vms",
        "ignore_warnings",
        "force_latest_variables",
        "apply_changes_mode",
        "wait_poll_seconds",
    )

    def __init__(
        self,
        *,
        step: str = "apply_changes",
        after_installation_id: Any = None,
        deploy_products: Any = "all",
        errands: Any = None,
        recreate_vms: Any = False,
        ignore_warnings: Any = False,
        force_latest_variables: Any = False,
        apply_changes_mode: Any = "api",
        wait_poll_seconds: Any = 30.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step = step
        self.after_installation_id = after_installation_id
        self.deploy_products = deploy_products
        self.errands = errands
        self.recreate_vms = recreate_vms
        self.ignore_warnings = ignore_warnings
        self.force_latest_variables = force_latest_variables
        self.apply_changes_mode = apply_changes_mode
        self.wait_poll_seconds = wait_poll_seconds
        self.deferrable = deferrable

    def intent(self) -> str:
        return f"start an Apply Changes (deploy_products={self.deploy_products!r}, errands={self.errands or {}!r})"

    def _product_guids(self) -> dict[str, str]:
        """Product name (type) or GUID → GUID; deployed GUIDs win over staged ones, as in om."""
        known: dict[str, str] = {}
        for product in [*self.hook.list_staged_products(), *self.hook.list_deployed_products()]:
            known[product.type] = product.guid
            known[product.guid] = product.guid
        return known

    def options(self) -> ApplyChangesOptions:
        # The rules the trigger form and the fleet file check, checked again on the rendered values.
        products = _checked(
            DeployProducts,
            self.deploy_products,
            "deploy_products must be 'all', 'none' or a non-empty list of product GUIDs or names",
        )
        errands = _checked(
            Errands,
            self.errands or {},
            "errands must map a product GUID or name to {'run_post_deploy': {errand: true|false|'default'}}",
        )
        if not isinstance(products, str) or errands:
            known = self._product_guids()
            unknown = [
                p for p in ([] if isinstance(products, str) else products) + list(errands) if p not in known
            ]
            if unknown:
                raise OpsManagerConfigError(
                    f"unknown product(s) {', '.join(unknown)}: Ops Manager has {', '.join(sorted(set(known)))}"
                )
            if not isinstance(products, str):
                products = tuple(known[p] for p in products)
            errands = {known[p]: v for p, v in errands.items()}
        return ApplyChangesOptions(
            deploy_products=products,
            errands=errands,
            ignore_warnings=as_flag(self.ignore_warnings, "ignore_warnings"),
            force_latest_variables=as_flag(self.force_latest_variables, "force_latest_variables"),
        )

    def _attach_or_start(self, context: Context) -> int:
        """The installation that carries this step's change: one found, else one started.

        While an installation that predates the change runs, it waits for it to end (deferred to
        the triggerer, or polling in the worker when not deferrable), then decides again.
        """
        after = optional_int(self.after_installation_id, "after_installation_id")
        options = self.options()  # bad input is refused before any wait or write
        while True:
            action, found = apply_changes_action(self.hook.list_installations(), after)
            if action is ApplyChangesAction.START:
                return self._start(options)
            assert found is not None
            if action is ApplyChangesAction.ATTACH:
                self.log.info(
                    "Installation %d is running and carries this step's change; attaching", found.id
                )
                return found.id
            if action is ApplyChangesAction.DEPLOYED:
                self.log.info(
                    "Installation %d succeeded after this step's change; nothing to start", found.id
                )
                return found.id
            self.log.info(
                "Installation %d started before this step's change and is still running; waiting for it to "
                "end before starting a new Apply Changes (Ops Manager runs one at a time)",
                found.id,
            )
            if self.deferrable:
                self._defer_until_ended(found)
            time.sleep(float(self.wait_poll_seconds))

    def _defer_until_ended(self, installation: Installation) -> None:
        from opsman.triggers import InstallationTrigger  # imports the hook (see constants)

        self.defer(
            trigger=InstallationTrigger(
                opsman_conn_id=self.opsman_conn_id,
                installation_id=installation.id,
                poll_interval_seconds=float(self.wait_poll_seconds),
                follow_log=False,  # someone else's installation: its log is not this task's
            ),
            method_name="execute_complete",
            timeout=self.execution_timeout,
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> int:
        """The installation this step waited out has ended: decide again from the installations."""
        from opsman.triggers import checked_event

        ended = checked_event(event)
        self.log.info(
            "Installation %s ended (%s); deciding again from Ops Manager's installations",
            ended.get("installation_id"),
            ended["status"],
        )
        return self._attach_or_start(context)

    def _started_since(self, newest_before: int) -> int | None:
        installations = self.hook.list_installations()
        if not (installations and installations[0].id > newest_before):
            return None
        self.log.info("Installation %d was started; attaching to it", installations[0].id)
        return installations[0].id

    def _start(self, options: ApplyChangesOptions) -> int:
        if as_flag(self.recreate_vms, "recreate_vms"):
            self.hook.set_recreate_vms_on_next_deploy()
            self.log.info("Set the director to recreate all VMs during this Apply Changes")
        before = self.hook.list_installations()
        newest_before = before[0].id if before else 0
        self.log.info("Starting Apply Changes: %s", options.request_body())
        # Any refusal counts as "did not answer cleanly", not only a lost answer: no source confirms
        # what Ops Manager answers when someone started one meanwhile (409? 422 with errors?), so the
        # installations decide: a newer one carries this step's change, and this step attaches to it.
        installation_id = self.write_then_confirm(
            "start Apply Changes",
            lambda: self._post(options),
            lambda: self._started_since(newest_before),
            reading="installations",
            unknown=(OpsManagerApiError,),
        )
        return installation_id

    def _post(self, options: ApplyChangesOptions) -> int:
        installation_id = self.hook.apply_changes(options)
        self.log.info("Started Apply Changes: installation %d", installation_id)
        return installation_id

    def run_step(self, context: Context) -> int | None:
        if self.apply_changes_mode not in APPLY_MODES:
            raise OpsManagerConfigError(
                f"apply_changes_mode must be api or manual, got {self.apply_changes_mode!r}"
            )
        if self.apply_changes_mode == "manual":
            after = optional_int(self.after_installation_id, "after_installation_id")
            context["ti"].xcom_push(key=AFTER_INSTALLATION_KEY, value=after or 0)
            self.log.info(
                "Manual mode: click Apply Changes in Ops Manager now. The next task waits for an installation "
                "newer than %s to start and succeed.",
                after or 0,
            )
            return None
        return self._attach_or_start(context)


def _checked(rule: Any, value: Any, expected: str) -> Any:
    """``value`` as ``rule`` reads it; a configuration error (no retry) saying what was expected if not."""
    try:
        return conforming(rule, value)
    except ValidationError:
        raise OpsManagerConfigError(f"{expected}, got {value!r}") from None
