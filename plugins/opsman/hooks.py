"""The only module that talks to Ops Manager: a sync hook for tasks and an async twin for triggers.

Both read the same connection (:mod:`opsman.connection`), send the same endpoint requests
(:mod:`opsman.endpoints`) under the same transport rules (:mod:`opsman.transport`): this module only
does the I/O, with requests (through HttpHook's session) and aiohttp.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import AsyncIterator
from functools import cached_property
from typing import Any, TypeVar

import aiohttp
import requests
import tenacity
from airflow.providers.http.hooks.http import HttpAsyncHook, HttpHook

from opsman import endpoints
from opsman.compat import aget_connection
from opsman.connection import CONN_TYPE, OpsManagerConnectionSettings
from opsman.constants import DEFAULT_CONN_ID
from opsman.endpoints import Request, major_minor
from opsman.models import (
    ApplyChangesOptions,
    CaCallResult,
    CertificateAuthority,
    DeployedCertificate,
    Installation,
    InstallationStatus,
    PendingChange,
    Product,
)
from opsman.responses import Answer, sse_events
from opsman.transport import (
    NETWORK_ERRORS,
    TOKEN_CALL,
    TokenKeeper,
    UaaToken,
    api_headers,
    basic_auth,
    network_error,
    retry_policy,
    token_from_answer,
)

__all__ = ["OpsManagerAsyncHook", "OpsManagerConnectionSettings", "OpsManagerHook", "major_minor"]

T = TypeVar("T")


class OpsManagerHook(HttpHook):
    """Calls the Ops Manager API for tasks: one method per endpoint, typed results.

    One transport (:meth:`_call`) fetches and refreshes the UAA token, retries reads on connection
    errors, timeouts and 502/503/504 with exponential backoff, and never re-sends a write whose
    outcome is unknown: it raises :class:`OpsManagerTransientError` and the caller decides from state.
    (A write UAA gave no token for was never sent: it waits for a token like a read.)

    :param opsman_conn_id: Airflow connection of type ``opsman``.
    """

    conn_name_attr = "opsman_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "VMware Tanzu Ops Manager"

    def __init__(self, opsman_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any) -> None:
        super().__init__(method="GET", http_conn_id=opsman_conn_id, **kwargs)
        self.opsman_conn_id = opsman_conn_id
        self._tokens = TokenKeeper(self.log)
        self._session: requests.Session | None = None
        # One conversation with Ops Manager at a time, even if a caller shares the hook across threads.
        self._lock = threading.RLock()

    @cached_property
    def settings(self) -> OpsManagerConnectionSettings:
        return OpsManagerConnectionSettings.from_connection(
            self.get_connection(self.opsman_conn_id), self.log
        )

    def get_conn(self, headers: dict[Any, Any] | None = None, extra_options: dict[str, Any] | None = None):
        """A requests session with Ops Manager's TLS settings and no connection extras as headers.

        ``extra_options`` is HttpHook's signature (its ``run`` passes them); the options that matter
        come from the validated connection settings instead.
        """
        if self._session is None:
            settings = self.settings
            self.base_url = settings.base_url
            session = requests.Session()
            session.verify = settings.requests_verify()
            overrides = [name for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE") if os.environ.get(name)]
            if overrides and session.verify:
                self.log.debug(
                    "%s not used for Ops Manager: it trusts the system store plus extra ca_cert", overrides
                )
            self._session = self._configure_session_from_mount_adapters(session)
        if headers:
            self._session.headers.update(headers)
        return self._session

    # -- transport -----------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        session = self.get_conn()
        return session.request(
            method,
            url,
            timeout=(self.settings.connect_timeout, self.settings.request_timeout),
            # Explicit: requests lets REQUESTS_CA_BUNDLE override a session's verify setting.
            verify=session.verify,
            **kwargs,
        )

    def _access_token(self) -> str:
        return self._tokens.fresh() or self._tokens.keep(self._fetch_token())

    def granted_scopes(self) -> frozenset[str] | None:
        """The UAA groups of the connection's token (fetching one if needed); None when UAA does not say."""
        with self._lock:
            self._access_token()
            assert self._tokens.token is not None
            return self._tokens.token.scopes

    def _fetch_token(self) -> UaaToken:
        url, basic, form = self.settings.token_request()
        try:
            response = self._send("POST", url, data=form, auth=basic, headers={"Accept": "application/json"})
        except NETWORK_ERRORS as err:
            raise network_error(self.settings, TOKEN_CALL, "POST", url, err) from None
        content_type = response.headers.get("Content-Type", "")
        return token_from_answer(self.settings, url, response.status_code, content_type, response.text)

    def _call(self, request: Request[T]) -> T:
        """Send one API request (retried as :func:`opsman.transport.retry_policy` says); its typed result."""
        policy = retry_policy(self.settings, request.call, self.log, idempotent=request.idempotent)
        with self._lock:
            return tenacity.Retrying(**policy)(self._send_once, request)

    def _send_once(self, request: Request[T]) -> T:
        for rejected in self._tokens.sends(request.call):
            token = self._access_token() if request.authenticated else None
            try:
                response = self._send(
                    request.method,
                    self.settings.base_url + request.path,
                    headers=api_headers(token),
                    params=request.params,
                    data=json.dumps(request.json_body) if request.json_body is not None else None,
                    allow_redirects=False,
                )
            except NETWORK_ERRORS as err:
                raise network_error(self.settings, request.call, request.method, request.path, err) from None
            if not rejected(response.status_code):
                break
        return request.read(response.status_code, response.headers.get("Content-Type", ""), response.text)

    # -- certificate authorities ---------------------------------------------------------------

    def list_certificate_authorities(self) -> list[CertificateAuthority]:
        """``GET /api/v0/certificate_authorities``."""
        return self._call(endpoints.list_certificate_authorities())

    def generate_certificate_authority(self) -> CaCallResult:
        """``POST /api/v0/certificate_authorities/generate``: a new CA, inactive."""
        return self._call(endpoints.generate_certificate_authority())

    def create_certificate_authority(self, cert_pem: str, private_key_pem: str) -> CaCallResult:
        """``POST /api/v0/certificate_authorities``: upload a CA certificate and its private key."""
        return self._call(endpoints.create_certificate_authority(cert_pem, private_key_pem))

    def activate_certificate_authority(self, guid: str) -> CaCallResult:
        """``POST /api/v0/certificate_authorities/{guid}/activate`` (deactivates all others)."""
        return self._call(endpoints.activate_certificate_authority(guid))

    def regenerate_certificates(self) -> CaCallResult:
        """``POST /api/v0/certificate_authorities/active/regenerate``: re-issue non-configurable leaves."""
        return self._call(endpoints.regenerate_certificates())

    def delete_certificate_authority(self, guid: str) -> CaCallResult:
        """``DELETE /api/v0/certificate_authorities/{guid}`` (Ops Manager refuses the active CA)."""
        return self._call(endpoints.delete_certificate_authority(guid))

    # -- installations (Apply Changes) ---------------------------------------------------------

    def apply_changes(self, options: ApplyChangesOptions) -> int:
        """``POST /api/v0/installations``: start an Apply Changes and return its id."""
        return self._call(endpoints.apply_changes(options))

    def list_installations(self) -> list[Installation]:
        """``GET /api/v0/installations``, newest first."""
        return self._call(endpoints.list_installations())

    def get_installation_status(self, installation_id: int) -> InstallationStatus:
        """``GET /api/v0/installations/{id}``."""
        return self._call(endpoints.installation_status(installation_id))

    def get_installation_logs(self, installation_id: int) -> str:
        """``GET /api/v0/installations/{id}/logs``: the whole log so far."""
        return self._call(endpoints.installation_logs(installation_id))

    # -- staged and deployed state -------------------------------------------------------------

    def list_pending_changes(self) -> list[PendingChange]:
        """``GET /api/v0/staged/pending_changes``."""
        return self._call(endpoints.list_pending_changes())

    def list_staged_products(self) -> list[Product]:
        """``GET /api/v0/staged/products``."""
        return self._call(endpoints.list_products("staged"))

    def list_deployed_products(self) -> list[Product]:
        """``GET /api/v0/deployed/products``."""
        return self._call(endpoints.list_products("deployed"))

    def list_deployed_certificates(self, expires_within: str | None = None) -> list[DeployedCertificate]:
        """``GET /api/v0/deployed/certificates[?expires_within=3m]``."""
        return self._call(endpoints.list_deployed_certificates(expires_within))

    def get_deployed_certificate_pem(self, product_guid: str, property_reference: str) -> str:
        """``GET /api/v0/deployed/products/{guid}/credentials/{reference}``: a deployed certificate's PEM."""
        return self._call(endpoints.deployed_certificate_pem(product_guid, property_reference))

    def get_version(self) -> str | None:
        """``GET /api/v0/info`` (no token needed): Ops Manager's version, e.g. ``2.10.1-build.5``; None if absent."""
        return self._call(endpoints.version())

    def set_recreate_vms_on_next_deploy(self) -> None:
        """``PUT /api/v0/staged/director/properties``: recreate every VM at the next Apply Changes (as om).

        The director's own flag exists from Ops Manager 2.9: om sends both flags to 2.9 and later,
        only ``bosh_recreate_on_next_deploy`` to older ones (and when the version is unknown).
        """
        flags = {"bosh_recreate_on_next_deploy": True}
        version = major_minor(self.get_version())
        if version is not None and version >= (2, 9):
            flags["bosh_director_recreate_on_next_deploy"] = True
        else:
            self.log.info(
                "Ops Manager %s is older than 2.9 or did not say: recreating product VMs only (as om)",
                ".".join(map(str, version)) if version else "version",
            )
        self._call(endpoints.set_recreate_vms_on_next_deploy(flags))

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
        self._tokens = TokenKeeper(self.log)

    async def get_settings(self) -> OpsManagerConnectionSettings:
        if self._settings is None:
            conn = await aget_connection(self, self.opsman_conn_id)
            self._settings = OpsManagerConnectionSettings.from_connection(conn, self.log)
        return self._settings

    def _timeout(self, settings: OpsManagerConnectionSettings) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(sock_connect=settings.connect_timeout, total=settings.request_timeout)

    async def _access_token(
        self, session: aiohttp.ClientSession, settings: OpsManagerConnectionSettings
    ) -> str:
        return self._tokens.fresh() or self._tokens.keep(await self._fetch_token(session, settings))

    async def _fetch_token(
        self, session: aiohttp.ClientSession, settings: OpsManagerConnectionSettings
    ) -> UaaToken:
        url, (user, secret), form = settings.token_request()
        try:
            async with session.post(
                url,
                data=form,
                headers={"Accept": "application/json", "Authorization": basic_auth(user, secret)},
                ssl=settings.ssl_context(),
                timeout=self._timeout(settings),
            ) as response:
                text = await response.text()
                return token_from_answer(
                    settings, url, response.status, response.headers.get("Content-Type", ""), text
                )
        except NETWORK_ERRORS as err:
            raise network_error(settings, TOKEN_CALL, "POST", url, err) from None

    async def _call(self, request: Request[T]) -> T:
        """Send one API request (retried as :func:`opsman.transport.retry_policy` says); its typed result."""
        settings = await self.get_settings()
        policy = retry_policy(settings, request.call, self.log, idempotent=request.idempotent)
        async for attempt in tenacity.AsyncRetrying(**policy):
            with attempt:
                return await self._send_once(request, settings)
        raise AssertionError("unreachable: AsyncRetrying returns or raises")  # pragma: no cover

    async def _send_once(self, request: Request[T], settings: OpsManagerConnectionSettings) -> T:
        async with aiohttp.ClientSession() as session:
            for rejected in self._tokens.sends(request.call):
                token = await self._access_token(session, settings) if request.authenticated else None
                try:
                    async with session.request(
                        request.method,
                        settings.base_url + request.path,
                        headers=api_headers(token),
                        params=request.params,
                        data=json.dumps(request.json_body) if request.json_body is not None else None,
                        ssl=settings.ssl_context(),
                        timeout=self._timeout(settings),
                        allow_redirects=False,
                    ) as response:
                        status, text = response.status, await response.text()
                        content_type = response.headers.get("Content-Type", "")
                except NETWORK_ERRORS as err:
                    raise network_error(settings, request.call, request.method, request.path, err) from None
                if not rejected(status):
                    break
        return request.read(status, content_type, text)

    async def stream_current_log(self, idle_timeout: float = 600.0) -> AsyncIterator[tuple[str, str]]:
        """``GET /api/v0/installations/current_log``: the running installation's log as Server-Sent Events.

        Yields ``(event, data)``; log lines have the event ``""``. Ends after the ``exit`` event.
        Each log line crosses the network once, instead of the whole log on every poll.
        Raises :class:`OpsManagerNotFoundError` where Ops Manager has no such endpoint (older versions).

        :param idle_timeout: seconds without any byte before the stream counts as broken.
        """
        call, path = "stream the current installation log", endpoints.Paths.CURRENT_LOG
        settings = await self.get_settings()
        timeout = aiohttp.ClientTimeout(sock_connect=settings.connect_timeout, sock_read=idle_timeout)
        async with aiohttp.ClientSession() as session:
            for rejected in self._tokens.sends(call):
                token = await self._access_token(session, settings)
                headers = {**api_headers(token), "Accept": "text/event-stream"}
                try:
                    async with session.get(
                        settings.base_url + path,
                        headers=headers,
                        ssl=settings.ssl_context(),
                        timeout=timeout,
                        allow_redirects=False,
                    ) as response:
                        if rejected(response.status):
                            continue
                        if response.status != 200:
                            content_type = response.headers.get("Content-Type", "")
                            text = await response.text()
                            Answer(call, "GET", path, response.status, content_type, text).accepted_body()
                        async for event, data in sse_events(response.content):
                            yield event, data
                            if event == "exit":
                                return
                        return
                except NETWORK_ERRORS as err:
                    raise network_error(settings, call, "GET", path, err) from None

    async def list_installations(self) -> list[Installation]:
        """``GET /api/v0/installations``, newest first."""
        return await self._call(endpoints.list_installations())

    async def get_installation_status(self, installation_id: int) -> InstallationStatus:
        """``GET /api/v0/installations/{id}``."""
        return await self._call(endpoints.installation_status(installation_id))

    async def get_installation_logs(self, installation_id: int) -> str:
        """``GET /api/v0/installations/{id}/logs``: the whole log so far."""
        return await self._call(endpoints.installation_logs(installation_id))
