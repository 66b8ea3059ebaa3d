"""What the simulated foundation is made of: its products, leaf certificates and rotation
procedures, the error bodies it answers with, and the faults armed on a fresh start. Data only.

"The reference" in the ASSUMPTION notes is docs/ops-manager-api.md.
"""

from __future__ import annotations

from typing import Any

from .timefmt import DAY_SECONDS

# Fixed product GUIDs so that tests and scripts can name them.
P_BOSH_GUID = "p-bosh-4a5b6c7d8e9f0a1b2c3d"
CF_GUID = "cf-0f1e2d3c4b5a69788796"

PRODUCTS = [
    {"guid": P_BOSH_GUID, "type": "p-bosh", "product_version": "2.10.60-build.4", "label": "BOSH Director"},
    {"guid": CF_GUID, "type": "cf", "product_version": "2.11.42", "label": "Small Footprint TAS"},
]

# ASSUMPTION: procedure names/URLs for the 2.10 `rotation_procedure_*` fields (the reference only
# shows "Services TLS CA Procedure"). The URLs are answer data, as Ops Manager sends them.
_DOCS = (
    "https://docs.vmware.com/en/VMware-Tanzu-Operations-Manager/3.0/vmware-tanzu-ops-manager/"
    "security-pcf-infrastructure-rotate-cas-and-leaf-certs.html"
)
PROC_NON_CONFIGURABLE = ("Non-Configurable Leaf Certificates Procedure", _DOCS + "#rotate-non-configurable")
PROC_CONFIGURABLE = ("Configurable Leaf Certificates Procedure", _DOCS + "#rotate-configurable")
PROC_SERVICES = ("Services TLS CA Procedure", _DOCS + "#rotate-services-tls-ca")
# ASSUMPTION: no source shows the root CA's entry; fields follow the leaf entries of reference §3.1.
PROC_ROOT_CA = (
    "Ops Manager Root CA Procedure",
    "https://techdocs.broadcom.com/us/en/vmware-tanzu/platform/tanzu-operations-manager/3-0/tanzu-ops-manager/security-pcf-infrastructure-api-cert-rotation.html",
)

# The initial deployed leaf certificates.  `deployment` is the product whose Apply Changes
# (re)deploys the certificate; `product_guid` is what the deployed-certificates API shows.
LEAF_DEFS: list[dict[str, Any]] = [
    dict(
        name="nats_server",
        location="credhub",
        variable_path="/p-bosh/director/nats_server_tls",
        product_guid=None,
        property_reference=None,
        property_type=None,
        deployment=P_BOSH_GUID,
        configurable=False,
        excluded=False,
        issued_days_ago=700,
        validity_days=730,
        procedure=PROC_NON_CONFIGURABLE,
    ),
    dict(
        name="diego_rep",
        location="credhub",
        variable_path=f"/p-bosh/{CF_GUID}/diego_rep_agent_v2",
        product_guid=None,
        property_reference=None,
        property_type=None,
        deployment=CF_GUID,
        configurable=False,
        excluded=False,
        issued_days_ago=400,
        validity_days=730,
        procedure=PROC_NON_CONFIGURABLE,
    ),
    dict(
        name="director_ssl",
        location="ops_manager",
        variable_path=None,
        product_guid=P_BOSH_GUID,
        property_reference=".properties.director_ssl",
        property_type="rsa_cert_credentials",
        deployment=P_BOSH_GUID,
        configurable=False,
        excluded=False,
        issued_days_ago=400,
        validity_days=730,
        procedure=PROC_NON_CONFIGURABLE,
    ),
    dict(
        name="cf_credhub_internal",
        location="ops_manager",
        variable_path=None,
        product_guid=CF_GUID,
        property_reference=".properties.credhub_internal_tls",
        property_type="rsa_cert_credentials",
        deployment=CF_GUID,
        configurable=False,
        excluded=False,
        issued_days_ago=400,
        validity_days=730,
        procedure=PROC_NON_CONFIGURABLE,
    ),
    dict(
        name="cf_router_wildcard",
        location="ops_manager",
        variable_path=None,
        product_guid=CF_GUID,
        property_reference=".properties.networking_poe_ssl_certs",
        property_type="rsa_cert_credentials",
        deployment=CF_GUID,
        configurable=True,
        excluded=False,
        issued_days_ago=200,
        validity_days=730,
        procedure=PROC_CONFIGURABLE,
    ),
    dict(
        name="services_tls_ca",
        location="credhub",
        variable_path="/services/tls_ca",
        product_guid=None,
        property_reference=None,
        property_type=None,
        deployment=CF_GUID,
        configurable=False,
        excluded=True,
        issued_days_ago=1000,
        validity_days=1461,
        procedure=PROC_SERVICES,
    ),
]
LEAF_NAMES = [d["name"] for d in LEAF_DEFS]

REISSUE_VALIDITY_DAYS = 730
INITIAL_INSTALL_AGE_S = DAY_SECONDS
INITIAL_INSTALL_DURATION_S = 1500.0

INVALID_TOKEN_BODY = {
    "errors": {
        "base": [
            "Unable to successfully verify the access token with UAA.  Error: 'CF::UAA::InvalidToken - error response'"
        ]
    }
}
CA_NOT_FOUND = {"errors": ["Certificate with specified guid not found"]}
ACTIVE_CANNOT_DELETE = {"errors": ["Active certificates cannot be deleted"]}
# ASSUMPTION: the reference does not show the answer to a POST while an installation runs.
INSTALL_IN_PROGRESS = {"errors": ["An installation is already in progress"]}

DEFAULT_WARNING = "Simulated warning: some certificates could not be processed by CredHub Maestro"

DEFAULT_FAULTS: dict[str, Any] = {
    "fail_next_installs": 0,
    "status_burst": None,
    "drop_next": None,
    "latency": None,
    "token_ttl": None,
    "ca_status_207": False,
    "ca_warnings": [DEFAULT_WARNING],
    "regenerate_failed": [],
    "log_bytes_per_second": 0,
    "apply_seconds": None,
}
