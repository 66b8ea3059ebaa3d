"""The only module that talks to Ops Manager: a sync hook for tasks and an async twin for triggers.

Both read the same Airflow connection (type ``opsman``) with the same rules:

- ``host``: the Ops Manager URL (``https://opsman.example.com``, a port is allowed). A host without a
  scheme gets ``https://``; ``http://`` is refused unless extra ``allow_http`` is true.
- ``login``/``password``: UAA password grant with client ``opsman`` and an empty secret (as ``om``).
  Otherwise extras ``client_id``/``client_secret``: client_credentials grant.
- extras, named after ``om``'s flags: ``uaa_url`` (default ``<host>/uaa``), ``ca_cert`` (PEM text or a
  file path, added to the system trust store), ``skip_ssl_validation`` (default false),
  ``connect_timeout`` (default 10 s), ``request_timeout`` (default 120 s); and ``read_retries``
  (default 5 attempts) / ``retry_backoff_seconds`` (default 2) for transient failures of reads.

Extras never become HTTP headers (the plain HttpHook would send them as headers).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote, urlparse

import aiohttp
import certifi
import requests
import tenacity
from airflow.providers.http.hooks.http import HttpAsyncHook, HttpHook
from airflow.sdk.log import mask_secret
from cryptography import x509

from opsman.compat import aget_connection
from opsman.constants import DEFAULT_CONN_ID, EXPIRES_WITHIN_PATTERN
from opsman.exceptions import (
    OpsManagerApiError,
    OpsManagerAuthError,
    OpsManagerConfigError,
    OpsManagerCredentialsError,
    OpsManagerNotFoundError,
    OpsManagerPermissionError,
    OpsManagerRejectedError,
    OpsManagerResponseError,
    OpsManagerTransientError,
    SafetyViolationError,
)
from opsman.models import (
    ApplyChangesOptions,
    CaCallResult,
    CertificateAuthority,
    CertificateChanges,
    DeployedCertificate,
    Installation,
    InstallationStatus,
    PendingChange,
    Product,
)

CONN_TYPE = "opsman"

#: Statuses after which a request may not have been processed, or a load balancer answered for
#: Ops Manager: retried for reads, reported as "outcome unknown" for writes.
TRANSIENT_STATUSES = frozenset({502, 503, 504})
#: The CA calls also answer 207 Multi-Status with warnings (opsman-api.md §0).
CA_OK = (200, 207)
GUID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

_TRUE = {"true", "1", "yes", "on"}


def _as_bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in {"false", "0", "no", "off", ""}:
        return False
    raise OpsManagerConfigError(f"connection extra '{name}' must be true or false, got {value!r}")


def _as_number(extra: dict[str, Any], name: str, default: float, minimum: float) -> float:
    value = extra.get(name, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise OpsManagerConfigError(f"connection extra '{name}' must be a number, got {value!r}") from None
    if number < minimum:
        raise OpsManagerConfigError(f"connection extra '{name}' must be at least {minimum}, got {value!r}")
    return number


def _load_ca_cert(value: str) -> str:
    """Return PEM text from an inline PEM or a file path, refusing anything that is not a certificate."""
    if "BEGIN" in value:
        pem, origin = value, "the PEM text in extra 'ca_cert'"
    else:
        origin = f"the file {value!r} named by extra 'ca_cert'"
        try:
            pem = Path(value).expanduser().read_text()
        except OSError as err:
            raise OpsManagerConfigError(f"cannot read {origin}: {err.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        certs = []
    if not certs:
        raise OpsManagerConfigError(
            f"{origin} holds no usable PEM certificate: give the CA that signed Ops Manager's TLS certificate"
        )
    return pem


@dataclass(frozen=True)
class OpsManagerConnectionSettings:
    """Everything the hooks need from an Airflow connection, validated before any request."""

    conn_id: str
    base_url: str
    uaa_url: str
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    ca_cert_pem: str | None = field(default=None, repr=False)
    skip_ssl_validation: bool = False
    connect_timeout: float = 10.0
    request_timeout: float = 120.0
    read_attempts: int = 5
    retry_backoff_seconds: float = 2.0

    @classmethod
    def from_connection(cls, conn: Any) -> OpsManagerConnectionSettings:
        conn_id = conn.conn_id
        extra = conn.extra_dejson or {}
        host = (conn.host or "").strip()
        if not host:
            raise OpsManagerConfigError(
                f"connection '{conn_id}' has no host: set it to the Ops Manager URL, e.g. https://opsman.example.com"
            )
        url = host if "://" in host else f"https://{host}"
        parsed = urlparse(url)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise OpsManagerConfigError(f"connection '{conn_id}': host {host!r} is not an http(s) URL")
        if parsed.scheme == "http" and not _as_bool(extra.get("allow_http"), "allow_http"):
            raise OpsManagerConfigError(
                f"connection '{conn_id}': host {host!r} uses plain http, which would send credentials "
                "unencrypted; use https, or set extra allow_http=true if you really mean it"
            )
        netloc = parsed.netloc
        if conn.port and not parsed.port:
            netloc = f"{netloc}:{conn.port}"
        base_url = f"{parsed.scheme}://{netloc}{parsed.path.rstrip('/')}"
        uaa_url = str(extra.get("uaa_url") or f"{parsed.scheme}://{netloc}/uaa").rstrip("/")

        username, password = conn.login or None, conn.password or None
        client_id = extra.get("client_id") or None
        client_secret = extra.get("client_secret") or None
        if not (username and password) and not client_id:
            raise OpsManagerConfigError(
                f"connection '{conn_id}' has no credentials: set login and password (UAA user), "
                "or extras client_id and client_secret (UAA client)"
            )
        ca_cert = extra.get("ca_cert")
        return cls(
            conn_id=conn_id,
            base_url=base_url,
            uaa_url=uaa_url,
            username=username,
            password=password,
            client_id=client_id,
            client_secret=client_secret,
            ca_cert_pem=_load_ca_cert(str(ca_cert)) if ca_cert else None,
            skip_ssl_validation=_as_bool(extra.get("skip_ssl_validation"), "skip_ssl_validation"),
            connect_timeout=_as_number(extra, "connect_timeout", 10.0, 0.1),
            request_timeout=_as_number(extra, "request_timeout", 120.0, 0.1),
            read_attempts=int(_as_number(extra, "read_retries", 5, 1)),
            retry_backoff_seconds=_as_number(extra, "retry_backoff_seconds", 2.0, 0),
        )

    @property
    def uses_password_grant(self) -> bool:
        # om's rule: the password grant whenever both username and password are set (§1.1).
        return bool(self.username and self.password)

    def token_request(self) -> tuple[str, tuple[str, str], dict[str, str]]:
        """URL, Basic-auth pair and form of the UAA token request (opsman-api.md §1.1)."""
        if self.uses_password_grant:
            form = {
                "grant_type": "password",
                "username": self.username or "",
                "password": self.password or "",
                "client_id": "opsman",
                "token_format": "jwt",
            }
            return f"{self.uaa_url}/oauth/token", ("opsman", ""), form
        basic = (quote(self.client_id or "", safe=""), quote(self.client_secret or "", safe=""))
        return f"{self.uaa_url}/oauth/token", basic, {"grant_type": "client_credentials", "token_format": "jwt"}

    @property
    def principal(self) -> str:
        return f"user '{self.username}'" if self.uses_password_grant else f"client '{self.client_id}'"

    def trust_bundle_path(self) -> str:
        """A CA bundle file for requests: the operating system's trust store plus ``ca_cert``.

        om adds ``--ca-cert`` to the system pool; so do we. The file is always passed as ``verify``,
        so ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` (which requests lets replace ``verify=True``)
        never replace what the connection asked for.
        """
        pem = system_trust_pem() + ("\n" + self.ca_cert_pem.strip() + "\n" if self.ca_cert_pem else "")
        digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"opsman-ca-bundle-{os.getuid()}-{digest}.pem"
        if not path.exists():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".opsman-ca-")
            with os.fdopen(fd, "w") as out:
                out.write(pem)
            os.replace(tmp, path)
        return str(path)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """The aiohttp ``ssl=`` argument: False when validation is skipped, else the system store plus ``ca_cert``."""
        if self.skip_ssl_validation:
            return False
        context = ssl.create_default_context()
        if self.ca_cert_pem:
            context.load_verify_locations(cadata=self.ca_cert_pem)
        return context

    def requests_verify(self) -> bool | str:
        if self.skip_ssl_validation:
            return False
        return self.trust_bundle_path()


def system_trust_pem() -> str:
    """The operating system's trust store as PEM text, where OpenSSL finds it.

    OpenSSL's default file (``SSL_CERT_FILE`` when set, as Go's system pool used by om honours it),
    else the certificates of its default directory; ``certifi`` only where the system has neither.
    """
    paths = ssl.get_default_verify_paths()
    if paths.cafile and Path(paths.cafile).is_file():
        return Path(paths.cafile).read_text()
    texts = []
    if paths.capath and Path(paths.capath).is_dir():
        for entry in sorted(Path(paths.capath).iterdir()):
            if re.fullmatch(r"[0-9a-f]{8}\.\d+", entry.name) and entry.is_file():
                texts.append(entry.read_text())
    return "\n".join(texts) if texts else Path(certifi.where()).read_text()


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
class _Token:
    value: str = field(repr=False)
    expires_at: float | None  # deadline on ``clock``; None when UAA gave no expiry
    scopes: frozenset[str] | None = None
    # Seconds on a clock that only moves forward; tests drive it with the simulator's clock to pin the
    # renewal lead exactly, whatever the machine's load.
    clock: ClassVar[Callable[[], float]] = staticmethod(time.monotonic)

    @classmethod
    def from_response(cls, body: Any, token_url: str) -> _Token:
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


def _error_messages(body: Any) -> list[str]:
    """Ops Manager's own words from any of its error envelopes (opsman-api.md §0)."""
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list):
            return [str(e) for e in errors]
        if isinstance(errors, dict):
            return [f"{key}: {msg}" if key not in ("base", "errors") else str(msg) for key, msgs in errors.items()
                    for msg in (msgs if isinstance(msgs, list) else [msgs])]
        if "error_description" in body or "error" in body:
            return [": ".join(str(body[k]) for k in ("error", "error_description") if body.get(k))]
    if isinstance(body, str) and body.strip():
        return [_text_excerpt(body)]
    return []


def _text_excerpt(text: str, limit: int = 300) -> str:
    flat = re.sub(r"<[^>]+>", " ", text)
    flat = re.sub(r"\s+", " ", flat).strip()
    return flat if len(flat) <= limit else flat[:limit] + "..."


def _tls_error(settings: OpsManagerConnectionSettings, err: Exception) -> OpsManagerConfigError:
    """TLS verification failures are configuration problems, not transient ones: never retried."""
    reason = str(err.__context__ or err) if "CERTIFICATE_VERIFY_FAILED" not in str(err) else "certificate verify failed"
    return OpsManagerConfigError(
        f"TLS verification of {settings.base_url} failed ({reason[:200]}). Set extra ca_cert on connection "
        f"'{settings.conn_id}' to the CA that signed Ops Manager's certificate (PEM text or a file path)."
    )


#: getaddrinfo answers that mean "this name does not exist" (EAI_AGAIN, a DNS server that could not
#: be reached, stays transient).
_NO_SUCH_NAME = {socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)}


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
        todo.extend([getattr(item, "reason", None), getattr(item, "os_error", None), item.__cause__, item.__context__])
        todo.extend(a for a in getattr(item, "args", ()) if isinstance(a, BaseException))
    return False


def _unresolvable_error(settings: OpsManagerConnectionSettings, url: str) -> OpsManagerConfigError:
    host = urlparse(url).hostname
    return OpsManagerConfigError(
        f"the host name {host!r} does not resolve (no such name in DNS). Check the host (or extra uaa_url) of "
        f"connection '{settings.conn_id}': it must be the Ops Manager's name as its operators reach it"
    )


def _token_refused(settings: OpsManagerConnectionSettings, url: str, status: int, messages: str) -> OpsManagerAuthError:
    """UAA's refusal: wrong credentials and a wrong UAA URL are not retried; anything else is."""
    if status in (400, 401, 403):
        return OpsManagerCredentialsError(
            f"UAA at {url} refused to issue a token for {settings.principal} (HTTP {status}: {messages}). "
            f"Check the login/password or client_id/client_secret of connection '{settings.conn_id}'; "
            "not retried, a retry would send the same credentials."
        )
    if status == 404:
        return OpsManagerConfigError(  # type: ignore[return-value]
            f"no UAA token endpoint at {url} (HTTP 404). Check the host or extra uaa_url of connection "
            f"'{settings.conn_id}' (default: <host>/uaa)."
        )
    return OpsManagerAuthError(f"UAA at {url} answered HTTP {status} ({messages}) to the token request; try again later")


def _backoff(settings: OpsManagerConnectionSettings) -> Any:
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


def _basic_auth(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


def _check_guid(guid: str, what: str) -> str:
    if not isinstance(guid, str) or not GUID_PATTERN.match(guid):
        raise OpsManagerConfigError(f"{what} {guid!r} is not a GUID as Ops Manager prints them")
    return guid


def _decode(
    call: str, method: str, path: str, status: int, content_type: str, text: str, accept: Iterable[int] = (200,)
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


def _raise_for_status(call: str, method: str, path: str, status: int, body: Any, accept: Iterable[int]) -> None:
    if status in accept:
        return
    if status == 422 and isinstance(body, dict) and isinstance(body.get("safety_violations"), list):
        raise SafetyViolationError(call, method, path, status, body["safety_violations"], str(body.get("error") or ""))
    messages = _error_messages(body)
    if status in TRANSIENT_STATUSES:
        raise OpsManagerTransientError(call, method, path, status, messages)
    if status == 404:
        raise OpsManagerNotFoundError(call, method, path, status, messages)
    if status == 403:
        raise OpsManagerPermissionError(call, method, path, status, messages, hint=permission_hint(method, path))
    if status == 401:
        # A second 401 right after a new token: usually a revocation racing us, so the task's retries stay.
        raise OpsManagerApiError(
            call, method, path, status, messages,
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


class _Endpoints:
    """Endpoint paths, one place (opsman-api.md §2-§5)."""

    CAS = "/api/v0/certificate_authorities"
    CA_GENERATE = "/api/v0/certificate_authorities/generate"
    CA_ACTIVATE = "/api/v0/certificate_authorities/{guid}/activate"
    CA_REGENERATE = "/api/v0/certificate_authorities/active/regenerate"
    CA_ONE = "/api/v0/certificate_authorities/{guid}"
    INSTALLATIONS = "/api/v0/installations"
    INSTALLATION = "/api/v0/installations/{id}"
    INSTALLATION_LOGS = "/api/v0/installations/{id}/logs"
    CURRENT_LOG = "/api/v0/installations/current_log"
    PENDING_CHANGES = "/api/v0/staged/pending_changes"
    STAGED_PRODUCTS = "/api/v0/staged/products"
    DEPLOYED_PRODUCTS = "/api/v0/deployed/products"
    DEPLOYED_CERTIFICATES = "/api/v0/deployed/certificates"
    DEPLOYED_CREDENTIAL = "/api/v0/deployed/products/{guid}/credentials/{reference}"
    DIRECTOR_PROPERTIES = "/api/v0/staged/director/properties"
    INFO = "/api/v0/info"


def _ca_result(call: str, status: int, body: Any, with_authority: bool) -> CaCallResult:
    warnings = tuple(str(w) for w in body.get("warnings") or ()) if isinstance(body, dict) else ()
    return CaCallResult(
        status=status,
        warnings=warnings,
        changes=CertificateChanges.from_api(body),
        authority=CertificateAuthority.from_api(body, call) if with_authority else None,
    )


def _list_field(body: Any, key: str, call: str) -> list[Any]:
    value = body.get(key) if isinstance(body, dict) else None
    if not isinstance(value, list):
        raise OpsManagerResponseError(f"{call}: the response has no '{key}' list; Ops Manager sent {str(body)[:200]!r}")
    return value


def _installation_status(call: str, body: Any) -> InstallationStatus:
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        raise OpsManagerResponseError(f"{call}: the response has no 'status'; Ops Manager sent {str(body)[:200]!r}")
    return InstallationStatus.parse(body["status"])


def _installation_logs(call: str, body: Any) -> str:
    if not isinstance(body, dict) or not isinstance(body.get("logs"), str):
        raise OpsManagerResponseError(f"{call}: the response has no 'logs' string; Ops Manager sent {str(body)[:200]!r}")
    return body["logs"]


def _product_list(body: Any, call: str) -> list[Product]:
    if not isinstance(body, list):
        raise OpsManagerResponseError(f"{call}: expected a JSON list of products, got {str(body)[:200]!r}")
    return [Product.from_api(p, call) for p in body]


class OpsManagerHook(HttpHook):
    """Calls the Ops Manager API for tasks: one method per endpoint, typed results.

    One transport (:meth:`_call`) fetches and refreshes the UAA token, retries reads on connection
    errors, timeouts and 502/503/504 with exponential backoff, and never re-sends a write whose
    outcome is unknown: it raises :class:`OpsManagerTransientError` and the caller decides from state.

    :param opsman_conn_id: Airflow connection of type ``opsman``.
    """

    conn_name_attr = "opsman_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "VMware Tanzu Ops Manager"

    def __init__(self, opsman_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(method="GET", http_conn_id=opsman_conn_id, **kwargs)
        self.opsman_conn_id = opsman_conn_id
        self._token: _Token | None = None
        self._session: requests.Session | None = None
        # One conversation with Ops Manager at a time, even if a caller shares the hook across threads.
        self._lock = threading.RLock()

    @cached_property
    def settings(self) -> OpsManagerConnectionSettings:
        settings = OpsManagerConnectionSettings.from_connection(self.get_connection(self.opsman_conn_id))
        if settings.skip_ssl_validation:
            self.log.warning(
                "TLS certificate validation for Ops Manager %s is OFF (skip_ssl_validation=true on connection "
                "'%s'): credentials and tokens can be intercepted. Set extra ca_cert instead.",
                settings.base_url,
                settings.conn_id,
            )
        return settings

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """A requests session with Ops Manager's TLS settings and no connection extras as headers."""
        if self._session is None:
            settings = self.settings
            self.base_url = settings.base_url
            session = requests.Session()
            session.verify = settings.requests_verify()
            overrides = [name for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(name)]
            if overrides and session.verify:
                self.log.debug("%s not used for Ops Manager: it trusts the system store plus extra ca_cert", overrides)
            self._session = self._configure_session_from_mount_adapters(session)
        if headers:
            self._session.headers.update(headers)
        return self._session

    # -- transport -----------------------------------------------------------------------------

    def _timeouts(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.request_timeout)

    def _access_token(self) -> str:
        if self._token is None or not self._token.is_fresh():
            self._token = self._fetch_token()
        return self._token.value

    def granted_scopes(self) -> frozenset[str] | None:
        """The UAA groups of the connection's token (fetching one if needed); None when UAA does not say."""
        with self._lock:
            self._access_token()
            assert self._token is not None
            return self._token.scopes

    def _fetch_token(self) -> _Token:
        settings = self.settings
        url, basic, form = settings.token_request()
        session = self.get_conn()

        def attempt() -> requests.Response:
            try:
                return session.post(
                    url, data=form, auth=basic, headers={"Accept": "application/json"}, timeout=self._timeouts(),
                    verify=session.verify,
                )
            except requests.exceptions.SSLError as err:
                raise _tls_error(settings, err) from None
            except (requests.ConnectionError, requests.Timeout) as err:
                if _unresolvable(err):
                    raise _unresolvable_error(settings, url) from None
                raise OpsManagerTransientError("get UAA token", "POST", url, None, [type(err).__name__]) from None

        response = self._retrying(3, "get UAA token")(attempt)
        if response.status_code in TRANSIENT_STATUSES:
            raise OpsManagerAuthError(f"UAA at {url} is unavailable (HTTP {response.status_code}); try again later")
        if response.status_code != 200:
            body = _decode("get UAA token", "POST", url, response.status_code,
                           response.headers.get("Content-Type", ""), response.text) if response.text else {}
            messages = "; ".join(_error_messages(body)) or f"HTTP {response.status_code}"
            raise _token_refused(settings, url, response.status_code, messages)
        body = _decode("get UAA token", "POST", url, 200, response.headers.get("Content-Type", ""), response.text)
        return _Token.from_response(body, url)

    def _retrying(self, attempts: int, call: str) -> tenacity.Retrying:
        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(attempts),
            wait=_backoff(self.settings),
            retry=tenacity.retry_if_exception_type(OpsManagerTransientError),
            before_sleep=lambda state: self.log.warning(
                "%s: attempt %d of %d failed (%s); retrying in %.1f s",
                call,
                state.attempt_number,
                attempts,
                state.outcome.exception() if state.outcome else "?",
                state.next_action.sleep if state.next_action else 0,
            ),
            reraise=True,
        )

    def _call(
        self,
        call: str,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, str] | None = None,
        accept: Iterable[int] = (200,),
        idempotent: bool,
        authenticated: bool = True,
    ) -> tuple[int, Any]:
        """Send one API request and return (status, decoded JSON body)."""
        accept = tuple(accept)
        attempts = self.settings.read_attempts if idempotent else 1
        with self._lock:
            return self._retrying(attempts, call)(
                self._send_once, call, method, path, json_body, params, accept, authenticated
            )

    def _send_once(
        self, call: str, method: str, path: str, json_body: Any, params: dict[str, str] | None, accept: tuple[int, ...],
        authenticated: bool = True,
    ) -> tuple[int, Any]:
        session = self.get_conn()
        url = self.settings.base_url + path
        for refreshed in (False, True):
            headers = {
                # om sends this on every request, GET and DELETE included (opsman-api.md §0).
                "Content-Type": "application/json",
                "Accept": "application/json",
            }
            if authenticated:
                headers["Authorization"] = f"Bearer {self._access_token()}"
            try:
                response = session.request(
                    method, url, headers=headers, params=params,
                    data=json.dumps(json_body) if json_body is not None else None,
                    timeout=self._timeouts(), allow_redirects=False,
                    # Explicit: requests lets REQUESTS_CA_BUNDLE override a session's verify setting.
                    verify=session.verify,
                )
            except requests.exceptions.SSLError as err:
                raise _tls_error(self.settings, err) from None
            except (requests.ConnectionError, requests.Timeout) as err:
                if _unresolvable(err):
                    raise _unresolvable_error(self.settings, url) from None
                transient = OpsManagerTransientError(
                    call, method, path, None, [f"{type(err).__name__}: the request may or may not have reached Ops Manager"]
                )
                transient.timed_out = isinstance(err, requests.Timeout)
                raise transient from None
            if response.status_code == 401 and not refreshed:
                # A 401 is decided before Ops Manager acts on the request, so sending it again with a
                # new token is safe even for a write: the token was revoked or expired early.
                self.log.info("%s: Ops Manager rejected the UAA token; fetching a new one", call)
                self._token = None
                continue
            break
        body = _decode(
            call, method, path, response.status_code, response.headers.get("Content-Type", ""), response.text, accept
        )
        _raise_for_status(call, method, path, response.status_code, body, accept)
        return response.status_code, body

    # -- certificate authorities ---------------------------------------------------------------

    def list_certificate_authorities(self) -> list[CertificateAuthority]:
        """``GET /api/v0/certificate_authorities``."""
        call = "list certificate authorities"
        _, body = self._call(call, "GET", _Endpoints.CAS, idempotent=True)
        return [CertificateAuthority.from_api(ca, call) for ca in _list_field(body, "certificate_authorities", call)]

    def generate_certificate_authority(self) -> CaCallResult:
        """``POST /api/v0/certificate_authorities/generate``: a new CA, inactive."""
        call = "generate certificate authority"
        status, body = self._call(call, "POST", _Endpoints.CA_GENERATE, json_body={}, accept=CA_OK, idempotent=False)
        return _ca_result(call, status, body, with_authority=True)

    def create_certificate_authority(self, cert_pem: str, private_key_pem: str) -> CaCallResult:
        """``POST /api/v0/certificate_authorities``: upload a CA certificate and its private key."""
        call = "create certificate authority"
        status, body = self._call(
            call, "POST", _Endpoints.CAS, json_body={"cert_pem": cert_pem, "private_key_pem": private_key_pem},
            accept=CA_OK, idempotent=False,
        )
        return _ca_result(call, status, body, with_authority=True)

    def activate_certificate_authority(self, guid: str) -> CaCallResult:
        """``POST /api/v0/certificate_authorities/{guid}/activate`` (deactivates all others)."""
        call = "activate certificate authority"
        path = _Endpoints.CA_ACTIVATE.format(guid=_check_guid(guid, "CA guid"))
        status, body = self._call(call, "POST", path, json_body={}, accept=CA_OK, idempotent=False)
        return _ca_result(call, status, body, with_authority=False)

    def regenerate_certificates(self) -> CaCallResult:
        """``POST /api/v0/certificate_authorities/active/regenerate``: re-issue non-configurable leaves."""
        call = "regenerate non-configurable certificates"
        status, body = self._call(call, "POST", _Endpoints.CA_REGENERATE, json_body={}, accept=CA_OK, idempotent=False)
        return _ca_result(call, status, body, with_authority=False)

    def delete_certificate_authority(self, guid: str) -> CaCallResult:
        """``DELETE /api/v0/certificate_authorities/{guid}`` (Ops Manager refuses the active CA)."""
        call = "delete certificate authority"
        path = _Endpoints.CA_ONE.format(guid=_check_guid(guid, "CA guid"))
        status, body = self._call(call, "DELETE", path, accept=CA_OK, idempotent=False)
        return _ca_result(call, status, body, with_authority=False)

    # -- installations (Apply Changes) ---------------------------------------------------------

    def apply_changes(self, options: ApplyChangesOptions) -> int:
        """``POST /api/v0/installations``: start an Apply Changes and return its id."""
        call = "start Apply Changes"
        _, body = self._call(call, "POST", _Endpoints.INSTALLATIONS, json_body=options.request_body(), idempotent=False)
        install = body.get("install") if isinstance(body, dict) else None
        if not isinstance(install, dict) or not isinstance(install.get("id"), int):
            raise OpsManagerResponseError(f"{call}: the response has no install.id; Ops Manager sent {str(body)[:200]!r}")
        return install["id"]

    def list_installations(self) -> list[Installation]:
        """``GET /api/v0/installations``, newest first."""
        call = "list installations"
        _, body = self._call(call, "GET", _Endpoints.INSTALLATIONS, idempotent=True)
        return [Installation.from_api(i, call) for i in _list_field(body, "installations", call)]

    def get_installation_status(self, installation_id: int) -> InstallationStatus:
        """``GET /api/v0/installations/{id}``."""
        call = f"get status of installation {installation_id}"
        _, body = self._call(call, "GET", _Endpoints.INSTALLATION.format(id=int(installation_id)), idempotent=True)
        return _installation_status(call, body)

    def get_installation_logs(self, installation_id: int) -> str:
        """``GET /api/v0/installations/{id}/logs``: the whole log so far."""
        call = f"get logs of installation {installation_id}"
        _, body = self._call(call, "GET", _Endpoints.INSTALLATION_LOGS.format(id=int(installation_id)), idempotent=True)
        return _installation_logs(call, body)

    # -- staged and deployed state -------------------------------------------------------------

    def list_pending_changes(self) -> list[PendingChange]:
        """``GET /api/v0/staged/pending_changes``."""
        call = "list pending changes"
        _, body = self._call(call, "GET", _Endpoints.PENDING_CHANGES, idempotent=True)
        return [PendingChange.from_api(p, call) for p in _list_field(body, "product_changes", call)]

    def list_staged_products(self) -> list[Product]:
        """``GET /api/v0/staged/products``."""
        call = "list staged products"
        return _product_list(self._call(call, "GET", _Endpoints.STAGED_PRODUCTS, idempotent=True)[1], call)

    def list_deployed_products(self) -> list[Product]:
        """``GET /api/v0/deployed/products``."""
        call = "list deployed products"
        return _product_list(self._call(call, "GET", _Endpoints.DEPLOYED_PRODUCTS, idempotent=True)[1], call)

    def list_deployed_certificates(self, expires_within: str | None = None) -> list[DeployedCertificate]:
        """``GET /api/v0/deployed/certificates[?expires_within=3m]``."""
        call = "list deployed certificates"
        params = None
        if expires_within is not None:
            if not EXPIRES_WITHIN_PATTERN.match(expires_within):
                raise OpsManagerConfigError(
                    f"expires_within {expires_within!r} must be a number and a unit d, w, m or y, e.g. 3m"
                )
            params = {"expires_within": expires_within}
        _, body = self._call(call, "GET", _Endpoints.DEPLOYED_CERTIFICATES, params=params, idempotent=True)
        return [DeployedCertificate.from_api(c, call) for c in _list_field(body, "certificates", call)]

    def get_deployed_certificate_pem(self, product_guid: str, property_reference: str) -> str:
        """``GET /api/v0/deployed/products/{guid}/credentials/{reference}``: a deployed certificate's PEM."""
        call = f"get deployed credential {property_reference} of {product_guid}"
        if not property_reference.startswith(".") or "/" in property_reference:
            raise OpsManagerConfigError(f"{property_reference!r} is not a property reference like .properties.x")
        path = _Endpoints.DEPLOYED_CREDENTIAL.format(guid=_check_guid(product_guid, "product guid"), reference=property_reference)
        _, body = self._call(call, "GET", path, idempotent=True)
        try:
            return str(body["credential"]["value"]["cert_pem"])
        except (KeyError, TypeError):
            raise OpsManagerResponseError(f"{call}: the response has no credential.value.cert_pem") from None

    def get_version(self) -> tuple[int, int] | None:
        """``GET /api/v0/info`` (no token needed): Ops Manager's (major, minor), None when it does not say."""
        _, body = self._call("get Ops Manager version", "GET", _Endpoints.INFO, idempotent=True, authenticated=False)
        version = body.get("info", {}).get("version") if isinstance(body, dict) and isinstance(body.get("info"), dict) else None
        match = re.match(r"^(\d+)\.(\d+)", version) if isinstance(version, str) else None
        return (int(match.group(1)), int(match.group(2))) if match else None

    def set_recreate_vms_on_next_deploy(self) -> None:
        """``PUT /api/v0/staged/director/properties``: recreate every VM at the next Apply Changes (as om).

        The director's own flag exists from Ops Manager 2.9: om sends both flags to 2.9 and later,
        only ``bosh_recreate_on_next_deploy`` to older ones (and when the version is unknown).
        """
        call = "set recreate VMs on next deploy"
        flags = {"bosh_recreate_on_next_deploy": True}
        version = self.get_version()
        if version is not None and version >= (2, 9):
            flags["bosh_director_recreate_on_next_deploy"] = True
        else:
            self.log.info("Ops Manager %s is older than 2.9 or did not say: recreating product VMs only (as om)",
                          ".".join(map(str, version)) if version else "version")
        body = {"director_configuration": flags}
        # Setting the same flags twice has the same effect, so this write may be retried.
        self._call(call, "PUT", _Endpoints.DIRECTOR_PROPERTIES, json_body=body, idempotent=True)

    def test_connection(self) -> tuple[bool, str]:
        """Used by the connection form's Test button: a token and one read."""
        try:
            cas = self.list_certificate_authorities()
        except Exception as err:  # the form shows the message
            return False, str(err)
        return True, f"Connected to {self.settings.base_url}: {len(cas)} certificate authorities"


class OpsManagerAsyncHook(HttpAsyncHook):
    """The async twin of :class:`OpsManagerHook` for triggers: reads only, same connection rules.

    It resolves the connection with ``aget_connection`` (never the sync path inside the event loop),
    fetches and refreshes its own UAA token, and retries transient failures with backoff.
    """

    conn_name_attr = "opsman_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "VMware Tanzu Ops Manager"

    def __init__(self, opsman_conn_id: str = DEFAULT_CONN_ID) -> None:
        super().__init__(method="GET", http_conn_id=opsman_conn_id)
        self.opsman_conn_id = opsman_conn_id
        self._settings: OpsManagerConnectionSettings | None = None
        self._token: _Token | None = None

    async def get_settings(self) -> OpsManagerConnectionSettings:
        if self._settings is None:
            conn = await aget_connection(self, self.opsman_conn_id)
            self._settings = OpsManagerConnectionSettings.from_connection(conn)
            if self._settings.skip_ssl_validation:
                self.log.warning("TLS certificate validation for Ops Manager %s is OFF", self._settings.base_url)
        return self._settings

    def _timeout(self, settings: OpsManagerConnectionSettings) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(sock_connect=settings.connect_timeout, total=settings.request_timeout)

    async def _access_token(self, session: aiohttp.ClientSession, settings: OpsManagerConnectionSettings) -> str:
        if self._token is not None and self._token.is_fresh():
            return self._token.value
        url, (user, secret), form = settings.token_request()
        try:
            async with session.post(
                url, data=form, headers={"Accept": "application/json", "Authorization": _basic_auth(user, secret)},
                ssl=settings.ssl_context(), timeout=self._timeout(settings),
            ) as response:
                text = await response.text()
                status = response.status
        except aiohttp.ClientConnectorCertificateError as err:
            raise _tls_error(settings, err) from None
        except (aiohttp.ClientError, TimeoutError) as err:
            if _unresolvable(err):
                raise _unresolvable_error(settings, url) from None
            raise OpsManagerTransientError("get UAA token", "POST", url, None, [type(err).__name__]) from None
        if status in TRANSIENT_STATUSES:
            raise OpsManagerTransientError("get UAA token", "POST", url, status, [])
        if status != 200:
            body = _decode("get UAA token", "POST", url, status, "", text) if text.strip() else {}
            raise _token_refused(settings, url, status, "; ".join(_error_messages(body)) or f"HTTP {status}")
        self._token = _Token.from_response(_decode("get UAA token", "POST", url, status, "", text), url)
        return self._token.value

    async def _get(self, call: str, path: str) -> Any:
        """One GET with token refresh on 401 and retries with backoff on transient failures."""
        settings = await self.get_settings()
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(settings.read_attempts),
            wait=_backoff(settings),
            retry=tenacity.retry_if_exception_type(OpsManagerTransientError),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._get_once(call, path, settings)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _get_once(self, call: str, path: str, settings: OpsManagerConnectionSettings) -> Any:
        async with aiohttp.ClientSession() as session:
            for refreshed in (False, True):
                token = await self._access_token(session, settings)
                try:
                    async with session.get(
                        settings.base_url + path,
                        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                                 "Accept": "application/json"},
                        ssl=settings.ssl_context(), timeout=self._timeout(settings), allow_redirects=False,
                    ) as response:
                        status = response.status
                        content_type = response.headers.get("Content-Type", "")
                        text = await response.text()
                except aiohttp.ClientConnectorCertificateError as err:
                    raise _tls_error(settings, err) from None
                except (aiohttp.ClientError, TimeoutError) as err:
                    if _unresolvable(err):
                        raise _unresolvable_error(settings, settings.base_url) from None
                    transient = OpsManagerTransientError(call, "GET", path, None, [type(err).__name__])
                    transient.timed_out = isinstance(err, TimeoutError)
                    raise transient from None
                if status == 401 and not refreshed:
                    self._token = None
                    continue
                break
        body = _decode(call, "GET", path, status, content_type, text)
        _raise_for_status(call, "GET", path, status, body, (200,))
        return body

    async def stream_current_log(self, idle_timeout: float = 600.0) -> AsyncIterator[tuple[str, str]]:
        """``GET /api/v0/installations/current_log``: the running installation's log as Server-Sent Events.

        Yields ``(event, data)``; log lines have the event ``""``. Ends after the ``exit`` event.
        Each log line crosses the network once, instead of the whole log on every poll.
        Raises :class:`OpsManagerNotFoundError` where Ops Manager has no such endpoint (older versions).

        :param idle_timeout: seconds without any byte before the stream counts as broken.
        """
        call, path = "stream the current installation log", _Endpoints.CURRENT_LOG
        settings = await self.get_settings()
        timeout = aiohttp.ClientTimeout(sock_connect=settings.connect_timeout, sock_read=idle_timeout)
        async with aiohttp.ClientSession() as session:
            for refreshed in (False, True):
                token = await self._access_token(session, settings)
                try:
                    async with session.get(
                        settings.base_url + path,
                        headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"},
                        ssl=settings.ssl_context(), timeout=timeout, allow_redirects=False,
                    ) as response:
                        if response.status == 401 and not refreshed:
                            self._token = None
                            continue
                        if response.status != 200:
                            text = await response.text()
                            body = _decode(call, "GET", path, response.status, response.headers.get("Content-Type", ""),
                                           text, ())
                            _raise_for_status(call, "GET", path, response.status, body, (200,))
                        event, data = "", []
                        async for raw in response.content:
                            line = raw.decode("utf-8", "replace").rstrip("\r\n")
                            if line.startswith("event:"):
                                event = line[6:].strip()
                            elif line.startswith("data:"):
                                data.append(line[5:].removeprefix(" "))
                            elif not line and (event or data):
                                yield event, "\n".join(data)
                                if event == "exit":
                                    return
                                event, data = "", []
                        return
                except aiohttp.ClientConnectorCertificateError as err:
                    raise _tls_error(settings, err) from None
                except (aiohttp.ClientError, TimeoutError) as err:
                    raise OpsManagerTransientError(call, "GET", path, None, [type(err).__name__]) from None

    async def list_installations(self) -> list[Installation]:
        """``GET /api/v0/installations``, newest first."""
        call = "list installations"
        body = await self._get(call, _Endpoints.INSTALLATIONS)
        return [Installation.from_api(i, call) for i in _list_field(body, "installations", call)]

    async def get_installation_status(self, installation_id: int) -> InstallationStatus:
        """``GET /api/v0/installations/{id}``."""
        call = f"get status of installation {installation_id}"
        return _installation_status(call, await self._get(call, _Endpoints.INSTALLATION.format(id=int(installation_id))))

    async def get_installation_logs(self, installation_id: int) -> str:
        """``GET /api/v0/installations/{id}/logs``: the whole log so far."""
        call = f"get logs of installation {installation_id}"
        path = _Endpoints.INSTALLATION_LOGS.format(id=int(installation_id))
        return _installation_logs(call, await self._get(call, path))
