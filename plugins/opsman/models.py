"""Typed views of Ops Manager API responses (``docs/ops-manager-api.md``).

Parsing is strict about the fields the rotation relies on (a missing ``guid`` or ``active`` is an
error that names the call) and lenient about everything else, because newer Ops Manager versions
add fields.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opsman.exceptions import OpsManagerResponseError

if TYPE_CHECKING:
    from cryptography import x509


def _require(body: Any, key: str, call: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(body, dict) or key not in body:
        raise OpsManagerResponseError(
            f"{call}: the response has no '{key}' field; Ops Manager sent {_excerpt(body)}"
        )
    value = body[key]
    if not isinstance(value, kind):
        raise OpsManagerResponseError(
            f"{call}: field '{key}' is {type(value).__name__}, expected {_type_names(kind)}; got {_excerpt(value)}"
        )
    return value


def _type_names(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _excerpt(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def parse_api_time(value: str | None) -> dt.datetime | None:
    """Parse an Ops Manager date: RFC 3339 (``2017-05-24T23:38:37.316Z``) or date-only (``2017-01-19``).

    Date-only values become midnight UTC. om parses only RFC 3339 and silently picks an empty CA
    when Ops Manager sends dates (docs/ops-manager-api.md §2.5); we accept both and let the caller refuse
    when nothing parses.
    """
    if value is None or value == "":
        return None
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def certificate_fingerprint(cert_pem: str) -> str | None:
    """SHA-256 of a certificate's DER: a CA's identity, whatever dates Ops Manager records for it."""
    from cryptography import x509  # when a task reads certificates: parsing the DAG file does not need it
    from cryptography.hazmat.primitives import serialization

    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        return None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def isoformat(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z") if value else None


class InstallationStatus(enum.StrEnum):
    """Status of an Apply Changes (installation)."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"

    @classmethod
    def parse(cls, raw: str) -> InstallationStatus:
        # Older Ops Manager said "success" (docs/ops-manager-api.md §4.3). Anything unknown is treated as
        # still running, as om does: a status we do not know is never taken for success.
        if raw == "success":
            return cls.SUCCEEDED
        try:
            return cls(raw)
        except ValueError:
            return cls.RUNNING

    @property
    def is_terminal(self) -> bool:
        return self is not InstallationStatus.RUNNING

    @property
    def is_successful(self) -> bool:
        return self is InstallationStatus.SUCCEEDED


@dataclass(frozen=True)
class CertificateAuthority:
    """One root CA as listed by ``GET /api/v0/certificate_authorities``."""

    guid: str
    issuer: str
    created_on: str
    expires_on: str
    active: bool
    cert_pem: str

    @classmethod
    def from_api(cls, body: Any, call: str) -> CertificateAuthority:
        return cls(
            guid=_require(body, "guid", call, str),
            issuer=str(body.get("issuer") or ""),
            created_on=str(body.get("created_on") or ""),
            expires_on=str(body.get("expires_on") or ""),
            active=_require(body, "active", call, bool),
            cert_pem=str(body.get("cert_pem") or ""),
        )

    def _certificate(self) -> x509.Certificate | None:
        from cryptography import x509  # as in certificate_fingerprint

        try:
            return x509.load_pem_x509_certificate(self.cert_pem.encode())
        except ValueError:
            return None

    @property
    def created_at(self) -> dt.datetime | None:
        """When the CA was made: the certificate's notBefore (to the second), else ``created_on``.

        ``created_on`` may be a bare date, which cannot order two CAs made on the same day.
        """
        cert = self._certificate()
        if cert is not None:
            return cert.not_valid_before_utc
        return parse_api_time(self.created_on)

    @property
    def expires_at(self) -> dt.datetime | None:
        cert = self._certificate()
        if cert is not None:
            return cert.not_valid_after_utc
        return parse_api_time(self.expires_on)

    @property
    def fingerprint(self) -> str | None:
        return certificate_fingerprint(self.cert_pem)

    @property
    def subject_key_identifier(self) -> str | None:
        cert = self._certificate()
        if cert is None:
            return None
        from cryptography import x509

        try:
            return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
        except x509.ExtensionNotFound:
            return None

    def summary(self) -> dict[str, Any]:
        """JSON-safe description for logs and XCom (no PEM)."""
        return {
            "guid": self.guid,
            "issuer": self.issuer,
            "active": self.active,
            "created_on": self.created_on,
            "expires_on": self.expires_on,
            "created_at": isoformat(self.created_at),
            "expires_at": isoformat(self.expires_at),
        }


@dataclass(frozen=True)
class CertificateChanges:
    """The ``certificates`` object newer Ops Manager (2.10+) returns from the CA calls."""

    regenerated: tuple[dict[str, Any], ...] = ()
    excluded: tuple[dict[str, Any], ...] = ()
    regenerate_failed: tuple[dict[str, Any], ...] = ()
    updated: tuple[dict[str, Any], ...] = ()
    update_failed: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_api(cls, body: Any) -> CertificateChanges | None:
        if not isinstance(body, dict) or not isinstance(body.get("certificates"), dict):
            return None
        certs = body["certificates"]
        return cls(**{name: tuple(certs.get(name) or ()) for name in cls.__dataclass_fields__})

    @property
    def failed(self) -> tuple[dict[str, Any], ...]:
        return self.regenerate_failed + self.update_failed

    def counts(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in self.__dataclass_fields__}

    @staticmethod
    def describe(item: dict[str, Any]) -> str:
        return str(
            item.get("variable_path") or item.get("property_reference") or item.get("location") or item
        )


