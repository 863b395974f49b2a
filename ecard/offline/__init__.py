"""Offline taps: what buses and gates without a network accepted, uploaded and judged as of each tap."""

from ecard.offline.service import OfflineTaps

__all__ = ["OfflineTaps"]
