"""The stand-in bank: docs/bank-protocol.md over HTTP on a double-entry ledger of its own, plus test hooks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import httpx
import msgspec
from litestar import Controller, Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, FromQuery, JSONBody

from ecard.bank.ledger import Ledger, Reservation, Transfer
from ecard.kit import signing
from ecard.kit.clock import Clock, SystemClock
from ecard.kit.ids import new_id
from ecard.kit.jwk import PublicKey, parse_public_jwk
from ecard.kit.problems import (
    http_exception_handler,
    internal_error_handler,
    not_utf8_handler,
    problems,
    refusal_handler,
    validation_handler,
)
from ecard.kit.refusal import Refusal

SIGNATURE_WINDOW_S = 300
# the RFC 9421 tag of the bank protocol's requests (docs/bank-protocol.md, "Signatures")
TAG = "ecard-bank"
# an unknown kid fetches the trust keys again, but not more often than this
TRUST_REFRESH_S = 5.0
# and they are fetched again when this old, so that a key the issuer revokes stops working here too
TRUST_MAX_AGE_S = 60.0

T = TypeVar("T")

TransferId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
CardId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]
Fen = Annotated[int, msgspec.Meta(gt=0, le=10**12)]
Memo = Annotated[str, msgspec.Meta(max_length=140, pattern=r"^[^\x00-\x1f\x7f]*$")]

SIGNED_PROBLEMS = ("signature_missing", "signature_invalid", "signature_expired", "nonce_reused", "unknown_client")


class NewTransfer(msgspec.Struct, forbid_unknown_fields=True):
    transfer_id: TransferId
    card_id: CardId
    direction: Literal["debit", "credit"]
    amount_fen: Fen
    memo: Memo = ""


class Reversal(msgspec.Struct, forbid_unknown_fields=True):
    memo: Memo = ""


class TestCredit(msgspec.Struct, forbid_unknown_fields=True):
    card_id: CardId
    amount_fen: Fen


PayerId = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")]


class NewReservation(msgspec.Struct, forbid_unknown_fields=True):
    reservation_id: TransferId
    payer_id: PayerId
    amount_fen: Fen
    memo: Memo = ""


class NewDisbursement(msgspec.Struct, forbid_unknown_fields=True):
    transfer_id: TransferId
    card_id: CardId
    amount_fen: Fen
    memo: Memo = ""


class TestFunding(msgspec.Struct, forbid_unknown_fields=True):
    merchant_id: PayerId
    amount_fen: Fen


class Faults(msgspec.Struct, forbid_unknown_fields=True):
    """Switches for crash tests; a switch left out keeps its setting."""

    hold_debits: bool | None = None
    hold_credits: bool | None = None
    # disbursement credits to this card are refused (422 credit_refused); "" lifts it
    refuse_credits_to: str | None = None
    # the next N disbursement credits are answered 503 before anything is made (a transient fault)
    unavailable_credits: int | None = None
    # disbursement credits are made and committed, but their answers are held (as hold_credits does for refunds)
    hold_disbursements: bool | None = None


class TransferList(msgspec.Struct):
    date: str
    items: list[Transfer]


class Bank:
    """The ledger behind one writer thread, the trust keys, and the fault switches."""

    def __init__(self, data_dir: Path, trust_keys_url: str | None, clock: Clock) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")
        self.ledger = Ledger(data_dir, clock)
        self.clock = clock
        self.trust = TrustKeys(trust_keys_url) if trust_keys_url else None
        # per direction: set while its answers flow, cleared while they are held
        self.released = {"debit": asyncio.Event(), "credit": asyncio.Event(), "disbursement": asyncio.Event()}
        self.refused_cards: frozenset[str] = frozenset()
        self.unavailable_credits = 0
        for released in self.released.values():
            released.set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Ledger work on its one thread, so that it never interleaves and never blocks the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def hold(self, direction: str, held: bool | None) -> None:
        """Hold (True) or release (False) the answers of transfers made in one direction; None leaves it."""
        if held is True:
            self.released[direction].clear()
        elif held is False:
            self.released[direction].set()

    def holding(self) -> dict[str, Any]:
        held: dict[str, Any] = {
            f"hold_{direction}s": not released.is_set() for direction, released in self.released.items()
        }
        held["refuse_credits_to"] = sorted(self.refused_cards)
        held["unavailable_credits"] = self.unavailable_credits
        return held

    async def close(self) -> None:
        if self.trust is not None:
            await self.trust.aclose()
        await self.run(self.ledger.close)
        self._executor.shutdown(wait=True)


class TrustKeys:
    """The issuer's request-key set (a JWKS with `kid`s), fetched on first use and again for an unknown kid."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(3.0))
        self._keys: dict[str, tuple[PublicKey, str]] = {}
        self._issuer: str | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, keyid: str) -> tuple[PublicKey, str]:
        issuer, _, kid = keyid.rpartition(":")
        found = self._find(issuer, kid)
        age = time.monotonic() - self._fetched_at
        if (found is None and age >= TRUST_REFRESH_S) or age >= TRUST_MAX_AGE_S:
            async with self._lock:
                if time.monotonic() - self._fetched_at >= TRUST_REFRESH_S:
                    await self._fetch()
            found = self._find(issuer, kid)
        if found is None:
            raise Refusal("unknown_client", "no trusted request key has this keyid")
        return found

    async def aclose(self) -> None:
        await self._client.aclose()

    def _find(self, issuer: str, kid: str) -> tuple[PublicKey, str] | None:
        if self._issuer is not None and issuer != self._issuer:
            return None
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()
        try:
            answer = await self._client.get(self._url)
            answer.raise_for_status()
            document = answer.json()
        except (httpx.HTTPError, ValueError):
            return
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            return
        keys: dict[str, tuple[PublicKey, str]] = {}
        for jwk in document["keys"]:
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str) or jwk.get("status") == "revoked":
                continue
            # the issuer's key for the bank only: its keys for partners or merchants' callbacks move no money
            if jwk.get("audience") != "bank":
                continue
            with contextlib.suppress(Refusal):
                key, alg, _ = parse_public_jwk({k: v for k, v in jwk.items() if k in {"kty", "crv", "x", "y"}})
                keys[jwk["kid"]] = (key, alg)
        self._keys = keys
        issuer = document.get("issuer")
        self._issuer = issuer if isinstance(issuer, str) else None


