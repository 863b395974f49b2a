"""Complaints (投诉): the holder's and the public's channel, tracked cases with due dates, operators' replies."""

from ecard.complaints.models import NewReply
from ecard.complaints.service import ComplaintPolicy, Complaints

__all__ = ["ComplaintPolicy", "Complaints", "NewReply"]
