"""How both hooks talk to Ops Manager and its UAA: one definition of each rule, so the twins cannot drift.

The hooks do the I/O (requests in the sync hook for tasks, aiohttp in the async hook for triggers);
what they decide about it is here: the UAA token and when to renew it, Ops Manager's 401, which
failures are retried and how long to wait, which errors no retry can fix, and how an answer becomes
a body or an error (docs/ops-manager-api.md §0 and §1).
"""

from __future__ import annotations

import base64
import functools
import json
import re
import socket
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from logging import Logger
from typing import Any, ClassVar
from urllib.parse import urlparse

import aiohttp
import requests
import tenacity
from airflow.sdk.log import mask_secret

from opsman.connection import OpsManagerConnectionSettings
from opsman.exceptions import (
    OpsManagerApiError,
    OpsManagerAuthError,
    OpsManagerConfigError,
    OpsManagerCredentialsError,
    OpsManagerError,
    OpsManagerNotFoundError,
    OpsManagerPermissionError,
    OpsManagerRejectedError,
    OpsManagerResponseError,
    OpsManagerTransientError,
    SafetyViolationError,
    UaaUnavailableError,
)

#: Statuses after which a request may not have been processed, or a load balancer answered for
#: Ops Manager: retried for reads, reported as "outcome unknown" for writes.
TRANSIENT_STATUSES = frozenset({502, 503, 504})
TOKEN_CALL = "get UAA token"

# -- the UAA token ---------------------------------------------------------------------------------


def _token_scopes(body: dict[str, Any], value: str) -> frozenset[str] | None:
    """The groups a token grants: the token response's ``scope`` (OAuth 2), else the JWT's ``scope`` claim.

    Only read to explain a missing role early; Ops Manager decides. None when neither says.
    """
    scope = body.get("scope")
    if isinstance(scope, str) and scope.strip():
        return frozenset(scope.split())
    try:
        payload = value.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    scope = claims.get("scope") if isinstance(claims, dict) else None
    if isinstance(scope, list) and all(isinstance(s, str) for s in scope):
        return frozenset(scope)
    if isinstance(scope, str) and scope.strip():
        return frozenset(scope.split())
    return None


@dataclass
class UaaToken:
    value: str = field(repr=False)
    expires_at: float | None  # deadline on ``clock``; None when UAA gave no expiry
    scopes: frozenset[str] | None = None
    # Seconds on a clock that only moves forward; tests drive it with the simulator's clock to pin the
    # renewal lead exactly, whatever the machine's load.
    clock: ClassVar[Callable[[], float]] = staticmethod(time.monotonic)

    @classmethod
    def from_response(cls, body: Any, token_url: str) -> UaaToken:
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise OpsManagerAuthError(f"UAA at {token_url} answered without an access_token")
        value = body["access_token"]
        mask_secret(value)
        scopes = _token_scopes(body, value)
        try:
            expires_in = float(body.get("expires_in") or 0)
        except (TypeError, ValueError):
            expires_in = 0.0
        if expires_in <= 0:
            return cls(value, None, scopes)
        # Refresh ahead of expiry: a quarter of the lifetime, at most a minute (om uses 10 s).
        lead = min(60.0, expires_in / 4)
        return cls(value, cls.clock() + expires_in - lead, scopes)

    def is_fresh(self) -> bool:
        return self.expires_at is None or self.clock() < self.expires_at


def token_from_answer(
    settings: OpsManagerConnectionSettings, url: str, status: int, content_type: str, text: str
) -> UaaToken:
    """UAA's answer to the token request.

    A 5xx is UAA failing on its side (down, restarting, overloaded): :class:`UaaUnavailableError`,
    retried like a dropped connection. 400/401/403 mean wrong credentials and 404 a wrong UAA URL:
    no retry can fix those.
    """
    body = decode(TOKEN_CALL, "POST", url, status, content_type, text)
    if status == 200:
        return UaaToken.from_response(body, url)
    messages = error_messages(body)
    if status >= 500:
        raise UaaUnavailableError(
            TOKEN_CALL, "POST", url, status, messages, hint="the call was not sent to Ops Manager"
        )
    text = "; ".join(messages) or f"HTTP {status}"
    if status in (400, 401, 403):
        raise OpsManagerCredentialsError(
            f"UAA at {url} refused to issue a token for {settings.principal} (HTTP {status}: {text}). "
            f"Check the login/password or client_id/client_secret of connection '{settings.conn_id}'; "
            "not retried, a retry would send the same credentials."
        )
    if status == 404:
        raise OpsManagerConfigError(
            f"no UAA token endpoint at {url} (HTTP 404). Check the host or extra uaa_url of connection "
            f"'{settings.conn_id}' (default: <host>/uaa)."
        )
    raise OpsManagerAuthError(
        f"UAA at {url} answered HTTP {status} ({text}) to the token request; try again later"
    )


class TokenKeeper:
    """One hook's UAA token, and what a 401 from Ops Manager means.

    A 401 is decided before Ops Manager acts on the request, so sending the request again with a new
    token is safe even for a write: the token was revoked or expired early. Once per request: a 401
    right after a new token is reported (:func:`raise_for_status`), not chased.
    """

    def __init__(self, log: Logger) -> None:
        self.token: UaaToken | None = None
        self._log = log

    def fresh(self) -> str | None:
        """The token to send; None when a new one must be fetched first."""
        return self.token.value if self.token is not None and self.token.is_fresh() else None

    def keep(self, token: UaaToken) -> str:
        self.token = token
        return token.value

    def sends(self, call: str) -> Iterator[Callable[[int], bool]]:
        """The sends of one request: after each, ``rejected(status)`` says whether to send it again.

        ::

            for rejected in tokens.sends(call):
                status = send(request, with tokens.fresh() or a new token)
                if not rejected(status):
                    break
        """
        for last in (False, True):
            yield functools.partial(self._rejected, call, last)

    def _rejected(self, call: str, last: bool, status: int) -> bool:
        if status != 401 or last:
            return False
        self._log.info("%s: Ops Manager rejected the UAA token; fetching a new one", call)
        self.token = None
        return True


