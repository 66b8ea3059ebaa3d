"""X.509 helpers for the simulator (pure ``cryptography``).

Two unrelated PKIs live here:

* the *simulated Ops Manager* root CAs and the leaf certificates they sign (what the API exposes);
* the *transport* PKI: a private CA plus a 127.0.0.1/localhost server certificate, used only so that
  the simulator can speak HTTPS.  It has nothing to do with the Ops Manager root CAs.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = _dt.UTC

# Real Ops Manager generates every root CA with the same subject "C=US, O=Pivotal", so only the key
# identifiers tell them apart.
OPSMAN_CA_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pivotal"),
    ]
)
NATS_CA_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pivotal"),
        x509.NameAttribute(NameOID.COMMON_NAME, "nats"),
    ]
)


def utc(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts, tz=UTC)


def add_years(d: _dt.datetime, years: int) -> _dt.datetime:
    try:
        return d.replace(year=d.year + years)
    except ValueError:  # 29 February
        return d.replace(year=d.year + years, day=28)


def new_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def key_to_pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL
        if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey))
        else serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_key(pem: str, trusted: bool = True) -> Any:
    """Load an unencrypted PEM key.  ``trusted`` (our own stored keys) skips the slow RSA checks."""
    return serialization.load_pem_private_key(
        pem.encode(), password=None, unsafe_skip_rsa_key_validation=trusted
    )


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _sig_hash(key: Any):
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def _serial() -> int:
    return x509.random_serial_number()


def ski_of(cert: x509.Certificate) -> str:
    """Hex subject key identifier (from the extension, else computed from the public key)."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest.hex()
    except x509.ExtensionNotFound:
        return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()


def aki_of(cert: x509.Certificate) -> str | None:
    try:
        kid = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None
    return kid.hex() if kid else None


def is_ca_cert(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def public_keys_match(cert: x509.Certificate, key: Any) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def openssl_oneline(name: x509.Name) -> str:
    """``/C=US/O=Pivotal`` style, as the deployed-certificates ``issuer`` field shows it."""
    short = {
        NameOID.COUNTRY_NAME: "C",
        NameOID.ORGANIZATION_NAME: "O",
        NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
        NameOID.COMMON_NAME: "CN",
        NameOID.STATE_OR_PROVINCE_NAME: "ST",
        NameOID.LOCALITY_NAME: "L",
    }
    parts = []
    for attr in name:
        parts.append(f"/{short.get(attr.oid, attr.oid.dotted_string)}={attr.value}")
    return "".join(parts)


def make_ca(
    key: Any,
    subject: x509.Name,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
) -> x509.Certificate:
    """A self-signed root CA: SHA-256, CA=true, certSign/cRLSign, SKI (and AKI = SKI)."""
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ski.digest, None, None), critical=False)
    )
    return builder.sign(key, _sig_hash(key))


def make_leaf(
    public_key: Any,
    common_name: str,
    issuer_cert: x509.Certificate,
    issuer_key: Any,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    dns_names: list[str] | None = None,
    ip_addresses: list[str] | None = None,
    server_auth: bool = True,
) -> x509.Certificate:
    """A leaf certificate signed by ``issuer_cert``; its AKI is the issuer's SKI."""
    issuer_ski = bytes.fromhex(ski_of(issuer_cert))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Pivotal"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                if server_auth
                else [ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(issuer_ski, None, None), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in (dns_names or [])]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in (ip_addresses or [])]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, _sig_hash(issuer_key))


# --------------------------------------------------------------------------------------------
# transport (HTTPS) PKI
# --------------------------------------------------------------------------------------------


def make_transport_pki(now: _dt.datetime) -> tuple[str, str, str, str]:
    """Return (ca_cert_pem, ca_key_pem, server_cert_pem, server_key_pem) for 127.0.0.1/localhost."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "opsman-simulator"),
            x509.NameAttribute(NameOID.COMMON_NAME, "opsman-simulator transport CA"),
        ]
    )
    ca = make_ca(ca_key, ca_subject, now - _dt.timedelta(days=1), now + _dt.timedelta(days=3650))
    srv_key = ec.generate_private_key(ec.SECP256R1())
    ski = bytes.fromhex(ski_of(ca))
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca.subject)
        .public_key(srv_key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - _dt.timedelta(days=1))
        .not_valid_after(now + _dt.timedelta(days=3649))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(srv_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier(ski, None, None), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert_to_pem(ca), key_to_pem(ca_key), cert_to_pem(srv), key_to_pem(srv_key)
