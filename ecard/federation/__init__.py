"""Federation (互通互认): partner issuers, their keys, and verification across issuers; this issuer's request keys."""

from ecard.federation.requestkey import TAGS, Audience, IssuerRequestKey, IssuerRequestKeys
from ecard.federation.service import Breaker, Federation, FederationSettings

__all__ = ["TAGS", "Audience", "Breaker", "Federation", "FederationSettings", "IssuerRequestKey", "IssuerRequestKeys"]
