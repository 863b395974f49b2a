"""Monthly partitions of the append-only tables: made ahead of time, and old months archived and dropped."""

from ecard.partitions.models import Archived, Partition
from ecard.partitions.service import PARTITIONED, RETAINABLE, Partitions

__all__ = ["PARTITIONED", "RETAINABLE", "Archived", "Partition", "Partitions"]
