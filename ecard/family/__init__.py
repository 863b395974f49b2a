"""Family accounts (亲情服务): links from a holder's card to family members' cards the holder may show."""

from ecard.family.service import Family, FamilySettings

__all__ = ["Family", "FamilySettings"]
