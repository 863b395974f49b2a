"""The payment scenario: bills created and paid at full rate, against the Argon2id bound, and verification p99
while payments run against it idle. Run on its own: `python load/payments.py [--quick]`."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import secrets
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import httpx
from actors import Api, Cast, add_operator, set_up
from drive import Job, Outcome, run, run_here
from prebuild import Factory, mint_codes
from report import RESULTS
from server import LONG_LIVED, Server, ecard_cli, forget_redis_keys, load_database, serving
from signer import Actor, ed25519_actor, new_nonce, self_check, signature_headers
from stats import Meter, figures
from wire import build_request

from ecard.bank.embedded import running_standin
from ecard.kit.passwords import PINS
from ecard.kit.signing import sign_request

PAY_ITEM = "wl-043"
PIN = "135790"
BILLS = "/v1/bills"
# Every payer's account holds this much: no payment of the run is refused for want of money.
FUNDS_FEN = 10**11


@dataclass(frozen=True)
class PayPlan:
    devices: int
    bound_s: float
    create_s: float
    pay_s: float
    verify_rate: float
    verify_s: float
    bills: int
    conns: int = 32
    warmup: int = 30


FULL = PayPlan(devices=50, bound_s=10, create_s=10, pay_s=20, verify_rate=100, verify_s=20, bills=3000)
QUICK = PayPlan(devices=20, bound_s=5, create_s=5, pay_s=8, verify_rate=50, verify_s=8, bills=1200)


def payment_env(data_dir: Path) -> dict[str, str]:
    """The run's environment, as load/run.py's, but on a database of its own (`<db>_ecard_load_payments`), so that
    it never drops the database of a load/run.py running beside it."""
    env = dict(os.environ)
    env.update(LONG_LIVED)
    env.update(
        ECARD_LOAD_ECHO="1",
        # the callbacks go to the service's own echo route on loopback
        ECARD_CALLBACK_ALLOW_LOOPBACK="1",
        ECARD_REDIS_PREFIX=f"ecardload:pay:{secrets.token_hex(6)}:",
        ECARD_DATA_DIR=str(data_dir),
    )
    database_url, redis_url = env.get("ECARD_DATABASE_URL"), env.get("ECARD_REDIS_URL")
    if database_url and redis_url:
        env["ECARD_DATABASE_URL"] = load_database(database_url, "_ecard_load_payments")
    else:
        env.pop("ECARD_DATABASE_URL", None)
        env.pop("ECARD_REDIS_URL", None)
    return env


def say(text: str) -> None:
    print(text, flush=True)


def argon2_bound(seconds: float) -> dict[str, Any]:
    """PIN checks per second with nothing else running: Argon2id verifications of a right PIN through
    `ecard.kit.passwords.PINS` (the service's own code and PIN lane), kept busy for `seconds`."""

    async def measure() -> tuple[int, float]:
        encoded = await PINS.hash(PIN)
        done = 0
        deadline = time.monotonic() + seconds
        workers = 2 * (os.cpu_count() or 1)

        async def checker() -> None:
            nonlocal done
            while time.monotonic() < deadline:
                if not await PINS.verify(encoded, PIN):
                    raise RuntimeError("the PIN did not verify")
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(checker() for _ in range(workers)))
        return done, time.monotonic() - started

    loop = asyncio.new_event_loop()
    try:
        count, elapsed = loop.run_until_complete(measure())
        one_ms = _one_check_ms(loop)
    finally:
        loop.close()
    return {
        "checks": count,
        "seconds": round(elapsed, 3),
        "checks_per_s": round(count / elapsed, 2),
        "one_check_ms": one_ms,
    }


def _one_check_ms(loop: asyncio.AbstractEventLoop) -> float:
    """One PIN check alone, the median of five."""
    encoded = loop.run_until_complete(PINS.hash(PIN))
    times = []
    for _ in range(5):
        started = time.perf_counter()
        loop.run_until_complete(PINS.verify(encoded, PIN))
        times.append(time.perf_counter() - started)
    return round(1000 * sorted(times)[2], 1)


def _payment_merchant(api: Api) -> Actor:
    actor = ed25519_actor()
    body = {
        "name": "武隆区自来水公司(压测)",
        "region": "cq",
        "items": [PAY_ITEM],
        "functions": ["payment"],
        "public_key": actor.jwk,
    }
    answer = api.admin("/v1/admin/merchants", body)
    actor.key_id, actor.ids["merchant_id"] = answer["key_id"], answer["merchant_id"]
    return actor


