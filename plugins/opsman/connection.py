"""The Airflow connection of type ``opsman``, read the same way by both hooks.

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

import hashlib
import os
import re
import ssl
import tempfile
from dataclasses import dataclass, field
from logging import Logger
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import certifi
from cryptography import x509

from opsman.constants import CONNECTION_NUMBERS
from opsman.exceptions import OpsManagerConfigError

CONN_TYPE = "opsman"

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


def _as_number(extra: dict[str, Any], name: str) -> float:
    default, minimum = CONNECTION_NUMBERS[name]
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
    connect_timeout: float = CONNECTION_NUMBERS["connect_timeout"][0]
    request_timeout: float = CONNECTION_NUMBERS["request_timeout"][0]
    read_attempts: int = CONNECTION_NUMBERS["read_retries"][0]
    retry_backoff_seconds: float = CONNECTION_NUMBERS["retry_backoff_seconds"][0]

    @classmethod
    def from_connection(cls, conn: Any, log: Logger | None = None) -> OpsManagerConnectionSettings:
        """The settings of ``conn``; ``log`` (a hook's) hears when TLS validation is off."""
        settings = cls._parse(conn)
        if settings.skip_ssl_validation and log is not None:
            log.warning(
                "TLS certificate validation for Ops Manager %s is OFF (skip_ssl_validation=true on connection "
                "'%s'): credentials and tokens can be intercepted. Set extra ca_cert instead.",
                settings.base_url,
                settings.conn_id,
            )
        return settings

    @classmethod
    def _parse(cls, conn: Any) -> OpsManagerConnectionSettings:
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
            connect_timeout=_as_number(extra, "connect_timeout"),
            request_timeout=_as_number(extra, "request_timeout"),
            read_attempts=int(_as_number(extra, "read_retries")),
            retry_backoff_seconds=_as_number(extra, "retry_backoff_seconds"),
        )

    @property
    def uses_password_grant(self) -> bool:
        # om's rule: the password grant whenever both username and password are set
        # (docs/ops-manager-api.md §1.1).
        return bool(self.username and self.password)

    def token_request(self) -> tuple[str, tuple[str, str], dict[str, str]]:
        """URL, Basic-auth pair and form of the UAA token request (docs/ops-manager-api.md §1.1)."""
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
        return (
            f"{self.uaa_url}/oauth/token",
            basic,
            {"grant_type": "client_credentials", "token_format": "jwt"},
        )

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
