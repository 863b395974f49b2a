"""The card's bank account behind one adapter: the interface payments code against, and its HTTP client."""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import date
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import httpx

DEBIT = "debit"
CREDIT = "credit"


@dataclass(frozen=True)
class BankTransfer:
    """A transfer as the bank holds it.

    `status` is `completed`, `reversed` (its money was given back), or `voided` (the id was burnt by a reversal
    before any transfer used it: then `card_id` and `direction` are empty and `amount_fen` is 0).
    """

    transfer_id: str
    card_id: str
    direction: str
    amount_fen: int
    status: str
    at: str

    def moves(self, card_id: str, direction: str, amount_fen: int) -> bool:
        """Whether this is the movement asked for: that card, that direction, that amount."""
        return (self.card_id, self.direction, self.amount_fen) == (card_id, direction, amount_fen)


@dataclass(frozen=True)
class BankReservation:
    """A payer's money the bank set aside for one batch (`held`), or gave the rest of back (`released`)."""

    reservation_id: str
    payer_id: str
    amount_fen: int
    status: str
    disbursed_fen: int
    released_fen: int


class BankError(Exception):
    """Anything the bank adapter could not do."""


class InsufficientFunds(BankError):  # noqa: N818 - names payments code against
    """The card's account holds less than the debit; nothing was moved."""


class BankConflict(BankError):  # noqa: N818 - names payments code against
    """The transfer id is already taken by a different transfer (or was voided); nothing was moved."""


