"""Schemathesis over every operation of the served OpenAPI document, against a live installation: no answer is a 5xx.

The requests are signed as API.md asks (tests/contract/fuzz_hooks.py), by the kind of client each route is for, so
that generated bodies get past the signature check to the code that reads them; path parameters are now and then
the ids of real cards, devices, merchants and bills, so that the fuzz reaches the rules behind the look-ups.

    python -m tests.contract.fuzz            # the full profile (`make fuzz`): at least 10,000 cases
    python -m tests.contract.fuzz --quick    # the profile tests/contract/test_fuzz.py runs

With ECARD_DATABASE_URL and ECARD_REDIS_URL set it makes its databases beside the configured one; without them it
starts embedded ones in a temporary folder. It prints the number of cases and of 5xx answers, and each 5xx request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx

from ecard.kit.infra import database_name, migrate, recreate_database
from ecard.kit.jwk import private_jwk
from tests.contract.installation import Installation, installed
from tests.live import REPO, LiveWorld
from tests.support import SERVICES_ENV, Actor, ed25519_actor

PIN = "135790"


@dataclass(frozen=True)
class Profile:
    """How much to generate: schemathesis' cases per operation and phases, and its seed (the same run each time)."""

    max_examples: int
    phases: str
    seed: int = 20251231
    workers: int = 1


QUICK = Profile(max_examples=4, phases="examples,coverage,fuzzing")
FULL = Profile(max_examples=300, phases="examples,coverage,fuzzing", workers=2)


@dataclass
class Outcome:
    cases: int
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[dict[str, Any]] = field(default_factory=list)
    by_operation: dict[str, Counter[int]] = field(default_factory=dict)
    documented: set[str] = field(default_factory=set)
    schemathesis_exit: int = 0
    log: str = ""

    @property
    def five_xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


def _key(actor: Actor) -> dict[str, Any]:
    return {"jwk": private_jwk(actor.key), "key_id": actor.key_id}


class PartnerKeys:
    """A partner issuer (`tb`) as far as the fuzz needs one: its key sets on loopback, its request key in our hands."""

    issuer = "tb"

    def __init__(self) -> None:
        self.actor = ed25519_actor()
        documents = {
            "/v1/issuer/keys": {"issuer": self.issuer, "keys": []},
            "/v1/issuer/request-keys": {"issuer": self.issuer, "keys": [{**self.actor.jwk, "kid": "tb-request-1"}]},
        }

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps(documents.get(self.path.partition("?")[0], {})).encode()
                self.send_response(200 if self.path.partition("?")[0] in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


async def _parties(installation: Installation, partner: PartnerKeys) -> dict[str, Any]:
    """A channel, an enrolled phone with a PIN and money, a merchant with a terminal and a bill, a partner, a portal."""
    async with httpx.AsyncClient(base_url=installation.cq.base, timeout=30.0) as client:
        world = LiveWorld(installation.cq, client)
        channel = await world.channel()
        phone = await world.device(channel=channel)
        pinned = await world.signed(phone, "PUT", f"/v1/devices/{phone.ids['device_id']}/pin", {"pin": PIN})
        assert pinned.status_code == 204, pinned.text
        credited = await client.post(
            f"{installation.bank.base}/test/credits", json={"card_id": phone.ids["card_id"], "amount_fen": 10**8}
        )
        assert credited.status_code == 201, credited.text
        merchant = await world.merchant(["wl-030", "wl-011", "wl-043", "wl-022"], name="武隆区便民服务中心")
        terminal = await world.terminal(merchant, "gate-1")
        # what the routes that suspend, cancel or disable are handed, so that the parties above stay usable
        spare_phone = await world.device(name="李小龙", channel=channel)
        spare_channel = await world.channel()
        spare_merchant = await world.merchant(["wl-030"], name="武隆区图书馆")
        await world.terminal(spare_merchant, "gate-2")
        bills = []
        for out_bill_no in ("FUZZ-0001", "FUZZ-0002"):
            bill = await world.signed(
                merchant,
                "POST",
                "/v1/bills",
                {
                    "out_bill_no": out_bill_no,
                    "item_code": "wl-043",
                    "amount_fen": 4200,
                    "description": "水费",
                    "notify_url": f"{installation.cq.base}/healthz",
                    "expires_in_s": 604800,
                },
            )
            assert bill.status_code == 201, bill.text
            bills.append(bill.json()["bill_id"])
        registered = await world.admin(
            "POST",
            "/v1/admin/partners",
            {
                "issuer": partner.issuer,
                "name": "西藏电子社保卡",
                "base_url": partner.base,
                "public_key": {**partner.actor.jwk, "kid": "tb-request-1"},
            },
        )
        assert registered.status_code == 201, registered.text
        partner.actor.key_id = registered.json()["key_id"]
        portal = await world.portal(["region"], ["https://portal.example.cn/callback"], ["wl-030"])
        return {
            "base": installation.cq.base,
            "token": await world.operator_token(),
            "keys": {
                "channel": _key(channel),
                "device": _key(phone),
                "merchant": _key(merchant),
                "terminal": _key(terminal),
                "partner": _key(partner.actor),
            },
            "ids": {
                "card_id": phone.ids["card_id"],
                "device_id": phone.ids["device_id"],
                "merchant_id": merchant.ids["merchant_id"],
                "channel_id": channel.ids["channel_id"],
                "terminal_id": "gate-1",
                "bill_id": bills[0],
                "out_bill_no": "FUZZ-0001",
                "issuer": "sc",
                "item_code": "wl-030",
                "client_id": portal.ids["client_id"],
            },
            "spare_ids": {
                "card_id": spare_phone.ids["card_id"],
                "merchant_id": spare_merchant.ids["merchant_id"],
                "channel_id": spare_channel.ids["channel_id"],
                "terminal_id": "gate-2",
                "bill_id": bills[1],
            },
            "pin": PIN,
        }


def _schemathesis(installation: Installation, profile: Profile, folder: Path, credentials: Path) -> Outcome:
    tally = folder / "tally.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SCHEMATHESIS_HOOKS": "tests.contract.fuzz_hooks",
        "ECARD_FUZZ_CREDENTIALS": str(credentials),
        "ECARD_FUZZ_TALLY": str(tally),
        "ECARD_FUZZ_SEED": str(profile.seed),
    }
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{installation.cq.base}/schema/openapi.json",
        "--checks",
        "not_a_server_error",
        "--phases",
        profile.phases,
        "--max-examples",
        str(profile.max_examples),
        "--seed",
        str(profile.seed),
        "--workers",
        str(profile.workers),
        "--generation-database",
        "none",
        "--no-shrink",
        "--continue-on-failure",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
    ]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=3600, check=False)
    outcome = Outcome(cases=0, schemathesis_exit=done.returncode, log=done.stdout[-20000:] + done.stderr[-5000:])
    document = httpx.get(f"{installation.cq.base}/schema/openapi.json", timeout=30).json()
    outcome.documented = {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch")
    }
    for line in tally.read_text(encoding="utf-8").splitlines() if tally.exists() else []:
        entry = json.loads(line)
        outcome.cases += 1
        outcome.statuses[entry["status"]] += 1
        outcome.by_operation.setdefault(entry["operation"], Counter())[entry["status"]] += 1
        if entry["status"] >= 500:
            outcome.server_errors.append(entry)
    return outcome