def prepare_payers(base_url: str, bank_url: str, devices: list[Actor]) -> None:
    """Each device sets its PIN (PUT, signed), and its card's bank account is funded through the stand-in."""
    with httpx.Client(base_url=base_url, timeout=60) as http, httpx.Client(base_url=bank_url, timeout=30) as bank:
        for device in devices:
            path = f"/v1/devices/{device.ids['device_id']}/pin"
            raw = json.dumps({"pin": PIN}).encode()
            headers = sign_request("PUT", f"{base_url}{path}", raw, device.key, device.key_id, device.alg)
            answer = http.put(path, content=raw, headers={"Content-Type": "application/json", **headers})
            if answer.status_code != 204:
                raise RuntimeError(f"setting a PIN: {answer.status_code} {answer.text}")
            funded = bank.post("/test/credits", json={"card_id": device.ids["card_id"], "amount_fen": FUNDS_FEN})
            if funded.status_code != 201:
                raise RuntimeError(f"funding a card: {funded.status_code} {funded.text}")


class Payments:
    """Pre-signed bill creations and payments for one server."""

    def __init__(self, port: int, merchant: Actor, devices: list[Actor], plan: PayPlan) -> None:
        self.port = port
        self.host = f"127.0.0.1:{port}"
        self.merchant = merchant
        self.devices = devices
        self.plan = plan
        self.notify_url = f"http://127.0.0.1:{port}/_load/echo"

    def _signed(self, actor: Actor, path: str, body: bytes) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(signature_headers(actor, "POST", path, body, int(time.time()), new_nonce()))
        return build_request("POST", path, self.host, headers, body)

    def creations(self, count: int) -> list[bytes]:
        run_id = secrets.token_hex(4)
        bodies = (
            {
                "out_bill_no": f"LOAD-{run_id}-{i}",
                "item_code": PAY_ITEM,
                "amount_fen": 100 + i % 9000,
                "description": "压测水费",
                "notify_url": self.notify_url,
                "expires_in_s": 7200,
            }
            for i in range(count)
        )
        return [self._signed(self.merchant, BILLS, json.dumps(b).encode()) for b in bodies]

    def pays(self, bill_ids: list[str]) -> list[bytes]:
        """One pay per bill, the devices taking turns (so one card's PIN checks rarely wait for each other)."""
        devices = itertools.cycle(self.devices)
        body = json.dumps({"pin": PIN}).encode()
        return [self._signed(next(devices), f"{BILLS}/{bill_id}/pay", body) for bill_id in bill_ids]

    def create(self, count: int, duration_s: float) -> tuple[list[str], Outcome]:
        job = Job(self.port, self.creations(count), 201, self.plan.conns, duration_s, keep_bodies=True)
        outcome = run(job)
        return [str(json.loads(body)["bill_id"]) for body in outcome.bodies if b'"bill_id"' in body], outcome


def _pays_child(job: Job, results: Queue[Outcome]) -> None:
    results.put(run_here(job))


