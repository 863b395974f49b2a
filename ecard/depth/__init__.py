"""Depth of use (应用深度): scenes, beneficiaries and the levels the plan defines, measured from real data."""

from ecard.depth.service import Depth

__all__ = ["Depth"]