def api_headers(token: str | None) -> dict[str, str]:
    # om sends these on every request, GET and DELETE included (docs/ops-manager-api.md §0).
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


# -- failures without an answer, and retries ----------------------------------------------------------

#: What a request that got no answer raises: requests (sync hook) or aiohttp (async hook).
NETWORK_ERRORS = (requests.ConnectionError, requests.Timeout, aiohttp.ClientError, TimeoutError)
#: Of those, TLS verification failures: configuration problems, never retried.
_TLS_FAILURES = (requests.exceptions.SSLError, aiohttp.ClientConnectorCertificateError)
_TIMEOUTS = (requests.Timeout, TimeoutError)
#: getaddrinfo answers that mean "this name does not exist" (EAI_AGAIN, a DNS server that could not
#: be reached, stays transient).
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


def network_error(
    settings: OpsManagerConnectionSettings, call: str, method: str, path: str, err: BaseException
) -> OpsManagerError:
    """The error for a request that got no HTTP answer; ``path`` is the API path, or UAA's token URL."""
    url = path if "://" in path else settings.base_url + path
    if isinstance(err, _TLS_FAILURES):
        reason = (
            str(err.__context__ or err)
            if "CERTIFICATE_VERIFY_FAILED" not in str(err)
            else "certificate verify failed"
        )
        return OpsManagerConfigError(
            f"TLS verification of {settings.base_url} failed ({reason[:200]}). Set extra ca_cert on connection "
            f"'{settings.conn_id}' to the CA that signed Ops Manager's certificate (PEM text or a file path)."
        )
    if _unresolvable(err):
        return OpsManagerConfigError(
            f"the host name {urlparse(url).hostname!r} does not resolve (no such name in DNS). Check the host (or "
            f"extra uaa_url) of connection '{settings.conn_id}': it must be the Ops Manager's name as its "
            "operators reach it"
        )
    if call == TOKEN_CALL:
        return UaaUnavailableError(call, method, path, None, [type(err).__name__])
    transient = OpsManagerTransientError(
        call,
        method,
        path,
        None,
        [f"{type(err).__name__}: the request may or may not have reached Ops Manager"],
    )
    transient.timed_out = isinstance(err, _TIMEOUTS)
    return transient


def _unresolvable(err: BaseException) -> bool:
    """True when a connection error's cause is a host name that does not exist."""
    seen: set[int] = set()
    todo: list[Any] = [err]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, socket.gaierror):
            return item.errno in _NO_SUCH_NAME
        todo.extend(
            [getattr(item, "reason", None), getattr(item, "os_error", None), item.__cause__, item.__context__]
        )
        todo.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
    return False


def retry_policy(
    settings: OpsManagerConnectionSettings, call: str, log: Logger, *, idempotent: bool
) -> dict[str, Any]:
    """tenacity's arguments for one call, for ``Retrying`` (sync hook) and ``AsyncRetrying`` (async hook).

    A read is sent again after any transient failure. A write only when it was never sent (UAA gave
    no token); otherwise its outcome is unknown and the caller decides from Ops Manager's state.
    """
    attempts = settings.read_attempts

    def retryable(err: BaseException) -> bool:
        return isinstance(err, UaaUnavailableError) or (
            idempotent and isinstance(err, OpsManagerTransientError)
        )

    return {
        "stop": tenacity.stop_after_attempt(attempts),
        "wait": _backoff(settings),
        "retry": tenacity.retry_if_exception(retryable),
        "before_sleep": lambda state: log.warning(
            "%s: attempt %d of %d failed (%s); retrying in %.1f s",
            call,
            state.attempt_number,
            attempts,
            state.outcome.exception() if state.outcome else "?",
            state.next_action.sleep if state.next_action else 0,
        ),
        "reraise": True,
    }


def _backoff(settings: OpsManagerConnectionSettings) -> Callable[[tenacity.RetryCallState], float]:
    """Exponential backoff; after a timeout, at least the request timeout again.

    Ops Manager does not support parallel calls. A request we stopped waiting for may still be
    running there, so the retry waits as long as we waited for it before sending another.
    """
    exponential = tenacity.wait_exponential(multiplier=settings.retry_backoff_seconds, max=60)

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        floor = settings.request_timeout if getattr(error, "timed_out", False) else 0.0
        return max(exponential(state), floor)

    return wait


# -- answers ----------------------------------------------------------------------------------------


def read_response(
    call: str,
    method: str,
    path: str,
    status: int,
    content_type: str,
    text: str,
    accept: Iterable[int] = (200,),
) -> Any:
    """The decoded body of an accepted answer; anything else raises the error its status means."""
    accept = tuple(accept)
    body = decode(call, method, path, status, content_type, text, accept)
    raise_for_status(call, method, path, status, body, accept)
    return body


def decode(
    call: str,
    method: str,
    path: str,
    status: int,
    content_type: str,
    text: str,
    accept: Iterable[int] = (200,),
) -> Any:
    """The JSON body of a response; an error response that is not JSON (a proxy's HTML page) stays text."""
    if not text.strip():
        return {}
    try:
        return json.loads(text)
    except ValueError:
        if status not in accept:
            return text
        raise OpsManagerResponseError(
            f"{call} ({method} {path}): expected JSON with HTTP {status}, got {content_type or 'no content type'}: "
            f"{_text_excerpt(text)!r}. Is the connection's host really Ops Manager (not a proxy or login page)?"
        ) from None


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