def _bank(state: State) -> Bank:
    bank: Bank = state.bank
    return bank


async def _caller(request: Request[Any, Any, Any], bank: NamedDependency[Bank]) -> str:
    """The keyid a request was signed with; with no trust keys configured, every request is let in unsigned."""
    if bank.trust is None:
        return "unsigned"
    body = await request.body()
    params = signing.parse_signature_params(request.headers, has_body=bool(body))
    now = bank.clock.now()
    signing.check_window(params, now, SIGNATURE_WINDOW_S)
    key, alg = await bank.trust.key(params.keyid)
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    signing.verify_signature(params, key, alg, request.method, path, query, request.headers, body)
    signing.require_peer(params, TAG, request.headers, signing.server_authorities(request.scope.get("server")))
    forget_before = int(now) - 2 * SIGNATURE_WINDOW_S - 1
    if not await bank.run(bank.ledger.claim_nonce, params.keyid, params.nonce, params.created, forget_before):
        raise Refusal("nonce_reused", "this nonce has been used already")
    return params.keyid


async def _until_released_or_gone(request: Request[Any, Any, Any], released: asyncio.Event) -> None:
    """Hold an answer until the fault is lifted or the client hangs up."""

    async def client_gone() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            continue

    waits = {asyncio.ensure_future(released.wait()), asyncio.ensure_future(client_gone())}
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiting in waits:
            waiting.cancel()


