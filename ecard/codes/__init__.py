"""Signed dynamic codes and the issuer keys behind them."""

from ecard.codes.keys import IssuerKey, KeyRing, kid_of
from ecard.codes.numeric import NumericCodes, NumericPolicy, is_numeric_form
from ecard.codes.service import CodeIssuer, Delegations
from ecard.codes.token import PREFIX, Token, check_signature, decode

__all__ = [
    "PREFIX",
    "CodeIssuer",
    "Delegations",
    "IssuerKey",
    "KeyRing",
    "NumericCodes",
    "NumericPolicy",
    "Token",
    "check_signature",
    "decode",
    "is_numeric_form",
    "kid_of",
]
