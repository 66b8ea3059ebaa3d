"""The Certificates page: the fleet's root CAs and rotations on one screen in the Airflow UI.

- :mod:`opsman.ui.certificates_rows`: pure; one row per foundation from what Airflow already holds.
- :mod:`opsman.ui.certificates_chart`: pure; the timeline as inline SVG.
- :mod:`opsman.ui.certificates_app`: the FastAPI app (reads Airflow's DB, enforces Airflow's auth).
- :mod:`opsman.ui.certificates_plugin`: the AirflowPlugin registering the app and its navigation entry.

The page never calls Ops Manager: the API server holds no Ops Manager credentials in use and a page
load must not depend on, or load, any foundation. Module names are prefixed because Airflow's plugin
loader also imports every file of the plugins folder under its bare file name.
"""
