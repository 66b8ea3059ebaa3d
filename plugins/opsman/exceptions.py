"""Errors raised by the Ops Manager hook and operators.

Every error names the call, the HTTP status and Ops Manager's own message, and never carries a
token, password or client secret: the messages are built from response bodies and our own text only.

Errors no retry can fix (configuration, rejected credentials, missing permission, invalid input)
are also :class:`~airflow.sdk.exceptions.AirflowFailException`: the task fails at once, without its
retries, and the message says what to change. Transient errors (connection trouble, 502/503/504,
UAA unavailable) stay plain errors and keep the task's retries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk.exceptions import AirflowException

from opsman.compat import AirflowFailException


class OpsManagerError(AirflowException):
    """Base class of everything this package raises about Ops Manager."""


class OpsManagerConfigError(OpsManagerError, AirflowFailException):
    """The Airflow connection or an operator argument is unusable (also: TLS verification failed, the
    host name does not resolve). Not retried: the same configuration fails the same way."""


class OpsManagerAuthError(OpsManagerError):
    """No token: UAA's answer unusable (retried), or see :class:`UaaUnavailableError` and
    :class:`OpsManagerCredentialsError`."""


class OpsManagerCredentialsError(OpsManagerAuthError, AirflowFailException):
    """UAA refused the connection's credentials (wrong password or client secret, unknown user or client).
    Not retried: a retry sends the same credentials, and repeated failures can lock the UAA user."""


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


class UaaUnavailableError(OpsManagerTransientError, OpsManagerAuthError):
    """No token: UAA could not be reached or failed on its side (5xx). The call was never sent to Ops
    Manager, so sending it again is safe even for a write; retried."""


class OpsManagerPermissionError(OpsManagerApiError, AirflowFailException):
    """403: the UAA user or client may not make this call (its role is too small). Not retried."""


class OpsManagerRejectedError(OpsManagerApiError, AirflowFailException):
    """400 or 422 (not a safety violation): Ops Manager refused the request as it is; sending it
    again cannot change the answer. Not retried."""


class OpsManagerNotFoundError(OpsManagerApiError):
    """404: the GUID or installation id does not exist on Ops Manager."""


class SafetyViolationError(OpsManagerApiError):
    """422 with ``safety_violations``: CredHub Maestro refused a step that is out of order."""

    def __init__(
        self, call: str, method: str, path: str, status: int, violations: list[dict[str, Any]], error: str
    ):
        self.violations = violations
        lines = []
        for v in violations:
            names = ", ".join(v.get("certificate_names") or []) or "no certificate named"
            # The API reference spells the remedy key "migitation"; accept the correct spelling too.
            remedy = v.get("migitation") or v.get("mitigation") or "no remedy given"
            lines.append(
                f"{v.get('violation', 'unnamed violation')} (certificates: {names}); remedy: {remedy}"
            )
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
