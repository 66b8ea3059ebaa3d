"""The verdicts on CA lists, installation histories and certificates shaped like Ops Manager's answers."""

from __future__ import annotations

import dataclasses
import datetime as dt
import types

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import certificate_authority as ca
from support import installation as install

from opsman.exceptions import RotationStateError
from opsman.models import DeployedCertificate
from opsman.verdicts import (
    SIGNED_BY_NEW_CA,
    SIGNED_BY_OLD_CA,
    UNKNOWN_ISSUER,
    ApplyChangesAction,
    apply_changes_action,
    is_newer,
    key_identifier,
    made_new_ca,
    new_ca_problems,
    old_ca_beside,
    old_ca_to_delete,
    own_procedure,
    signer_by_issue_time,
    signer_by_key_identifier,
    split_active,
)

NOW = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)
OLD = ca("0ld0000000000000000a", True, NOW - dt.timedelta(days=1200))
NEWER = ca("new0000000000000000b", False, NOW - dt.timedelta(days=1))
OLDER = ca("older00000000000000c", False, NOW - dt.timedelta(days=2000))


def activated(new=NEWER, old=OLD):
    """The same two CAs after activation: the new one active, the old one not."""
    return ca(new.guid, True, new.created_at), ca(old.guid, False, old.created_at)


class TestCertificateAuthorities:
    def test_split_active_needs_exactly_one_active_ca(self):
        assert split_active([NEWER, OLD]) == (OLD, [NEWER])
        with pytest.raises(RotationStateError, match="lists 0 active"):
            split_active([NEWER])
        with pytest.raises(RotationStateError, match="lists 2 active"):
            split_active([OLD, ca("x" * 20, True, NOW)])

    def test_newer_by_creation_time_and_no_guess_without_one(self):
        assert is_newer(NEWER, OLD) and not is_newer(OLD, NEWER)
        undated = dataclasses.replace(NEWER, created_on="")
        with pytest.raises(RotationStateError, match="cannot tell whether CA"):
            is_newer(undated, OLD)

    def test_the_one_newer_inactive_ca_is_adopted(self):
        assert made_new_ca([OLD]) is None
        assert made_new_ca([OLD, NEWER]) == NEWER

    @pytest.mark.parametrize(
        "inactive", [[OLDER], [NEWER, ca("n2" * 10, False, NOW)]], ids=["older", "two newer"]
    )
    def test_any_other_inactive_ca_is_ambiguous(self, inactive):
        with pytest.raises(RotationStateError, match="cannot decide which CA to rotate to"):
            made_new_ca([OLD, *inactive])

    def test_an_upload_adopts_only_the_ca_with_its_certificate(self, pki):
        uploaded = dataclasses.replace(NEWER, cert_pem=pki.ca_pems["new"])
        assert made_new_ca([OLD, uploaded], upload_fingerprint=uploaded.fingerprint) == uploaded
        with pytest.raises(RotationStateError, match="not the CA to upload"):
            made_new_ca([OLD, NEWER], upload_fingerprint=uploaded.fingerprint)

    def test_the_old_ca_is_the_active_one_then_after_activation_the_other_one(self):
        assert old_ca_beside([OLD, NEWER], NEWER) == OLD
        new, old = activated()
        assert old_ca_beside([new, old], new) == old
        with pytest.raises(RotationStateError, match="is active and 2 other CAs exist"):
            old_ca_beside([new, old, OLDER], new)

    def test_the_old_ca_is_deleted_only_once_the_new_one_is_active(self):
        new, old = activated()
        assert old_ca_to_delete([new, old], old.guid, new.guid) == old
        assert old_ca_to_delete([new], old.guid, new.guid) is None  # gone already
        with pytest.raises(RotationStateError, match="is not active"):
            old_ca_to_delete([OLD, NEWER], OLD.guid, NEWER.guid)
        with pytest.raises(RotationStateError, match="is missing"):
            old_ca_to_delete([OLD], OLD.guid, NEWER.guid)

    def test_never_the_new_ca_nor_the_active_ca(self):
        new, _ = activated()
        with pytest.raises(RotationStateError, match="it is the new CA"):
            old_ca_to_delete([new], new.guid, new.guid)
        other_active = ca("a" * 20, True, NOW)
        with pytest.raises(RotationStateError, match="it is the active CA"):
            old_ca_to_delete([new, other_active], other_active.guid, new.guid)