def verification_while_paying(
    server: Server, factory: Factory, shop: Payments, plan: PayPlan, bills: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verification open loop at `verify_rate` for `verify_s`, while a forked process pays bills closed loop."""
    app = server.app_process()
    codes, _ = mint_codes(factory, int(plan.verify_rate * plan.verify_s) + 10, plan.conns)
    verifications = factory.verifications(codes)
    pays = Job(shop.port, shop.pays(bills), 200, plan.conns, plan.verify_s + 1)
    ctx = mp.get_context("fork")
    results: Queue[Outcome] = ctx.Queue()
    child = ctx.Process(target=_pays_child, args=(pays, results))
    meter = Meter(app, None).start()
    child.start()
    time.sleep(0.5)
    verified = run(Job(factory.port, verifications, 200, plan.conns, float("inf"), plan.verify_rate))
    paid = results.get(timeout=900)
    child.join()
    spent = meter.read()
    return figures(verified, 200, spent), figures(paid, 200, spent)


def measure(server: Server, env: dict[str, str], bank_url: str, plan: PayPlan) -> dict[str, Any]:
    cast: Cast = set_up(server.base_url, env, plan.devices)
    api = Api(server.base_url)
    try:
        api.login(add_operator(env))
        merchant = _payment_merchant(api)
    finally:
        api.close()
    prepare_payers(server.base_url, bank_url, cast.devices)
    say(f"set up: a payment merchant ({PAY_ITEM}), {len(cast.devices)} payers with PINs and funded accounts")
    factory = Factory(cast, server.port)
    shop = Payments(server.port, merchant, cast.devices, plan)
    app = server.app_process()

    bound = argon2_bound(plan.bound_s)
    say(
        f"  Argon2id alone: {bound['checks_per_s']:.1f} PIN checks/s ({bound['checks']} in {bound['seconds']} s),"
        f" one check {bound['one_check_ms']} ms"
    )

    meter = Meter(app, None).start()
    bills, created = shop.create(plan.bills, plan.create_s)
    creates = figures(created, 201, meter.read())
    say(f"  bill creation: {creates['rps']:.0f} bills/s, p99 {creates['latency_ms']['p99']:.1f} ms")

    run(Job(shop.port, shop.pays(bills[: plan.warmup]), 200, plan.conns))
    meter = Meter(app, None).start()
    paid = run(Job(shop.port, shop.pays(bills[plan.warmup :]), 200, plan.conns, plan.pay_s))
    pays = figures(paid, 200, meter.read())
    say(
        f"  pays: {pays['rps']:.1f} pays/s over {pays['requests']}, p50 {pays['latency_ms']['p50']:.0f} /"
        f" p99 {pays['latency_ms']['p99']:.0f} ms, non-200 {pays['unexpected']} {pays['unexpected_samples'][:1]}"
    )

    codes, _ = mint_codes(factory, int(plan.verify_rate * plan.verify_s) + 10, plan.conns)
    meter = Meter(app, None).start()
    idle = run(Job(factory.port, factory.verifications(codes), 200, plan.conns, float("inf"), plan.verify_rate))
    verify_idle = figures(idle, 200, meter.read())
    say(f"  verification at {plan.verify_rate:g}/s, idle: p99 {verify_idle['latency_ms']['p99']:.2f} ms")

    more, _ = shop.create(plan.bills, float("inf"))
    verify_busy, pays_busy = verification_while_paying(server, factory, shop, plan, more)
    say(
        f"  verification at {plan.verify_rate:g}/s while paying ({pays_busy['rps']:.1f} pays/s):"
        f" p99 {verify_busy['latency_ms']['p99']:.2f} ms, non-200 {verify_busy['unexpected']}"
    )
    ratio = pays["rps"] / bound["checks_per_s"] if bound["checks_per_s"] else 0.0
    p99_ratio = (
        verify_busy["latency_ms"]["p99"] / verify_idle["latency_ms"]["p99"] if verify_idle["latency_ms"]["p99"] else 0
    )
    return {
        "argon2_bound": bound,
        "bill_creation": creates,
        "pays": pays,
        "verification_idle": verify_idle,
        "verification_while_paying": verify_busy,
        "pays_while_verifying": pays_busy,
        "ratios": {
            "pays_over_argon2_bound": {"value": round(ratio, 3), "target": ">= 0.7", "met": ratio >= 0.7},
            "verification_p99_paying_over_idle": {
                "value": round(p99_ratio, 3),
                "target": "<= 1.5",
                "met": p99_ratio <= 1.5,
            },
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short run (about 2 minutes)")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    self_check()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    say(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="ecard-load-pay-") as folder:
        env = payment_env(Path(folder) / "data")
        try:
            if env.get("ECARD_DATABASE_URL"):
                ecard_cli(env, "migrate")
            with running_standin(Path(folder) / "bank", None, Path(folder) / "bank.log") as standin:
                bank_url = standin.url
                env["ECARD_BANK_URL"] = bank_url
                with serving(env) as server:
                    say(f"ecard serve on {server.base_url} (pid {server.proc.pid}), stand-in bank on {bank_url}")
                    results = measure(server, env, bank_url, plan)
        finally:
            forget_redis_keys(env)
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "plan": asdict(plan), **results}
    for name, check in results["ratios"].items():
        say(f"{name}: {check['value']:g}  (target {check['target']}: {'met' if check['met'] else 'NOT met'})")
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}-payments.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    say(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
