"""Errors raised by the Ops Manager hook and operators.

Every error names the call, the HTTP status and Ops Manager's own message, and never carries a
token, password or client secret: the messages are built from response bodies and our own text only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException


class OpsManagerError(AirflowException):
    """Base class of everything this package raises about Ops Manager."""


class OpsManagerConfigError(OpsManagerError):
    """The Airflow connection or an operator argument is unusable; nothing was sent to Ops Manager."""


class OpsManagerAuthError(OpsManagerError):
    """UAA refused to issue a token (wrong credentials, unknown client, UAA unreachable)."""


class OpsManagerResponseError(OpsManagerError):
    """Ops Manager answered, but not with what the API reference promises (HTML, bad JSON, missing field)."""


class OpsManagerApiError(OpsManagerError):
    """Ops Manager answered a call with a status the call does not accept."""

    def __init__(
        self,
        call: str,
        method: str,
        path: str,
        status: int | None,
        messages: Sequence[str] = (),
        hint: str = "",
    ) -> None:
        self.call = call
        self.method = method
        self.path = path
        self.status = status
        self.messages = list(messages)
        status_text = f"HTTP {status}" if status is not None else "no HTTP response"
        text = f"{call} ({method} {path}) failed with {status_text}"
        if self.messages:
            text += ": " + "; ".join(self.messages)
        if hint:
            text += f". {hint}"
        super().__init__(text)


class OpsManagerTransientError(OpsManagerApiError):
    """A connection error, timeout or 502/503/504: the request may or may not have reached Ops Manager."""

    #: True when the client stopped waiting: Ops Manager may still be working on the request.
    timed_out: bool = False


class OpsManagerNotFoundError(OpsManagerApiError):
    """404: the GUID or installation id does not exist on Ops Manager."""


class SafetyViolationError(OpsManagerApiError):
    """422 with ``safety_violations``: CredHub Maestro refused a step that is out of order."""

    def __init__(self, call: str, method: str, path: str, status: int, violations: list[dict[str, Any]], error: str):
        self.violations = violations
        lines = []
        for v in violations:
            names = ", ".join(v.get("certificate_names") or []) or "no certificate named"
            # The API reference spells the remedy key "migitation"; accept the correct spelling too.
            remedy = v.get("migitation") or v.get("mitigation") or "no remedy given"
            lines.append(f"{v.get('violation', 'unnamed violation')} (certificates: {names}); remedy: {remedy}")
        messages = ([error] if error else []) + lines
        super().__init__(
            call,
            method,
            path,
            status,
            messages,
            hint=(
                "Ops Manager refused an out-of-order rotation step. Most violations mean an Apply Changes "
                "is owed: finish the pending Apply Changes and re-run this DAG; do not re-run earlier steps"
            ),
        )


class RotationStateError(OpsManagerError):
    """Ops Manager's state does not match any stage of a rotation; a person has to look before we act."""
