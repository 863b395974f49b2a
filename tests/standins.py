"""Stand-ins of external systems as real processes on loopback ports: `ecard standin bank` and `ecard standin yukuai`.

    @pytest.fixture
    def bank(tmp_path: Path) -> Iterator[StandinBank]:
        with StandinBank.running(tmp_path / "bank") as standin:  # trust_keys=f"{live.base}/v1/issuer/request-keys"
            yield standin

Then `await bank.credit(card_id, 10_000)`, `bank.adapter(signer)` (an `HttpBank`), `await bank.balance(card_id)`,
`await bank.ledger()`, `await bank.hold_debits()` / `release_debits()` (and `_credits`);
`ECARD_BANK_URL=bank.base` for a `LiveEcard`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from ecard.bank import HttpBank, RequestSigner
from tests.live import ServerProcess


class StandinBank(ServerProcess):
    """`ecard standin bank` on a free loopback port with its ledger under `folder`; survives stop/start."""

    name = "bank"

    def __init__(self, folder: Path, trust_keys: str | None = None) -> None:
        super().__init__(folder)
        self.data = folder / "ledger"
        self.trust_keys = trust_keys

    @classmethod
    @contextlib.contextmanager
    def running(cls, folder: Path, trust_keys: str | None = None) -> Iterator[StandinBank]:
        """Started for the block, killed (by pid) at its end whatever happened."""
        bank = cls(folder, trust_keys)
        bank.start()
        try:
            yield bank
        finally:
            bank.kill()

    def command(self) -> list[str]:
        command = ["standin", "bank", "--port", str(self.port), "--data", str(self.data)]
        if self.trust_keys:
            command += ["--trust-keys", self.trust_keys]
        return command

    def adapter(self, signer: RequestSigner | None = None, timeout_s: float = 5.0) -> HttpBank:
        """ecard's bank adapter pointed at this stand-in (the caller closes it)."""
        return HttpBank(self.base, signer, timeout_s)

    async def credit(self, card_id: str, amount_fen: int) -> int:
        """Money into the card's account (`POST /test/credits`); the new balance."""
        answer = await self._call("POST", "/test/credits", {"card_id": card_id, "amount_fen": amount_fen})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["balance_fen"])

    async def balance(self, card_id: str) -> int:
        answer = await self._call("GET", f"/test/accounts/{card_id}")
        assert answer.status_code == 200, answer.text
        return int(answer.json()["balance_fen"])

    async def ledger(self) -> dict[str, Any]:
        """The bank's own ledger check: `balanced` is True when every transfer and the whole ledger sum to 0."""
        answer = await self._call("GET", "/test/ledger")
        assert answer.status_code == 200, answer.text
        checked: dict[str, Any] = answer.json()
        return checked

    async def hold_debits(self) -> None:
        """From now on debits are committed but their answers are held, until released or the client hangs up."""
        answer = await self._call("POST", "/test/faults", {"hold_debits": True})
        assert answer.status_code == 200, answer.text

    async def release_debits(self) -> None:
        """Held answers are sent, and new debits are answered at once again."""
        answer = await self._call("POST", "/test/faults", {"hold_debits": False})
        assert answer.status_code == 200, answer.text

    async def hold_credits(self) -> None:
        """As `hold_debits`, for credits (refunds)."""
        answer = await self._call("POST", "/test/faults", {"hold_credits": True})
        assert answer.status_code == 200, answer.text

    async def release_credits(self) -> None:
        answer = await self._call("POST", "/test/faults", {"hold_credits": False})
        assert answer.status_code == 200, answer.text

    async def fund(self, merchant_id: str, amount_fen: int) -> int:
        """Money into a payer's funding account (`POST /test/funding`); the new balance."""
        answer = await self._call("POST", "/test/funding", {"merchant_id": merchant_id, "amount_fen": amount_fen})
        assert answer.status_code == 201, answer.text
        return int(answer.json()["balance_fen"])

    async def funding(self, merchant_id: str) -> int:
        answer = await self._call("GET", f"/test/funding/{merchant_id}")
        assert answer.status_code == 200, answer.text
        return int(answer.json()["balance_fen"])

    async def faults(self, **switches: Any) -> dict[str, Any]:
        """Set the stand-in's fault switches (`POST /test/faults`), e.g. `refuse_credits_to=card_id`."""
        answer = await self._call("POST", "/test/faults", switches)
        assert answer.status_code == 200, answer.text
        held: dict[str, Any] = answer.json()
        return held

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base, timeout=10.0) as client:
            return await client.request(method, path, json=body)


class StandinYukuai(ServerProcess):
    """`ecard standin yukuai` on a free loopback port, checking the signatures of the ecard it trusts."""

    name = "yukuai"

    def __init__(self, folder: Path, trust_keys: str) -> None:
        super().__init__(folder)
        self.trust_keys = trust_keys

    def command(self) -> list[str]:
        return ["standin", "yukuai", "--port", str(self.port), "--trust-keys", self.trust_keys, "--code-ttl", "60"]
