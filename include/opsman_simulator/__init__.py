"""A faithful-enough VMware Tanzu Ops Manager API simulator for tests (see README.md)."""

__all__ = ["__version__"]
__version__ = "0.1.0"
