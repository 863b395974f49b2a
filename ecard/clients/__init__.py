"""Machine clients and the signed requests they make."""

from ecard.clients.models import Client
from ecard.clients.service import Authenticator, ClientDirectory

__all__ = ["Authenticator", "Client", "ClientDirectory"]
