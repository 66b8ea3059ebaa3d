"""The rotation's operators, one module per section of the procedure.

- :mod:`~opsman.operators.base`: the shared base operator (hook, plan gating, write-then-confirm)
  and the XCom keys the steps hand to each other;
- :mod:`~opsman.operators.preflight`: check Ops Manager, plan the rotation, refuse foreign staged changes;
- :mod:`~opsman.operators.certificate_authority`: generate, verify, activate, regenerate, delete;
- :mod:`~opsman.operators.apply_changes`: start or attach to the Apply Changes carrying a step's change;
- :mod:`~opsman.operators.verification`: prove the rotation.

The pure decisions they apply live in :mod:`opsman.planning` and :mod:`opsman.verdicts`.
"""

from opsman.operators.apply_changes import ApplyChangesOperator
from opsman.operators.base import (
    AFTER_INSTALLATION_KEY,
    NEW_CA_KEY,
    OLD_CA_KEY,
    WATERMARK_KEY,
    OpsManagerBaseOperator,
)
from opsman.operators.certificate_authority import (
    ActivateCertificateAuthorityOperator,
    DeleteCertificateAuthorityOperator,
    GenerateCertificateAuthorityOperator,
    RegenerateCertificatesOperator,
    VerifyCertificateAuthoritiesOperator,
)
from opsman.operators.preflight import (
    CheckOpsManagerOperator,
    PendingChangesCheckOperator,
    PlanRotationOperator,
)
from opsman.operators.verification import VerifyRotationOperator
from opsman.values import format_table
from opsman.verdicts import key_identifier as _key_identifier  # the name tests/ import

__all__ = [
    "AFTER_INSTALLATION_KEY",
    "NEW_CA_KEY",
    "OLD_CA_KEY",
    "WATERMARK_KEY",
    "ActivateCertificateAuthorityOperator",
    "ApplyChangesOperator",
    "CheckOpsManagerOperator",
    "DeleteCertificateAuthorityOperator",
    "GenerateCertificateAuthorityOperator",
    "OpsManagerBaseOperator",
    "PendingChangesCheckOperator",
    "PlanRotationOperator",
    "RegenerateCertificatesOperator",
    "VerifyCertificateAuthoritiesOperator",
    "VerifyRotationOperator",
    "_key_identifier",
    "format_table",
]