class TransferController(Controller):
    path = "/v1/transfers"
    dependencies = {"caller": Provide(_caller)}  # noqa: RUF012

    @post("/", status_code=201, responses=problems("insufficient_funds", "transfer_conflict", *SIGNED_PROBLEMS))
    async def make(
        self,
        request: Request[Any, Any, Any],
        bank: NamedDependency[Bank],
        caller: NamedDependency[str],  # noqa: ARG002 - its presence is the signature guard
        data: JSONBody[NewTransfer],
    ) -> Response[Transfer]:
        transfer, made = await bank.run(
            bank.ledger.make, data.transfer_id, data.card_id, data.direction, data.amount_fen, data.memo
        )
        released = bank.released[data.direction]
        if made and not released.is_set():
            await _until_released_or_gone(request, released)
        return Response(transfer, status_code=201 if made else 200)

    @get("/", responses=problems("invalid_request", *SIGNED_PROBLEMS))
    async def on_day(
        self,
        bank: NamedDependency[Bank],
        caller: NamedDependency[str],  # noqa: ARG002 - its presence is the signature guard
        date: FromQuery[str],
    ) -> TransferList:
        try:
            day = dt.date.fromisoformat(date)
        except ValueError as exc:
            raise Refusal("invalid_request", "date must be YYYY-MM-DD", extra={"fields": ["date"]}) from exc
        return TransferList(date=day.isoformat(), items=await bank.run(bank.ledger.on_day, day))

    @get("/{transfer_id:str}", responses=problems("transfer_not_found", *SIGNED_PROBLEMS))
    async def one(
        self,
        bank: NamedDependency[Bank],
        caller: NamedDependency[str],  # noqa: ARG002 - its presence is the signature guard
        transfer_id: FromPath[str],
    ) -> Transfer:
        found = await bank.run(bank.ledger.get, transfer_id)
        if found is None:
            raise Refusal("transfer_not_found", "the bank has no transfer with this id")
        return found

    @post("/{transfer_id:str}/reverse", status_code=200, responses=problems("insufficient_funds", *SIGNED_PROBLEMS))
    async def reverse(
        self,
        bank: NamedDependency[Bank],
        caller: NamedDependency[str],  # noqa: ARG002 - its presence is the signature guard
        transfer_id: FromPath[str],
        data: JSONBody[Reversal],
    ) -> Transfer:
        _check_transfer_id(transfer_id)
        return await bank.run(bank.ledger.reverse, transfer_id, data.memo)


class ReservationController(Controller):
    """Payers' money set aside for a disbursement batch, the credits paid from it, and its release (issue 12)."""

    path = "/v1/reservations"
    dependencies = {"caller": Provide(_caller)}  # noqa: RUF012

    @post("/", status_code=201, responses=problems("insufficient_funds", "reservation_conflict", *SIGNED_PROBLEMS))
    async def reserve(
        self,
        bank: NamedDependency[Bank],
        caller: NamedDependency[str],  # noqa: ARG002 - its presence is the signature guard
        data: JSONBody[NewReservation],
    ) -> Response[Reservation]:
        reservation, made = await bank.run(
            bank.ledger.reserve, data.reservation_id, data.payer_id, data.amount_fen, data.memo
        )
        return Response(reservation, status_code=201 if made else 200)

    @get("/{reservation_id:str}", responses=problems("reservation_not_found", *SIGNED_PROBLEMS))
    async def one(
        self,
        bank: NamedDependency[Bank],
        caller: NamedDependency[str],  # noqa: ARG002 - its presence is the signature guard
        reservation_id: FromPath[str],
    ) -> Reservation:
        found = await bank.run(bank.ledger.reservation, reservation_id)
        if found is None:
            raise Refusal("reservation_not_found", "the bank has no reservation with this id")
        return found

    @post(
        "/{reservation_id:str}/credits",
        status_code=201,
        responses=problems(
            "credit_refused",
            "reservation_not_found",
            "reservation_released",
            "reservation_exhausted",
            "transfer_conflict",
            *SIGNED_PROBLEMS,
        ),
    )
    async def credit(
        self,
        request: Request[Any, Any, Any],
        bank: NamedDependency[Bank],
        caller: NamedDependency[str],  # noqa: ARG002 - its presence is the signature guard
        reservation_id: FromPath[str],
        data: JSONBody[NewDisbursement],
    ) -> Response[Transfer]:
        if bank.unavailable_credits > 0:
            bank.unavailable_credits -= 1
            raise Refusal("bank_unavailable", "a transient fault (the stand-in's unavailable_credits)")
        transfer, made = await bank.run(
            bank.ledger.disburse,
            reservation_id,
            data.transfer_id,
            data.card_id,
            data.amount_fen,
            data.memo,
            bank.refused_cards,
        )
        released = bank.released["disbursement"]
        if made and not released.is_set():
            await _until_released_or_gone(request, released)
        return Response(transfer, status_code=201 if made else 200)

    @post(
        "/{reservation_id:str}/release", status_code=200, responses=problems("reservation_not_found", *SIGNED_PROBLEMS)
    )
    async def release(
        self,
        bank: NamedDependency[Bank],
        caller: NamedDependency[str],  # noqa: ARG002 - its presence is the signature guard
        reservation_id: FromPath[str],
    ) -> Reservation:
        return await bank.run(bank.ledger.release, reservation_id)


