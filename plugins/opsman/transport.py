"""How both hooks talk to Ops Manager and its UAA: one definition of each rule, so the twins cannot drift.

The hooks do the I/O (requests in the sync hook for tasks, aiohttp in the async hook for triggers);
what they decide about it is here: the UAA token and when to renew it, Ops Manager's 401, which
failures are retried and how long to wait, and which errors no retry can fix (docs/ops-manager-api.md
§0 and §1). What an answer means is :mod:`opsman.responses`.
"""

from __future__ import annotations

import base64
import functools
import json
import socket
import time
from collections.abc import Callable, Iterator
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
    OpsManagerAuthError,
    OpsManagerConfigError,
    OpsManagerCredentialsError,
    OpsManagerError,
    OpsManagerTransientError,
    UaaUnavailableError,
)
from opsman.responses import Answer, error_messages

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
    body = Answer(TOKEN_CALL, "POST", url, status, content_type, text).body()
    if status == 200:
        return UaaToken.from_response(body, url)
    messages = error_messages(body)
    if status >= 500:
        raise UaaUnavailableError(
            TOKEN_CALL, "POST", url, status, messages, hint="the call was not sent to Ops Manager"
        )
    reason = "; ".join(messages) or f"HTTP {status}"
    if status in (400, 401, 403):
        raise OpsManagerCredentialsError(
            f"UAA at {url} refused to issue a token for {settings.principal} (HTTP {status}: {reason}). "
            f"Check the login/password or client_id/client_secret of connection '{settings.conn_id}'; "
            "not retried, a retry would send the same credentials."
        )
    if status == 404:
        raise OpsManagerConfigError(
            f"no UAA token endpoint at {url} (HTTP 404). Check the host or extra uaa_url of connection "
            f"'{settings.conn_id}' (default: <host>/uaa)."
        )
    raise OpsManagerAuthError(
        f"UAA at {url} answered HTTP {status} ({reason}) to the token request; try again later"
    )


class TokenKeeper:
    """One hook's UAA token, and what a 401 from Ops Manager means.

    A 401 is decided before Ops Manager acts on the request, so sending the request again with a new
    token is safe even for a write: the token was revoked or expired early. Once per request: a 401
    right after a new token is reported (:func:`opsman.responses.raise_for_status`), not chased.
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


def basic_auth(user: str, secret: str) -> str:
    # By hand for aiohttp: its BasicAuth is deprecated, and the successor is missing from older aiohttp.
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


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
