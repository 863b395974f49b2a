"""The card's bank account: the adapter payments use, and a stand-in bank for development and tests."""

from ecard.bank.adapter import (
    BankAdapter,
    BankConflict,
    BankError,
    BankRefused,
    BankTransfer,
    BankUnavailable,
    HttpBank,
    InsufficientFunds,
    RequestSigner,
)

__all__ = [
    "BankAdapter",
    "BankConflict",
    "BankError",
    "BankRefused",
    "BankTransfer",
    "BankUnavailable",
    "HttpBank",
    "InsufficientFunds",
    "RequestSigner",
]