def fuzz(service_urls: tuple[str, str], folder: Path, profile: Profile, name: str = "fuzz") -> Outcome:
    """One run of `profile` against a fresh installation."""
    with installed(service_urls, folder, name) as installation, PartnerKeys() as partner:
        credentials = folder / "credentials.json"
        credentials.write_text(json.dumps(asyncio.run(_parties(installation, partner))), encoding="utf-8")
        credentials.chmod(0o600)
        return _schemathesis(installation, profile, folder, credentials)


@contextlib.contextmanager
def _services(folder: Path) -> Iterator[tuple[str, str]]:
    """The services of a run outside pytest, with its migrated database as the template live servers copy
    (what tests/conftest.py's controller prepares for a test run)."""
    database_url, redis_url = os.environ.get("ECARD_DATABASE_URL"), os.environ.get("ECARD_REDIS_URL")
    if database_url and redis_url:
        own = asyncio.run(recreate_database(database_url, "_ecard_fuzz"))
        asyncio.run(migrate(own))
        with _template(own, redis_url):
            yield own, redis_url
        return
    from ecard.kit.embedded import EmbeddedServices  # noqa: PLC0415

    embedded = EmbeddedServices(folder / "services")
    urls = embedded.start()
    try:
        asyncio.run(migrate(urls.database_url))
        with _template(urls.database_url, urls.redis_url):
            yield urls.database_url, urls.redis_url
    finally:
        embedded.stop()


@contextlib.contextmanager
def _template(database_url: str, redis_url: str) -> Iterator[None]:
    template = database_name(database_url)
    os.environ[SERVICES_ENV] = json.dumps({"database_url": database_url, "redis_url": redis_url, "template": template})
    try:
        yield
    finally:
        os.environ.pop(SERVICES_ENV, None)


def _statuses(counts: Counter[int]) -> str:
    return ", ".join(f"{status}×{n}" for status, n in sorted(counts.items()))


def report(outcome: Outcome, by_operation: bool = False) -> str:
    lines = [
        f"operations: {len(outcome.by_operation)} of {len(outcome.documented)} documented",
        f"cases: {outcome.cases}",
        f"5xx: {outcome.five_xx}",
        "statuses: " + _statuses(outcome.statuses),
    ]
    if by_operation:
        lines += [f"  {name}: {_statuses(counts)}" for name, counts in sorted(outcome.by_operation.items())]
    lines += [
        f"  {e['status']} {e.get('code')} {e['method']} {e['url']} body={e.get('body', '')[:300]!r}"
        for e in outcome.server_errors
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the fast profile of the test suite")
    parser.add_argument("--max-examples", type=int, help="cases per operation and phase (full profile: 150)")
    parser.add_argument("--seed", type=int, help="schemathesis' seed (default: fixed, the same run each time)")
    parser.add_argument("--by-operation", action="store_true", help="also print the answers' statuses per operation")
    args = parser.parse_args()
    profile = QUICK if args.quick else FULL
    if args.max_examples:
        profile = Profile(args.max_examples, profile.phases, profile.seed, profile.workers)
    if args.seed is not None:
        profile = Profile(profile.max_examples, profile.phases, args.seed, profile.workers)
    with tempfile.TemporaryDirectory(prefix="ecard-fuzz-") as tmp, _services(Path(tmp)) as urls:
        outcome = fuzz(urls, Path(tmp), profile)
    print(report(outcome, by_operation=args.by_operation))
    if outcome.cases == 0:
        print(outcome.log)
    return 1 if outcome.server_errors or outcome.cases == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
