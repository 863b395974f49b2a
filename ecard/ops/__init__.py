"""Health, readiness, metrics and logs."""

from ecard.ops.http import EchoController, OpsController
from ecard.ops.logs import access_middleware, configure

__all__ = ["EchoController", "OpsController", "access_middleware", "configure"]