class BankRefused(BankError):  # noqa: N818 - names payments code against
    """The bank refused the request for another reason (signature, malformed input); nothing was moved."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class BankUnavailable(BankError):  # noqa: N818 - names payments code against
    """No answer from the bank: the outcome is unknown; ask `transfer()` or retry with the same transfer id."""


class BankMismatch(BankError):  # noqa: N818 - names payments code against
    """The bank answered about another transfer than the one asked for (another id, card, direction or amount, or a
    status the request cannot have led to): nothing may be booked on it; someone has to look."""


def check_bank_url(url: str) -> str:
    """The bank's base URL, once it is https, or http to this host's loopback (the stand-in); else ValueError."""
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        raise ValueError("ECARD_BANK_URL must be an absolute URL with a host and no credentials")
    if parts.scheme == "https":
        return url
    if parts.scheme == "http" and _loopback(parts.hostname):
        return url
    raise ValueError("ECARD_BANK_URL must be https:// (http:// only to a loopback address, for the stand-in)")


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RequestSigner(Protocol):
    """Signs an outgoing request (RFC 9421): the issuer request key."""

    def sign(self, method: str, url: str, body: bytes) -> dict[str, str]: ...


class BankAdapter(Protocol):
    """What the service needs from the bank that holds card accounts; every move is idempotent on transfer_id."""

    async def debit(self, transfer_id: str, card_id: str, amount_fen: int, memo: str) -> BankTransfer: ...

    async def credit(self, transfer_id: str, card_id: str, amount_fen: int, memo: str) -> BankTransfer: ...

    async def reverse(self, transfer_id: str, memo: str) -> BankTransfer: ...

    async def transfer(self, transfer_id: str) -> BankTransfer | None: ...

    async def transfers_on(self, day: date) -> list[BankTransfer]: ...

    async def aclose(self) -> None: ...


class FundingBank(Protocol):
    """What disbursement needs from the bank: a payer's money reserved, paid out to cards from it, the rest released.

    Every call is idempotent on its id: the same reservation (or credit) again is answered, not repeated."""

    async def reserve(self, reservation_id: str, payer_id: str, amount_fen: int, memo: str) -> BankReservation: ...

    async def disburse(
        self, reservation_id: str, transfer_id: str, card_id: str, amount_fen: int, memo: str
    ) -> BankTransfer: ...

    async def release(self, reservation_id: str) -> BankReservation: ...


class HttpBank:
    """The bank protocol of docs/bank-protocol.md over HTTP, each request signed when a signer is given."""

    def __init__(self, base_url: str, signer: RequestSigner | None, timeout_s: float = 2.0) -> None:
        self._base = check_bank_url(base_url).rstrip("/")
        self._signer = signer
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )

    async def debit(self, transfer_id: str, card_id: str, amount_fen: int, memo: str) -> BankTransfer:
        """Take money from the card's account; the same transfer_id and body again is answered, not repeated."""
        return await self._move(transfer_id, card_id, DEBIT, amount_fen, memo)

    async def credit(self, transfer_id: str, card_id: str, amount_fen: int, memo: str) -> BankTransfer:
        """Put money into the card's account (a refund); idempotent on transfer_id like `debit`."""
        return await self._move(transfer_id, card_id, CREDIT, amount_fen, memo)

    async def reverse(self, transfer_id: str, memo: str) -> BankTransfer:
        """Undo a transfer (status `reversed`), or burn an unused id so it can never move money (`voided`)."""
        answer = await self._request("POST", f"/v1/transfers/{_segment(transfer_id)}/reverse", {"memo": memo})
        if answer.status_code != 200:
            raise _refusal(answer)
        reversal = _about(transfer_id, _transfer(answer))
        if reversal.status not in {"reversed", "voided"}:
            raise BankMismatch(f"the bank answered a reversal of {transfer_id} with status {reversal.status!r}")
        return reversal

    async def transfer(self, transfer_id: str) -> BankTransfer | None:
        """The transfer under this id, or None when the bank has none."""
        answer = await self._request("GET", f"/v1/transfers/{_segment(transfer_id)}")
        if answer.status_code == 200:
            return _about(transfer_id, _transfer(answer))
        # only the bank's own "no such transfer" means none: a 404 from a misrouted URL must not read as one
        if answer.status_code == 404 and _json(answer).get("code") == "transfer_not_found":
            return None
        raise _refusal(answer)

    async def transfers_on(self, day: date) -> list[BankTransfer]:
        """Every transfer the bank made on this (UTC) day, oldest first: for reconciliation."""
        answer = await self._request("GET", f"/v1/transfers?date={day.isoformat()}")
        if answer.status_code != 200:
            raise _refusal(answer)
        items = _json(answer).get("items")
        if not isinstance(items, list):
            raise BankUnavailable("the bank answered a transfer list without items")
        return [_transfer_from(item) for item in items]

    async def reserve(self, reservation_id: str, payer_id: str, amount_fen: int, memo: str) -> BankReservation:
        """Set the payer's money aside; `InsufficientFunds` when its funding account holds less (nothing moved)."""
        body = {"reservation_id": reservation_id, "payer_id": payer_id, "amount_fen": amount_fen, "memo": memo}
        answer = await self._request("POST", "/v1/reservations", body)
        if answer.status_code not in {200, 201}:
            raise _refusal(answer)
        made = _reservation(answer)
        if (made.reservation_id, made.payer_id, made.amount_fen) != (reservation_id, payer_id, amount_fen):
            raise BankMismatch(f"the bank answered reservation {reservation_id} with another than was asked")
        return made

    async def disburse(
        self, reservation_id: str, transfer_id: str, card_id: str, amount_fen: int, memo: str
    ) -> BankTransfer:
        """Credit the card from the reservation; idempotent on transfer_id; `BankRefused` when the bank will not."""
        body = {"transfer_id": transfer_id, "card_id": card_id, "amount_fen": amount_fen, "memo": memo}
        answer = await self._request("POST", f"/v1/reservations/{_segment(reservation_id)}/credits", body)
        if answer.status_code not in {200, 201}:
            raise _refusal(answer)
        made = _about(transfer_id, _transfer(answer))
        if not made.moves(card_id, CREDIT, amount_fen) or made.status != "completed":
            raise BankMismatch(f"the bank answered credit {transfer_id} with another movement than was asked")
        return made

    async def release(self, reservation_id: str) -> BankReservation:
        """Give what is left of the reservation back to the payer's funding account (idempotent)."""
        answer = await self._request("POST", f"/v1/reservations/{_segment(reservation_id)}/release", {})
        if answer.status_code != 200:
            raise _refusal(answer)
        released = _reservation(answer)
        if released.reservation_id != reservation_id or released.status != "released":
            raise BankMismatch(f"the bank answered the release of {reservation_id} with another reservation")
        return released

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _move(self, transfer_id: str, card_id: str, direction: str, amount_fen: int, memo: str) -> BankTransfer:
        body = {
            "transfer_id": transfer_id,
            "card_id": card_id,
            "direction": direction,
            "amount_fen": amount_fen,
            "memo": memo,
        }
        answer = await self._request("POST", "/v1/transfers", body)
        if answer.status_code not in {200, 201}:
            raise _refusal(answer)
        made = _about(transfer_id, _transfer(answer))
        # a replay answers the transfer as it stands now: completed, or reversed since
        if not made.moves(card_id, direction, amount_fen) or made.status not in {"completed", "reversed"}:
            raise BankMismatch(f"the bank answered transfer {transfer_id} with another movement than was asked")
        return made

    async def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> httpx.Response:
        url = self._base + path
        body = b"" if payload is None else json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Accept": "application/json"}
        if body:
            headers["Content-Type"] = "application/json"
        if self._signer is not None:
            headers.update(self._signer.sign(method, url, body))
        try:
            answer = await self._client.request(method, url, content=body or None, headers=headers)
        except httpx.HTTPError as exc:
            raise BankUnavailable(f"the bank did not answer {method} {path}: {type(exc).__name__}") from exc
        if answer.status_code >= 500:
            raise BankUnavailable(f"the bank answered {answer.status_code} to {method} {path}")
        return answer


