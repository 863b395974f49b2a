"""Portal login: an OpenID Connect provider for 警快办 and other government portals."""

from ecard.portal.keys import SigningKeys
from ecard.portal.models import NewPortal
from ecard.portal.service import Portals, Provider
from ecard.portal.store import Held

__all__ = ["Held", "NewPortal", "Portals", "Provider", "SigningKeys"]
