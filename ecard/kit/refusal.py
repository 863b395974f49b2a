"""Refusals: the one exception type for every refusal and the HTTP status of each stable code.

Free of any web framework, so that codecs and services can raise refusals without loading one;
the HTTP edge (`ecard.kit.problems`) maps them to RFC 9457 problem details.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The stable codes of API.md and the HTTP status each maps to.
STATUS_OF: dict[str, int] = {
    "invalid_request": 400,
    "signature_missing": 401,
    "signature_invalid": 401,
    "signature_expired": 401,
    "nonce_reused": 401,
    "unknown_client": 401,
    "unauthorized": 401,
    "operator_credentials_invalid": 401,
    "client_disabled": 403,
    "forbidden": 403,
    "operator_locked": 423,
    "not_found": 404,
    "cardholder_not_found": 404,
    "card_not_found": 404,
    "identity_mismatch": 403,
    "card_serial_taken": 409,
    "card_status_conflict": 409,
    "malformed_code": 400,
    "unknown_issuer": 400,
    "unknown_key": 400,
    "key_revoked": 400,
    "bad_signature": 400,
    "code_expired": 400,
    "code_not_yet_valid": 400,
    "code_already_used": 409,
    "card_suspended": 403,
    "card_cancelled": 403,
    "item_unknown": 404,
    "card_mode_not_accepted": 422,
    "merchant_not_entitled": 403,
    "entitlement_mismatch": 409,
    "terminal_exists": 409,
    "item_not_in_joint_list": 403,
    "card_not_linked": 403,
    "partner_exists": 409,
    "link_exists": 409,
    "consent_required": 400,
    "account_not_found": 404,
    "issuer_unavailable": 503,
    # a partner's forwarded request that arrived after its own answer_by: the asker has stopped waiting
    "answer_window_passed": 408,
    "database_unavailable": 503,
    "cache_unavailable": 503,
    # the service is busy, not down: shed with Retry-After rather than queue without bound
    "overloaded": 503,
    "not_acceptable": 406,
    "method_not_allowed": 405,
    "request_too_large": 413,
    "internal_error": 500,
    # the bank protocol (docs/bank-protocol.md)
    "insufficient_funds": 402,
    "transfer_conflict": 409,
    "transfer_voided": 409,
    "transfer_not_found": 404,
    # portal login (OpenID Connect): the OAuth error codes of RFC 6749, 6750, 9126, and the login requests
    "invalid_client": 401,
    "invalid_grant": 400,
    "invalid_scope": 400,
    "invalid_token": 401,
    "invalid_request_uri": 400,
    "unauthorized_client": 400,
    "unsupported_grant_type": 400,
    "unsupported_response_type": 400,
    "login_not_found": 404,
    "login_expired": 410,
    "login_closed": 409,
    "number_mismatch": 403,
    # citizen pages (H5): an enrolment ticket that is used, unknown or expired, all alike
    "ticket_invalid": 401,
    # payments (API.md "Payments")
    "idempotency_conflict": 409,
    "pin_incorrect": 403,
    "pin_locked": 423,
    "bill_not_payable": 409,
    "bill_not_closable": 409,
    "refund_exceeds_paid": 409,
    "bank_unavailable": 503,
    # 渝快码 links need the 渝快办 platform's proof that the account is the holder's (issue 11, H2)
    "link_token_required": 400,
    "link_token_invalid": 403,
    # payments, wave two: a bill whose payment attempt is unsettled (Retry-After says when to ask again)
    "payment_in_progress": 409,
    # operator logins (docs/contract-notes.md "Operator logins"): attempts over a source's or a username's
    # allowance are refused before any password is checked, with Retry-After
    "too_many_requests": 429,
    # PIN changes (issue 11, H1): a channel's reset grant that is unknown, used, expired or another device's
    "pin_reset_invalid": 403,
    # complaints (issue 14): a merchant, verification or bill a complaint names that is not the holder's (or
    # nobody's), and a reply to a complaint already resolved or rejected
    "complaint_link_refused": 403,
    "complaint_closed": 409,
    # family accounts (issue 15, API.md "Family accounts"): limits per relation, links that ended or await consent
    "family_limit": 409,
    "family_link_exists": 409,
    "family_link_ended": 403,
    "family_consent_required": 403,
    "family_consent_not_pending": 409,
    # disbursement (API.md "Disbursement", issue 12): operator decisions, and the bank protocol's reservations
    "approval_duplicate": 409,
    "batch_not_approvable": 409,
    "credit_refused": 422,
    "reservation_not_found": 404,
    "reservation_conflict": 409,
    "reservation_released": 409,
    "reservation_exhausted": 409,
    # risk events (issue 14): an operator's resolution of an event that does not exist, or is resolved already
    "risk_event_not_found": 404,
    "risk_event_resolved": 409,
}


class Refusal(Exception):  # noqa: N818 - a refusal is an answer, not an error of ours
    """The one exception type for every refusal; `code` is the contract string of API.md.

    `retry_after` (seconds) is sent as the Retry-After header: when it is worth asking again."""

    def __init__(
        self, code: str, detail: str = "", *, extra: Mapping[str, Any] | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(code)
        self.code = code
        self.detail = detail or code.replace("_", " ")
        self.status = STATUS_OF.get(code, 400)
        self.extra = dict(extra or {})
        self.retry_after = retry_after
