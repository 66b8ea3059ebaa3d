"""The "Ops Manager" connection type as Airflow 3's connection form sees it.

Read through the same service the UI's ``GET /ui/connections/hook_meta`` uses (the system test
also reads the endpoint itself), from the installed distribution's ``apache_airflow_provider``
entry point: no hook import involved.
"""

from __future__ import annotations

from importlib import metadata

import pytest
from airflow_versions import DECLARATIVE_CONNECTION_FORM

# Airflow 3.1 lists the "opsman" type with its hook (tested below) but builds no form from our metadata.
needs_declarative_form = pytest.mark.skipif(
    not DECLARATIVE_CONNECTION_FORM, reason="Airflow < 3.2 reads no conn-fields/ui-field-behaviour metadata"
)


@pytest.fixture(scope="module")
def opsman_meta():
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    metas = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "opsman"]
    assert len(metas) == 1, "connection type 'opsman' is not registered: is the project installed (./dev setup)?"
    return metas[0].model_dump()


def test_entry_point_is_installed_with_the_distribution():
    eps = [ep for ep in metadata.entry_points(group="apache_airflow_provider") if ep.dist.name == "opsman-ca-rotation"]
    assert [ep.value for ep in eps] == ["opsman_ca_rotation_provider:get_provider_info"]
    info = eps[0].load()()
    assert info["package-name"] == "opsman-ca-rotation"
    assert info["versions"] == [metadata.version("opsman-ca-rotation")]


def test_provider_is_listed_by_airflow():
    from airflow.providers_manager import ProvidersManager

    providers = ProvidersManager().providers
    assert "opsman-ca-rotation" in providers
    assert ProvidersManager().providers["opsman-ca-rotation"].data["connection-types"][0]["connection-type"] == "opsman"


def test_form_names_the_type_and_relabels_the_standard_fields(opsman_meta):
    assert opsman_meta["hook_name"] == "VMware Tanzu Ops Manager"
    assert opsman_meta["hook_class_name"] == "opsman.hooks.OpsManagerHook"
    if not DECLARATIVE_CONNECTION_FORM:
        assert opsman_meta["standard_fields"] is None and opsman_meta["extra_fields"] is None
        pytest.skip("Airflow < 3.2 reads no conn-fields/ui-field-behaviour metadata")
    std = opsman_meta["standard_fields"]
    assert std["host"] == {"hidden": False, "title": "Ops Manager URL", "placeholder": "https://opsman.example.com"}
    assert std["login"]["title"] == "UAA username"
    assert std["password"]["title"] == "UAA password"
    assert std["port"]["hidden"] is True
    assert std["url_schema"]["hidden"] is True


@needs_declarative_form
def test_form_has_our_extra_fields_with_types(opsman_meta):
    fields = opsman_meta["extra_fields"]
    assert set(fields) == {
        "client_id", "client_secret", "uaa_url", "ca_cert", "skip_ssl_validation",
        "connect_timeout", "request_timeout", "read_retries", "retry_backoff_seconds", "allow_http",
    }
    assert fields["client_id"]["schema"]["title"] == "UAA client id"
    assert fields["client_secret"]["schema"]["format"] == "password"
    assert fields["ca_cert"]["schema"]["format"] == "multiline"
    assert fields["skip_ssl_validation"]["schema"]["type"] == ["boolean", "null"]
    assert fields["skip_ssl_validation"]["value"] is False
    assert fields["connect_timeout"]["value"] == 10 and fields["request_timeout"]["value"] == 120
    assert all(f["description"] for f in fields.values())


@needs_declarative_form
def test_secrets_are_sensitive_fields():
    from airflow.providers_manager import ProvidersManager

    # The public view (3.2 has no private metadata-only one); our hook defines no widgets, so all are metadata.
    widgets = ProvidersManager().connection_form_widgets
    sensitive = {w.field_name for k, w in widgets.items() if k.startswith("extra__opsman__") and w.is_sensitive}
    assert sensitive == {"client_secret"}


def test_form_values_are_what_the_hook_reads(tmp_path):
    """A connection saved from the form (defaults filled in, numbers as numbers) is valid for the hook."""
    import json

    from airflow.sdk import Connection

    from opsman.hooks import OpsManagerConnectionSettings

    form_extra = {
        "client_id": "rotation-bot", "client_secret": "s3cret", "uaa_url": None, "ca_cert": None,
        "skip_ssl_validation": False, "connect_timeout": 10, "request_timeout": 120, "read_retries": 5,
        "retry_backoff_seconds": 2, "allow_http": False,
    }
    conn = Connection(conn_id="x", conn_type="opsman", host="https://opsman.example.com", extra=json.dumps(form_extra))
    settings = OpsManagerConnectionSettings.from_connection(conn)
    assert settings.base_url == "https://opsman.example.com"
    assert settings.uaa_url == "https://opsman.example.com/uaa"
    assert settings.client_id == "rotation-bot" and not settings.skip_ssl_validation
    assert settings.connect_timeout == 10 and settings.read_attempts == 5