@dataclass(frozen=True)
class CaCallResult:
    """What a CA call (generate, create, activate, regenerate, delete) answered."""

    status: int
    warnings: tuple[str, ...] = ()
    changes: CertificateChanges | None = None
    authority: CertificateAuthority | None = None


@dataclass(frozen=True)
class Installation:
    """One Apply Changes from ``GET /api/v0/installations``."""

    id: int
    status: InstallationStatus
    user_name: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None

    @classmethod
    def from_api(cls, body: Any, call: str) -> Installation:
        raw = _require(body, "status", call, str)
        return cls(
            id=_require(body, "id", call, int),
            status=InstallationStatus.parse(raw),
            user_name=body.get("user_name"),
            started_at=parse_api_time(body.get("started_at")),
            finished_at=parse_api_time(body.get("finished_at")),
        )

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "started_at": isoformat(self.started_at),
            "finished_at": isoformat(self.finished_at),
            "duration_seconds": self.duration_seconds,
        }


@dataclass(frozen=True)
class DeployedCertificate:
    """One entry of ``GET /api/v0/deployed/certificates``."""

    issuer: str
    valid_from: dt.datetime | None
    valid_until: dt.datetime | None
    configurable: bool
    location: str
    variable_path: str | None = None
    product_guid: str | None = None
    property_reference: str | None = None
    is_ca: bool | None = None
    rotation_procedure_name: str | None = None

    @classmethod
    def from_api(cls, body: Any, call: str) -> DeployedCertificate:
        valid_until = parse_api_time(_require(body, "valid_until", call, str))
        if valid_until is None:
            raise OpsManagerResponseError(
                f"{call}: valid_until {body['valid_until']!r} is not an RFC 3339 time"
            )
        return cls(
            issuer=str(body.get("issuer") or ""),
            valid_from=parse_api_time(body.get("valid_from")),
            valid_until=valid_until,
            configurable=bool(body.get("configurable")),
            location=str(body.get("location") or ""),
            variable_path=body.get("variable_path"),
            product_guid=body.get("product_guid"),
            property_reference=body.get("property_reference"),
            is_ca=body.get("is_ca"),
            rotation_procedure_name=body.get("rotation_procedure_name"),
        )

    @property
    def name(self) -> str:
        return self.variable_path or f"{self.product_guid}{self.property_reference or ''}"


@dataclass(frozen=True)
class PendingChange:
    """One product of ``GET /api/v0/staged/pending_changes``."""

    guid: str
    action: str

    @classmethod
    def from_api(cls, body: Any, call: str) -> PendingChange:
        return cls(guid=_require(body, "guid", call, str), action=_require(body, "action", call, str))

    @property
    def is_change(self) -> bool:
        return self.action != "unchanged"


@dataclass(frozen=True)
class Product:
    """A staged or deployed product (``[{"guid", "type"}]``)."""

    guid: str
    type: str

    @classmethod
    def from_api(cls, body: Any, call: str) -> Product:
        return cls(guid=_require(body, "guid", call, str), type=_require(body, "type", call, str))


@dataclass(frozen=True)
class ApplyChangesOptions:
    """The body of ``POST /api/v0/installations`` (docs/ops-manager-api.md §4.1)."""

    deploy_products: str | tuple[str, ...] = "all"
    errands: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ignore_warnings: bool = False
    force_latest_variables: bool = False

    def request_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            # om sends ignore_warnings as the string "true"/"false" and real Ops Manager accepts
            # it; the documented type is boolean. We keep om's proven wire format.
            "ignore_warnings": "true" if self.ignore_warnings else "false",
            "force_latest_variables": self.force_latest_variables,
            "deploy_products": (
                self.deploy_products if isinstance(self.deploy_products, str) else list(self.deploy_products)
            ),
        }
        if self.errands:
            body["errands"] = self.errands
        return body


def new_log_text(logs: str, offset: int, final: bool = False) -> tuple[str, int]:
    """The part of a cumulative installation log not seen yet, and the new offset.

    Ops Manager's log endpoint returns the whole log so far. While the installation runs only
    complete lines are returned, so a line being written while we read is printed once, whole, on a
    later read; ``final`` (the installation has ended) returns the rest, a last line without a
    newline included. A log shorter than the offset (Ops Manager restarted the log) yields nothing,
    as om does.
    """
    if len(logs) <= offset:
        return "", offset
    if final:
        return logs[offset:], len(logs)
    end = logs.rfind("\n", offset) + 1
    if end <= offset:
        return "", offset
    return logs[offset:end], end


def log_tail(logs: str, lines: int = 40) -> str:
    return "\n".join(logs.rstrip("\n").splitlines()[-lines:])
