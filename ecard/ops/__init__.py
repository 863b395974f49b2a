"""Health, readiness, metrics and logs."""

from ecard.ops.logs import configure
from ecard.ops.service import Readiness, ServiceInfo
from ecard.ops.workers import share_metrics

__all__ = ["Readiness", "ServiceInfo", "configure", "share_metrics"]
