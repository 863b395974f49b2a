"""The catalog of card uses (应用事项清单)."""

from ecard.catalog.models import Item, ItemFields
from ecard.catalog.service import Catalog, Imported

__all__ = ["Catalog", "Imported", "Item", "ItemFields"]
