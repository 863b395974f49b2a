"""Disbursement (资金发放): batches of benefits, subsidies and wages, validated, approved, paid into card accounts."""

from ecard.disbursements.models import Decision
from ecard.disbursements.payer import Payer, PayerPolicy
from ecard.disbursements.service import DisbursementPolicy, Disbursements, check, item_reach

__all__ = ["Decision", "DisbursementPolicy", "Disbursements", "Payer", "PayerPolicy", "check", "item_reach"]
