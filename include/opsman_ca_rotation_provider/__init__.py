"""Provider metadata of the ``opsman-ca-rotation`` distribution (``apache_airflow_provider`` entry point).

Airflow 3 builds its connection form from this dict alone, without importing the hook: the
connection type ``opsman`` ("VMware Tanzu Ops Manager") with its own extra fields, relabelled
standard fields and placeholders. The hook, operators and links live in ``plugins/opsman/``
(``plugins/`` is on ``sys.path`` in every Airflow component), so this package stays tiny and
imports nothing from Airflow (only the defaults table of ``opsman.constants``, which imports nothing).

The field names are the extras ``opsman.hooks.OpsManagerConnectionSettings`` reads; the UI stores
each one in the connection's Extra under that bare name.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from opsman.constants import CONNECTION_NUMBERS

DISTRIBUTION = "opsman-ca-rotation"
CONN_TYPE = "opsman"


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # imported from a source checkout
        return "0.0.0"


def _field(label: str, description: str, type_: str, **schema: Any) -> dict[str, Any]:
    return {"label": label, "description": description, "schema": {"type": [type_, "null"], **schema}}


def _number(name: str, label: str, description: str, type_: str = "number") -> dict[str, Any]:
    """A numeric extra with the default and minimum the hook applies."""
    default, minimum = CONNECTION_NUMBERS[name]
    return _field(label, description, type_, default=default, minimum=minimum)


CONN_FIELDS: dict[str, dict[str, Any]] = {
    "client_id": _field(
        "UAA client id",
        "Authenticate as this UAA client (client_credentials grant) instead of the UAA user in "
        "Login/Password. Leave empty to use the user.",
        "string",
    ),
    "client_secret": _field(
        "UAA client secret", "Secret of the UAA client above.", "string", format="password"
    ),
    "uaa_url": _field(
        "UAA URL",
        "Only if UAA is not at <Ops Manager URL>/uaa, e.g. https://uaa.example.com.",
        "string",
    ),
    "ca_cert": _field(
        "CA certificate (PEM)",
        "The CA that signed Ops Manager's TLS certificate: PEM text (-----BEGIN CERTIFICATE-----...) "
        "or the path of a PEM file on the Airflow workers and triggerer. Added to the system trust store.",
        "string",
        format="multiline",
    ),
    "skip_ssl_validation": _field(
        "Skip TLS validation",
        "Do not verify Ops Manager's TLS certificate (every run then logs a loud warning). "
        "Prefer the CA certificate above.",
        "boolean",
        default=False,
    ),
    "connect_timeout": _number(
        "connect_timeout", "Connect timeout (s)", "Seconds to wait for a TCP/TLS connection."
    ),
    "request_timeout": _number("request_timeout", "Request timeout (s)", "Seconds to wait for an answer."),
    "read_retries": _number(
        "read_retries",
        "Read attempts",
        "Attempts for reads that fail transiently (502/503/504, "
        "connection errors). Writes are never re-sent blindly.",
        "integer",
    ),
    "retry_backoff_seconds": _number(
        "retry_backoff_seconds",
        "Retry backoff (s)",
        "Backoff before the second attempt; doubles, at most 60 s.",
    ),
    "allow_http": _field(
        "Allow plain http",
        "Accept an http:// URL (sends credentials unencrypted). Never for a real foundation.",
        "boolean",
        default=False,
    ),
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    # The URL carries scheme and port; `schema` would be a URL scheme for an HTTP hook, not a DB schema.
    "hidden-fields": ["schema", "port"],
    "relabeling": {
        "host": "Ops Manager URL",
        "login": "UAA username",
        "password": "UAA password",
    },
    "placeholders": {
        "host": "https://opsman.example.com",
        "login": "admin (leave empty when using a UAA client)",
        "password": "UAA user's password",
    },
}


def get_provider_info() -> dict[str, Any]:
    """The provider-info dict Airflow's ProvidersManager reads (schema: airflow/provider_info.schema.json)."""
    return {
        "package-name": DISTRIBUTION,
        "name": "VMware Tanzu Ops Manager CA rotation",
        "description": "Rotate the root CA of VMware Tanzu Ops Manager foundations through its HTTP API.",
        "versions": [_version()],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "opsman.hooks.OpsManagerHook",
                "hook-name": "VMware Tanzu Ops Manager",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
            }
        ],
        "extra-links": [
            "opsman.links.OpsManagerInstallationLink",
            "opsman.links.OpsManagerCertificatesLink",
        ],
    }
