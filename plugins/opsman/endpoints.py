"""Each Ops Manager endpoint the hooks call, defined once for both: what to send, and how the answer
becomes a typed result (docs/ops-manager-api.md §2-§5). No I/O: the hooks send the requests."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from opsman.constants import EXPIRES_WITHIN_PATTERN
from opsman.exceptions import OpsManagerConfigError, OpsManagerResponseError
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
from opsman.responses import Answer

T = TypeVar("T")
#: The CA calls also answer 207 Multi-Status with warnings (docs/ops-manager-api.md §0).
CA_OK = (200, 207)
GUID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Paths:
    """Endpoint paths, one place (docs/ops-manager-api.md §2-§5)."""

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


@dataclass(frozen=True)
class Request(Generic[T]):
    """One call of one endpoint: what to send, which answers are success, and the typed result."""

    call: str  # what the call does, in words, for logs and errors
    method: str
    path: str
    result: Callable[[int, Any], T] = field(repr=False)  # (status, decoded body) -> result
    json_body: Any = None
    params: dict[str, str] | None = None
    accept: tuple[int, ...] = (200,)
    #: Safe to send again when its outcome is unknown: reads, and writes whose repeat has the same effect.
    #: Off unless said: a write sent twice may act twice.
    idempotent: bool = False
    authenticated: bool = True

    def read(self, status: int, content_type: str, text: str) -> T:
        """The typed result of Ops Manager's answer; an answer the call does not accept raises its error."""
        answer = Answer(self.call, self.method, self.path, status, content_type, text)
        return self.result(status, answer.accepted_body(self.accept))


def _read(call: str, path: str, result: Callable[[Any], T], **options: Any) -> Request[T]:
    return Request(call, "GET", path, lambda _status, body: result(body), idempotent=True, **options)


def _listed(call: str, key: str, parse: Callable[[Any, str], T]) -> Callable[[Any], list[T]]:
    """A result made of the ``key`` list of the body, each item parsed."""

    def result(body: Any) -> list[T]:
        value = body.get(key) if isinstance(body, dict) else None
        if not isinstance(value, list):
            raise OpsManagerResponseError(
                f"{call}: the response has no '{key}' list; Ops Manager sent {str(body)[:200]!r}"
            )
        return [parse(item, call) for item in value]

    return result


def _check_guid(guid: str, what: str) -> str:
    if not isinstance(guid, str) or not GUID_PATTERN.match(guid):
        raise OpsManagerConfigError(f"{what} {guid!r} is not a GUID as Ops Manager prints them")
    return guid


# -- certificate authorities ------------------------------------------------------------------------


def list_certificate_authorities() -> Request[list[CertificateAuthority]]:
    call = "list certificate authorities"
    return _read(call, Paths.CAS, _listed(call, "certificate_authorities", CertificateAuthority.from_api))


def _ca_write(
    call: str, method: str, path: str, json_body: Any, *, new_authority: bool
) -> Request[CaCallResult]:
    def result(status: int, body: Any) -> CaCallResult:
        warnings = tuple(str(w) for w in body.get("warnings") or ()) if isinstance(body, dict) else ()
        return CaCallResult(
            status=status,
            warnings=warnings,
            changes=CertificateChanges.from_api(body),
            authority=CertificateAuthority.from_api(body, call) if new_authority else None,
        )

    return Request(call, method, path, result, json_body=json_body, accept=CA_OK)


def generate_certificate_authority() -> Request[CaCallResult]:
    return _ca_write("generate certificate authority", "POST", Paths.CA_GENERATE, {}, new_authority=True)


def create_certificate_authority(cert_pem: str, private_key_pem: str) -> Request[CaCallResult]:
    body = {"cert_pem": cert_pem, "private_key_pem": private_key_pem}
    return _ca_write("create certificate authority", "POST", Paths.CAS, body, new_authority=True)


def activate_certificate_authority(guid: str) -> Request[CaCallResult]:
    path = Paths.CA_ACTIVATE.format(guid=_check_guid(guid, "CA guid"))
    return _ca_write("activate certificate authority", "POST", path, {}, new_authority=False)


def regenerate_certificates() -> Request[CaCallResult]:
    call = "regenerate non-configurable certificates"
    return _ca_write(call, "POST", Paths.CA_REGENERATE, {}, new_authority=False)


def delete_certificate_authority(guid: str) -> Request[CaCallResult]:
    path = Paths.CA_ONE.format(guid=_check_guid(guid, "CA guid"))
    return _ca_write("delete certificate authority", "DELETE", path, None, new_authority=False)


# -- installations (Apply Changes) -----------------------------------------------------------------


