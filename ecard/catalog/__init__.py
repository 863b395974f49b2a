"""The catalog of card uses (应用事项清单)."""

from ecard.catalog.http import CatalogController
from ecard.catalog.models import Item
from ecard.catalog.service import Catalog

__all__ = ["Catalog", "CatalogController", "Item"]
