"""Bring your own CA: read a corporate-PKI CA and its key from an Airflow connection and check them.

The connection (any type) holds the PEMs in its extras, named as ``om create-certificate-authority``
names its flags: ``certificate_pem`` and ``private_key_pem``. A secrets backend works the same way.
The key is registered with Airflow's secret masker and never logged, put in XCom or in an error.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from opsman.exceptions import OpsManagerConfigError
from opsman.models import certificate_fingerprint, isoformat


@dataclass(frozen=True)
class CustomCertificateAuthority:
    """A CA certificate and its private key, validated for upload to Ops Manager."""

    cert_pem: str
    private_key_pem: str = field(repr=False)

    @property
    def fingerprint(self) -> str:
        return certificate_fingerprint(self.cert_pem) or ""


def load_custom_ca(conn_id: str, *, now: dt.datetime, window_days: int) -> CustomCertificateAuthority:
    """Read and validate the CA of connection ``conn_id``; raise a clear error before any upload."""
    extra = BaseHook.get_connection(conn_id).extra_dejson or {}
    cert_pem, key_pem = extra.get("certificate_pem"), extra.get("private_key_pem")
    if key_pem:
        mask_secret(key_pem)
    where = f"connection '{conn_id}'"
    if not cert_pem or not key_pem:
        raise OpsManagerConfigError(
            f"{where} needs extras certificate_pem and private_key_pem (the CA and its key, PEM)"
        )
    return validate_custom_ca(str(cert_pem), str(key_pem), now=now, window_days=window_days, where=where)


def validate_custom_ca(
    cert_pem: str, key_pem: str, *, now: dt.datetime, window_days: int, where: str = "the custom CA"
) -> CustomCertificateAuthority:
    # Imported when a task uploads a CA: the operators import this module, and parsing the DAG file
    # does not need cryptography (bench/parse_cost.py).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except ValueError:
        raise OpsManagerConfigError(f"{where}: certificate_pem is not a PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem.encode(), password=None)
    except (ValueError, TypeError):
        # The message never repeats the key text.
        raise OpsManagerConfigError(
            f"{where}: private_key_pem is not an unencrypted PEM private key"
        ) from None
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise OpsManagerConfigError(
            f"{where}: the certificate is not a CA (basicConstraints CA:TRUE is missing)"
        )
    if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise OpsManagerConfigError(
            f"{where}: Ops Manager needs an RSA CA; this one is {type(cert.public_key()).__name__}"
        )
    if key.public_key().public_numbers() != cert.public_key().public_numbers():
        raise OpsManagerConfigError(f"{where}: the private key does not belong to the certificate")
    if cert.not_valid_before_utc > now:
        raise OpsManagerConfigError(
            f"{where}: the certificate is not valid before {isoformat(cert.not_valid_before_utc)}"
        )
    if cert.not_valid_after_utc <= now:
        raise OpsManagerConfigError(
            f"{where}: the certificate expired at {isoformat(cert.not_valid_after_utc)}"
        )
    if cert.not_valid_after_utc <= now + dt.timedelta(days=window_days):
        raise OpsManagerConfigError(
            f"{where}: the certificate expires at {isoformat(cert.not_valid_after_utc)}, within the {window_days}-day "
            "expiry window; rotating to it would leave the foundation due for another rotation"
        )
    return CustomCertificateAuthority(cert_pem=cert_pem, private_key_pem=key_pem)
