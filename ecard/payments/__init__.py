"""Payment pull-ups (协约商户 拉起账单): bills, PIN payments, the ledger, recovery, callbacks, refunds, statements."""

from ecard.payments.destinations import Destinations
from ecard.payments.ledger import Reconciliation, book_batch, check, reconcile
from ecard.payments.outbox import CallbackPolicy, Callbacks, enqueue_batch
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
    "book_batch",
    "check",
    "enqueue_batch",
    "reconcile",
]
