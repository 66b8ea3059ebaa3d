"""Airflow hook, operators, sensor and trigger for VMware Tanzu / Pivotal Ops Manager CA rotation."""
