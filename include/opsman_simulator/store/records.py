"""The stored records of certificate authorities and leaf certificates (the PKI side of the state).

Keys are generated through ``pki.new_rsa_key`` looked up at call time, so tests can hand out keys
from a pool (RSA generation is the slow part of making a CA).
"""

from __future__ import annotations

import secrets
from typing import Any

from .. import pki

#: Generated root CAs are valid for four years, like Ops Manager's.
CA_VALIDITY_YEARS = 4


def _ca_record(
    *, issuer: str, created_at: float, expires_at: float, cert: Any, nats_cert: Any, key: Any, origin: str
) -> dict[str, Any]:
    return {
        "guid": secrets.token_hex(10),
        "issuer": issuer,
        "created_at": created_at,
        "expires_at": expires_at,
        "active": False,
        "deleted": False,
        "deleted_at": None,
        "origin": origin,
        "cert_pem": pki.cert_to_pem(cert),
        "nats_cert_pem": pki.cert_to_pem(nats_cert),
        "key_pem": pki.key_to_pem(key),
        "subject_key_identifier": pki.ski_of(cert),
    }


def new_ca_record(created_at: float, origin: str) -> dict[str, Any]:
    """A new root CA made by Ops Manager (``origin`` "initial" or "generated"), inactive."""
    key = pki.new_rsa_key()
    nb = pki.utc(created_at)
    na = pki.add_years(nb, CA_VALIDITY_YEARS)
    cert = pki.make_ca(key, pki.OPSMAN_CA_SUBJECT, nb, na)
    nats = pki.make_ca(key, pki.NATS_CA_SUBJECT, nb, na)
    return _ca_record(
        issuer="Pivotal",
        created_at=created_at,
        # The planned notAfter, to the microsecond (the certificate keeps whole seconds).
        expires_at=na.timestamp(),
        cert=cert,
        nats_cert=nats,
        key=key,
        origin=origin,
    )


def uploaded_ca_record(cert: Any, key: Any, created_at: float) -> dict[str, Any]:
    """An uploaded CA, inactive. Its issuer is the subject's organisation (else common name, else "Customer")."""
    org = cert.subject.get_attributes_for_oid(pki.NameOID.ORGANIZATION_NAME)
    cn = cert.subject.get_attributes_for_oid(pki.NameOID.COMMON_NAME)
    issuer = str(org[0].value) if org else (str(cn[0].value) if cn else "Customer")
    # ASSUMPTION: created_on = upload time, expires_on = the certificate's notAfter;
    # an uploaded CA serves as its own NATS CA.
    return _ca_record(
        issuer=issuer,
        created_at=created_at,
        expires_at=cert.not_valid_after_utc.timestamp(),
        cert=cert,
        nats_cert=cert,
        key=key,
        origin="uploaded",
    )


def set_leaf_cert(leaf: dict[str, Any], cert: Any, issuer_guid: str | None) -> None:
    leaf["cert_pem"] = pki.cert_to_pem(cert)
    leaf["issuer_ca_guid"] = issuer_guid
    leaf["authority_key_identifier"] = pki.aki_of(cert)
    leaf["issuer_dn"] = pki.openssl_oneline(cert.issuer)
    leaf["valid_from"] = cert.not_valid_before_utc.timestamp()
    leaf["valid_until"] = cert.not_valid_after_utc.timestamp()
    leaf["serial_number"] = format(cert.serial_number, "x")


def deployed_record(
    trusted_ca_guids: list[str], products: list[str], reissued: list[str], leaves: list[dict[str, Any]]
) -> dict[str, Any]:
    """What a succeeded installation deployed (an installation's ``deployed``)."""
    return {
        "trusted_ca_guids": list(trusted_ca_guids),
        "products": list(products),
        "reissued_leaves": reissued,
        "leaf_issuers": {leaf["name"]: leaf["issuer_ca_guid"] for leaf in leaves},
    }
