"""The card's bank account: the adapter payments use, and a stand-in bank for development and tests."""

from ecard.bank.adapter import (
    BankAdapter,
    BankConflict,
    BankError,
    BankMismatch,
    BankRefused,
    BankReservation,
    BankTransfer,
    BankUnavailable,
    FundingBank,
    HttpBank,
    InsufficientFunds,
    RequestSigner,
    check_bank_url,
)

__all__ = [
    "BankAdapter",
    "BankConflict",
    "BankError",
    "BankMismatch",
    "BankRefused",
    "BankReservation",
    "BankTransfer",
    "BankUnavailable",
    "FundingBank",
    "HttpBank",
    "InsufficientFunds",
    "RequestSigner",
    "check_bank_url",
]