def _about(transfer_id: str, transfer: BankTransfer) -> BankTransfer:
    if transfer.transfer_id != transfer_id:
        raise BankMismatch(f"asked about transfer {transfer_id}, the bank answered about another")
    return transfer


def _segment(transfer_id: str) -> str:
    return quote(transfer_id, safe="")


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        parsed = answer.json()
    except ValueError as exc:
        raise BankUnavailable(f"the bank answered {answer.status_code} with a body that is not JSON") from exc
    if not isinstance(parsed, dict):
        raise BankUnavailable(f"the bank answered {answer.status_code} with JSON that is not an object")
    return parsed


def _transfer(answer: httpx.Response) -> BankTransfer:
    return _transfer_from(_json(answer))


def _transfer_from(item: Any) -> BankTransfer:
    try:
        return BankTransfer(
            transfer_id=str(item["transfer_id"]),
            card_id=str(item["card_id"]),
            direction=str(item["direction"]),
            amount_fen=int(item["amount_fen"]),
            status=str(item["status"]),
            at=str(item["at"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BankUnavailable("the bank answered a transfer without its fields") from exc


def _reservation(answer: httpx.Response) -> BankReservation:
    item = _json(answer)
    try:
        return BankReservation(
            reservation_id=str(item["reservation_id"]),
            payer_id=str(item["payer_id"]),
            amount_fen=int(item["amount_fen"]),
            status=str(item["status"]),
            disbursed_fen=int(item["disbursed_fen"]),
            released_fen=int(item["released_fen"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise BankUnavailable("the bank answered a reservation without its fields") from exc


def _refusal(answer: httpx.Response) -> BankError:
    problem = _json(answer)
    code = str(problem.get("code") or answer.status_code)
    detail = str(problem.get("detail") or "")
    if code == "insufficient_funds":
        return InsufficientFunds(detail)
    if answer.status_code == 409:
        return BankConflict(f"{code}: {detail}")
    return BankRefused(code, detail)