class StandinController(Controller):
    """Stand-in only and unsigned: health, money into test accounts, balances, the ledger check, faults."""

    @get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @post("/test/credits", status_code=201)
    async def credit(self, bank: NamedDependency[Bank], data: JSONBody[TestCredit]) -> dict[str, Any]:
        transfer_id = new_id("tcr")
        balance = await bank.run(bank.ledger.fund, transfer_id, data.card_id, data.amount_fen)
        return {"transfer_id": transfer_id, "card_id": data.card_id, "balance_fen": balance}

    @get("/test/accounts/{card_id:str}")
    async def account(self, bank: NamedDependency[Bank], card_id: FromPath[str]) -> dict[str, Any]:
        return {"card_id": card_id, "balance_fen": await bank.run(bank.ledger.balance, card_id)}

    @post("/test/funding", status_code=201)
    async def funding(self, bank: NamedDependency[Bank], data: JSONBody[TestFunding]) -> dict[str, Any]:
        transfer_id = new_id("tfd")
        balance = await bank.run(bank.ledger.fund_payer, transfer_id, data.merchant_id, data.amount_fen)
        return {"transfer_id": transfer_id, "merchant_id": data.merchant_id, "balance_fen": balance}

    @get("/test/funding/{merchant_id:str}")
    async def funding_balance(self, bank: NamedDependency[Bank], merchant_id: FromPath[str]) -> dict[str, Any]:
        return {"merchant_id": merchant_id, "balance_fen": await bank.run(bank.ledger.payer_balance, merchant_id)}

    @get("/test/ledger")
    async def check(self, bank: NamedDependency[Bank]) -> dict[str, Any]:
        return dataclasses.asdict(await bank.run(bank.ledger.check))

    @post("/test/faults", status_code=200)
    async def faults(self, bank: NamedDependency[Bank], data: JSONBody[Faults]) -> dict[str, Any]:
        bank.hold("debit", data.hold_debits)
        bank.hold("credit", data.hold_credits)
        bank.hold("disbursement", data.hold_disbursements)
        if data.refuse_credits_to is not None:
            bank.refused_cards = frozenset({data.refuse_credits_to}) if data.refuse_credits_to else frozenset()
        if data.unavailable_credits is not None:
            bank.unavailable_credits = max(0, data.unavailable_credits)
        return bank.holding()


def _check_transfer_id(transfer_id: str) -> None:
    try:
        msgspec.convert(transfer_id, TransferId)
    except msgspec.ValidationError as exc:
        raise Refusal(
            "invalid_request", "transfer_id: 1 to 64 of A-Z a-z 0-9 _ - . :", extra={"fields": ["transfer_id"]}
        ) from exc


def create_standin_app(data_dir: Path, trust_keys_url: str | None, clock: Clock | None = None) -> Litestar:
    clock = clock or SystemClock()

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        bank = Bank(data_dir, trust_keys_url, clock)
        app.state.bank = bank
        try:
            yield
        finally:
            for released in bank.released.values():
                released.set()
            await bank.close()

    return Litestar(
        route_handlers=[TransferController, ReservationController, StandinController],
        lifespan=[lifespan],
        dependencies={"bank": Provide(_bank, sync_to_thread=False)},
        exception_handlers={
            Refusal: refusal_handler,
            ValidationException: validation_handler,
            UnicodeDecodeError: not_utf8_handler,
            HTTPException: http_exception_handler,
            Exception: internal_error_handler,
        },
        openapi_config=None,
        request_max_body_size=16 * 1024,
        debug=False,
    )


def serve(host: str, port: int, data_dir: Path, trust_keys_url: str | None) -> None:
    """Run the stand-in bank in this process until SIGINT or SIGTERM."""
    import uvicorn  # noqa: PLC0415

    uvicorn.run(
        create_standin_app(data_dir, trust_keys_url),
        host=host,
        port=port,
        access_log=False,
        log_level="warning",
        lifespan="on",
        # a held debit must not keep a stopping bank alive
        timeout_graceful_shutdown=2,
    )
