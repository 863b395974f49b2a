"""Signed dynamic codes and the issuer keys behind them."""

from ecard.codes.keys import IssuerKey, KeyRing, kid_of
from ecard.codes.service import CodeIssuer, Delegations
from ecard.codes.token import PREFIX, Token, check_signature, decode

__all__ = [
    "PREFIX",
    "CodeIssuer",
    "Delegations",
    "IssuerKey",
    "KeyRing",
    "Token",
    "check_signature",
    "decode",
    "kid_of",
]
