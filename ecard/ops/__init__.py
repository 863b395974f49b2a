"""Health, readiness, metrics and logs."""

from ecard.ops.logs import configure

__all__ = ["configure"]
