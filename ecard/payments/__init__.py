"""Payment pull-ups (协约商户 拉起账单): bills, PIN payments, the ledger, recovery, callbacks, refunds, statements."""

from ecard.payments.destinations import Destinations
from ecard.payments.ledger import Reconciliation, check, reconcile
from ecard.payments.outbox import CallbackPolicy, Callbacks
from ecard.payments.recovery import Recovered, Recovery
from ecard.payments.service import Payments

__all__ = [
    "CallbackPolicy",
    "Callbacks",
    "Destinations",
    "Payments",
    "Reconciliation",
    "Recovered",
    "Recovery",
    "check",
    "reconcile",
]