class TestApplyChanges:
    RUNNING_OLD = install(5, "running", NOW)
    RUNNING_NEW = install(6, "running", NOW)

    @pytest.mark.parametrize(
        ("installations", "after", "expected"),
        [
            ([], 5, (ApplyChangesAction.START, None)),
            ([RUNNING_NEW], 5, (ApplyChangesAction.ATTACH, RUNNING_NEW)),
            ([RUNNING_OLD], 5, (ApplyChangesAction.WAIT, RUNNING_OLD)),
            ([RUNNING_NEW], None, (ApplyChangesAction.WAIT, RUNNING_NEW)),
            ([install(6, "succeeded", NOW)], 5, (ApplyChangesAction.DEPLOYED, install(6, "succeeded", NOW))),
            ([install(6, "failed", NOW)], 5, (ApplyChangesAction.START, None)),
            ([install(5, "succeeded", NOW)], 5, (ApplyChangesAction.START, None)),
        ],
        ids=[
            "none",
            "running-newer",
            "running-older",
            "running-no-baseline",
            "succeeded-newer",
            "failed",
            "not-newer",
        ],
    )
    def test_decides_from_the_newest_installation_and_the_watermark(self, installations, after, expected):
        assert apply_changes_action(installations, after) == expected


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(cn: str, key, issuer_cn: str, issuer_key, *, is_ca: bool) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=365))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if not is_ca:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    keys = {name: ec.generate_private_key(ec.SECP256R1()) for name in ("old", "new", "leaf", "stranger")}
    cas = {
        name: _certificate(name, keys[name], name, keys[name], is_ca=True)
        for name in ("old", "new", "stranger")
    }
    leaves = {name: _pem(_certificate("leaf", keys["leaf"], name, keys[name], is_ca=False)) for name in cas}
    ca_pems = {name: _pem(cert) for name, cert in cas.items()}
    skis = {name: key_identifier(pem, x509.SubjectKeyIdentifier) for name, pem in ca_pems.items()}
    return types.SimpleNamespace(ca_pems=ca_pems, leaves=leaves, skis=skis)


class TestVerification:
    def test_key_identifiers_tell_which_ca_signed_a_leaf(self, pki):
        leaves, skis = pki.leaves, pki.skis
        assert key_identifier(leaves["new"], x509.AuthorityKeyIdentifier) == skis["new"]
        assert signer_by_key_identifier(leaves["new"], skis["new"], skis["old"]) == SIGNED_BY_NEW_CA
        assert signer_by_key_identifier(leaves["old"], skis["new"], skis["old"]) == SIGNED_BY_OLD_CA
        assert signer_by_key_identifier(leaves["stranger"], skis["new"], skis["old"]) == UNKNOWN_ISSUER

    def test_no_key_identifier_is_no_verdict(self, pki):
        leaves, skis = pki.leaves, pki.skis
        assert key_identifier("not a pem", x509.AuthorityKeyIdentifier) is None
        assert signer_by_key_identifier("not a pem", None, None) == UNKNOWN_ISSUER
        assert signer_by_key_identifier(leaves["new"], None, skis["old"]) == UNKNOWN_ISSUER

    def test_by_issue_time_a_leaf_is_the_new_cas_only_when_issued_since_it_was_made(self):
        made = NOW - dt.timedelta(hours=1)
        assert signer_by_issue_time(made, made) == SIGNED_BY_NEW_CA
        assert signer_by_issue_time(made - dt.timedelta(seconds=1), made) == SIGNED_BY_OLD_CA
        assert signer_by_issue_time(None, made) == SIGNED_BY_OLD_CA
        assert signer_by_issue_time(made, None) == SIGNED_BY_OLD_CA

    @pytest.mark.parametrize(
        ("fields", "expected"),
        [
            ({}, None),
            ({"configurable": True}, "configurable: rotate in the Ops Manager UI"),
            ({"is_ca": True}, "a CA with its own procedure"),
            ({"is_ca": True, "rotation_procedure_name": "Services TLS CA"}, "Services TLS CA"),
        ],
        ids=["rotated", "configurable", "ca", "named procedure"],
    )
    def test_what_the_rotation_reissues(self, fields, expected):
        cert = DeployedCertificate(
            issuer="", valid_from=NOW, valid_until=NOW, configurable=False, location="ops_manager"
        )
        assert own_procedure(DeployedCertificate(**{**cert.__dict__, **fields})) == expected

    def test_the_new_ca_must_be_the_only_one_active_and_outlive_the_window(self):
        new, old = activated()  # NEWER expires 2030-01-01
        assert new_ca_problems([new], new.guid, now=NOW, expires_within="3m") == []
        assert new_ca_problems([new, old], new.guid, now=NOW, expires_within="3m") == [
            f"expected exactly one CA, the new {new.guid}; found {new.guid}, {old.guid}"
        ]
        assert new_ca_problems([NEWER], NEWER.guid, now=NOW, expires_within="3m") == [
            f"the new CA {NEWER.guid} is not active"
        ]
        (expiring,) = new_ca_problems([new], new.guid, now=NOW, expires_within="5y")
        assert expiring.startswith("the new CA expires 2030-01-01") and expiring.endswith("within 5y")
