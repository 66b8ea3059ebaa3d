"""What Ops Manager's answers mean, the same for both hooks: the body, or the error its status means
(docs/ops-manager-api.md §0); and the Server-Sent Events of the installation log stream. Pure: no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from opsman.exceptions import (
    OpsManagerApiError,
    OpsManagerNotFoundError,
    OpsManagerPermissionError,
    OpsManagerRejectedError,
    OpsManagerResponseError,
    OpsManagerTransientError,
    SafetyViolationError,
)

#: Statuses after which a request may not have been processed, or a load balancer answered for
#: Ops Manager: retried for reads, reported as "outcome unknown" for writes.
TRANSIENT_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class Answer:
    """Ops Manager's (or UAA's) answer to one call, as either hook read it off its HTTP library."""

    call: str  # what the call does, in words, for errors
    method: str
    path: str
    status: int
    content_type: str
    text: str = field(repr=False)

    def body(self, accept: Iterable[int] = (200,)) -> Any:
        """The JSON body; an error answer that is not JSON (a proxy's HTML page) stays text."""
        if not self.text.strip():
            return {}
        try:
            return json.loads(self.text)
        except ValueError:
            if self.status not in accept:
                return self.text
            raise OpsManagerResponseError(
                f"{self.call} ({self.method} {self.path}): expected JSON with HTTP {self.status}, got "
                f"{self.content_type or 'no content type'}: {_text_excerpt(self.text)!r}. Is the connection's "
                "host really Ops Manager (not a proxy or login page)?"
            ) from None

    def accepted_body(self, accept: Iterable[int] = (200,)) -> Any:
        """The body of an accepted answer; any other answer raises the error its status means."""
        accept = tuple(accept)
        body = self.body(accept)
        raise_for_status(self.call, self.method, self.path, self.status, body, accept)
        return body


def raise_for_status(
    call: str, method: str, path: str, status: int, body: Any, accept: Iterable[int]
) -> None:
    if status in accept:
        return
    if status == 422 and isinstance(body, dict) and isinstance(body.get("safety_violations"), list):
        raise SafetyViolationError(
            call, method, path, status, body["safety_violations"], str(body.get("error") or "")
        )
    messages = error_messages(body)
    if status in TRANSIENT_STATUSES:
        raise OpsManagerTransientError(call, method, path, status, messages)
    if status == 404:
        raise OpsManagerNotFoundError(call, method, path, status, messages)
    if status == 403:
        raise OpsManagerPermissionError(
            call, method, path, status, messages, hint=permission_hint(method, path)
        )
    if status == 401:
        # A second 401 right after a new token: usually a revocation racing us, so the task's retries stay.
        raise OpsManagerApiError(
            call,
            method,
            path,
            status,
            messages,
            hint="Ops Manager rejected a freshly issued token; check the UAA user's or client's opsman.* groups",
        )
    if status in (400, 422):
        # Ops Manager's own words say what is wrong; the same request would get the same answer.
        raise OpsManagerRejectedError(call, method, path, status, messages)
    raise OpsManagerApiError(call, method, path, status, messages)


def permission_hint(method: str, path: str) -> str:
    """The role a refused call needs, for the error message."""
    if method == "GET" and "/credentials/" in path:
        return (
            "Reading a credential needs a full role (Full Control, opsman.full_control, or Administrator, "
            "opsman.admin); Restricted roles may not read credentials"
        )
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        return (
            "This change needs a control role: Restricted Control (opsman.restricted_control) is enough, or "
            "Full Control / Administrator; a view role may only read. Give the connection's UAA user or client "
            "such a role, then clear this task"
        )
    return "The connection's UAA user or client needs an Ops Manager role (e.g. opsman.restricted_control)"


def error_messages(body: Any) -> list[str]:
    """Ops Manager's own words from any of its error envelopes (docs/ops-manager-api.md §0)."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            return [str(e) for e in errors]
        if isinstance(errors, dict):
            return [
                f"{key}: {msg}" if key not in ("base", "errors") else str(msg)
                for key, msgs in errors.items()
                for msg in (msgs if isinstance(msgs, list) else [msgs])
            ]
        if "error_description" in body or "error" in body:
            return [": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))]
    if isinstance(body, str) and body.strip():
        return [_text_excerpt(body)]
    return []


def _text_excerpt(text: str, limit: int = 300) -> str:
    flat = re.sub(r"<[^>]+>", " ", text)
    flat = re.sub(r"\s+", " ", flat).strip()
    return flat if len(flat) <= limit else flat[:limit] + "..."


async def sse_events(lines: AsyncIterable[bytes]) -> AsyncIterator[tuple[str, str]]:
    """Server-Sent Events from a stream's lines: ``(event, data)`` each; ``event`` is "" when unnamed.

    A blank line ends an event; its ``data:`` lines are joined by newlines. Comments (``:``) and the
    fields Ops Manager does not use (``id:``, ``retry:``) are skipped, as is an event the stream
    ends before finishing.
    """
    event, data = "", []
    async for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif not line and (event or data):
            yield event, "\n".join(data)
            event, data = "", []
