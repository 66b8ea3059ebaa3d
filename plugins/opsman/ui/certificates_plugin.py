"""Registers the Certificates page with Airflow: a FastAPI app and a navigation entry.

Why ``fastapi_apps`` + ``external_views`` and not ``react_apps``: the page is server-rendered HTML
with an inline SVG chart, so it needs no JavaScript bundle built against the UI's React version and
no build step in this repository; it is testable with plain HTTP and stays readable without
JavaScript. The UI shows an external view with a ``url_route`` inside its own frame, under its
navigation ("Browse" → "Certificates", at ``/plugin/opsman-certificates``); the frame is same-origin,
so the UI's ``_token`` cookie authenticates the page's requests.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from opsman.ui.certificates_app import URL_PREFIX, app


class OpsManagerCertificatesPlugin(AirflowPlugin):
    name = "opsman_certificates"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "Ops Manager certificates"}]
    external_views = [
        {
            "name": "Certificates",
            "href": URL_PREFIX + "/",
            "url_route": "opsman-certificates",
            "destination": "nav",
            "category": "browse",
        }
    ]