def apply_changes(options: ApplyChangesOptions) -> Request[int]:
    call = "start Apply Changes"

    def installation_id(_status: int, body: Any) -> int:
        install = body.get("install") if isinstance(body, dict) else None
        if not isinstance(install, dict) or not isinstance(install.get("id"), int):
            raise OpsManagerResponseError(
                f"{call}: the response has no install.id; Ops Manager sent {str(body)[:200]!r}"
            )
        return install["id"]

    body = options.request_body()
    return Request(call, "POST", Paths.INSTALLATIONS, installation_id, json_body=body)


def list_installations() -> Request[list[Installation]]:
    call = "list installations"
    return _read(call, Paths.INSTALLATIONS, _listed(call, "installations", Installation.from_api))


def installation_status(installation_id: int) -> Request[InstallationStatus]:
    call = f"get status of installation {installation_id}"

    def status(body: Any) -> InstallationStatus:
        return InstallationStatus.parse(_string_field(call, body, "status"))

    return _read(call, Paths.INSTALLATION.format(id=int(installation_id)), status)


def installation_logs(installation_id: int) -> Request[str]:
    call = f"get logs of installation {installation_id}"
    path = Paths.INSTALLATION_LOGS.format(id=int(installation_id))
    return _read(call, path, lambda body: _string_field(call, body, "logs"))


def _string_field(call: str, body: Any, key: str) -> str:
    if not isinstance(body, dict) or not isinstance(body.get(key), str):
        raise OpsManagerResponseError(
            f"{call}: the response has no '{key}' string; Ops Manager sent {str(body)[:200]!r}"
        )
    return body[key]


# -- staged and deployed state ---------------------------------------------------------------------


def list_pending_changes() -> Request[list[PendingChange]]:
    call = "list pending changes"
    return _read(call, Paths.PENDING_CHANGES, _listed(call, "product_changes", PendingChange.from_api))


def list_products(stage: str) -> Request[list[Product]]:
    """``stage`` is ``staged`` or ``deployed``."""
    call = f"list {stage} products"

    def products(body: Any) -> list[Product]:
        if not isinstance(body, list):
            raise OpsManagerResponseError(
                f"{call}: expected a JSON list of products, got {str(body)[:200]!r}"
            )
        return [Product.from_api(p, call) for p in body]

    path = {"staged": Paths.STAGED_PRODUCTS, "deployed": Paths.DEPLOYED_PRODUCTS}[stage]
    return _read(call, path, products)


def list_deployed_certificates(expires_within: str | None) -> Request[list[DeployedCertificate]]:
    call = "list deployed certificates"
    params = None
    if expires_within is not None:
        if not EXPIRES_WITHIN_PATTERN.match(expires_within):
            raise OpsManagerConfigError(
                f"expires_within {expires_within!r} must be a number and a unit d, w, m or y, e.g. 3m"
            )
        params = {"expires_within": expires_within}
    parse = _listed(call, "certificates", DeployedCertificate.from_api)
    return _read(call, Paths.DEPLOYED_CERTIFICATES, parse, params=params)


def deployed_certificate_pem(product_guid: str, property_reference: str) -> Request[str]:
    call = f"get deployed credential {property_reference} of {product_guid}"
    if not property_reference.startswith(".") or "/" in property_reference:
        raise OpsManagerConfigError(f"{property_reference!r} is not a property reference like .properties.x")
    path = Paths.DEPLOYED_CREDENTIAL.format(
        guid=_check_guid(product_guid, "product guid"), reference=property_reference
    )

    def cert_pem(body: Any) -> str:
        try:
            return str(body["credential"]["value"]["cert_pem"])
        except (KeyError, TypeError):
            raise OpsManagerResponseError(f"{call}: the response has no credential.value.cert_pem") from None

    return _read(call, path, cert_pem)


def version() -> Request[str | None]:
    def version_field(body: Any) -> str | None:
        info = body.get("info") if isinstance(body, dict) else None
        version = info.get("version") if isinstance(info, dict) else None
        return version if isinstance(version, str) else None

    return _read("get Ops Manager version", Paths.INFO, version_field, authenticated=False)


def major_minor(version: str | None) -> tuple[int, int] | None:
    """``(2, 10)`` from ``2.10.1-build.5``; None when the version is missing or not numeric."""
    match = re.match(r"^(\d+)\.(\d+)", version) if version else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def set_recreate_vms_on_next_deploy(flags: dict[str, bool]) -> Request[None]:
    body = {"director_configuration": flags}
    # Setting the same flags twice has the same effect, so this write may be retried.
    return Request(
        "set recreate VMs on next deploy",
        "PUT",
        Paths.DIRECTOR_PROPERTIES,
        lambda _status, _body: None,
        json_body=body,
        idempotent=True,
    )
