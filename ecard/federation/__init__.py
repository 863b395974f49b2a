"""Federation (互通互认): partner issuers, their keys, and verification across issuers."""

from ecard.federation.requestkey import IssuerRequestKey
from ecard.federation.service import Breaker, Federation, FederationSettings

__all__ = ["Breaker", "Federation", "FederationSettings", "IssuerRequestKey"]
