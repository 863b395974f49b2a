"""The operators' web console at /console/: server-rendered pages over the rooms' own services."""

from ecard.console.service import Console, mask_id_number

__all__ = ["Console", "mask_id_number"]
