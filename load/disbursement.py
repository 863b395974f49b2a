"""The disbursement scenario (issue 12): one batch of up to 100,000 rows uploaded as CSV, validated, approved and
paid against the stand-in bank, beside the stand-in's own credit rate, the server's RSS, and verification p99 while
the batch pays against it idle. Run on its own: `python load/disbursement.py [--quick] [--rows N]`."""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, overload
from urllib.parse import urlencode

import httpx
import psutil
from actors import Cast, add_operator, set_up, totp_now
from drive import Job, Outcome, run
from prebuild import Factory, mint_codes
from report import RESULTS
from server import LONG_LIVED, Server, ecard_cli, forget_redis_keys, free_port, load_database, serving
from signer import Actor, ed25519_actor, id_number, self_check
from stats import Meter, figures, rss_mb
from wire import build_request

from ecard.bank.embedded import running_standin
from ecard.config import Settings
from ecard.federation import Audience, IssuerRequestKey, IssuerRequestKeys
from ecard.kit.crypto import Keys, load_master_key
from ecard.kit.infra import create_pool
from ecard.kit.signing import sign_request

ITEM = "wl-022"  # 城乡居民最低生活保障金发放: a disbursement item
BATCHES = "/v1/disbursements"
CSV_HEADER = "out_row_no,id_number,name,amount_fen,memo\n"
MEMO = "2026年11月低保金"
# the stand-in's own rate is measured (on a stand-in of its own, started alike) with as many credits from one
# reservation as the batch has, at most this many
PROBE_MAX = 100_000
SAMPLE_S = 0.2
STATUS_EVERY_S = 0.5
PAY_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class DisbursementPlan:
    rows: int
    devices: int = 20
    conns: int = 32
    # the payer's concurrent bank credits (ECARD_DISBURSEMENT_CONCURRENCY); the stand-in probe uses as many
    concurrency: int = 16
    verify_rate: float = 50
    verify_s: float = 20


FULL = DisbursementPlan(rows=100_000, verify_s=30)
QUICK = DisbursementPlan(rows=5_000, verify_s=8)


def say(text: str) -> None:
    print(text, flush=True)


def disbursement_env(data_dir: Path, concurrency: int) -> dict[str, str]:
    """The run's environment, as load/run.py's, on a database of its own (`<db>_ecard_load_disb`)."""
    env = dict(os.environ)
    env.update(LONG_LIVED)
    env.update(
        ECARD_LOAD_ECHO="1",
        # batch.completed goes to the service's own echo route on loopback
        ECARD_CALLBACK_ALLOW_LOOPBACK="1",
        ECARD_DISBURSEMENT_CONCURRENCY=str(concurrency),
        ECARD_REDIS_PREFIX=f"ecardload:disb:{secrets.token_hex(6)}:",
        ECARD_DATA_DIR=str(data_dir),
    )
    database_url, redis_url = env.get("ECARD_DATABASE_URL"), env.get("ECARD_REDIS_URL")
    if database_url and redis_url:
        env["ECARD_DATABASE_URL"] = load_database(database_url, "_ecard_load_disb")
    else:
        env.pop("ECARD_DATABASE_URL", None)
        env.pop("ECARD_REDIS_URL", None)
    return env


def operator_token(base_url: str, env: dict[str, str]) -> str:
    """A new operator (`ecard operator add`) logged in with its TOTP: its bearer token."""
    operator = add_operator(env)
    body = {"username": operator["username"], "password": operator["password"], "totp": totp_now(operator["totp_uri"])}
    answer = httpx.post(f"{base_url}/v1/admin/sessions", json=body, timeout=30)
    if answer.status_code != 201:
        raise RuntimeError(f"operator login: {answer.status_code} {answer.text}")
    return str(answer.json()["token"])


def paying_department(base_url: str, token: str) -> Actor:
    actor = ed25519_actor()
    body = {
        "name": "武隆区民政局(压测)",
        "region": "cq",
        "items": [ITEM],
        "functions": ["disbursement"],
        "public_key": actor.jwk,
    }
    answer = httpx.post(
        f"{base_url}/v1/admin/merchants", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    if answer.status_code != 201:
        raise RuntimeError(f"creating the paying department: {answer.status_code} {answer.text}")
    actor.key_id, actor.ids["merchant_id"] = answer.json()["key_id"], answer.json()["merchant_id"]
    return actor


@dataclass(frozen=True)
class Person:
    name: str
    id_number: str
    card_id: str


def enrol(server: Server, token: str, count: int, conns: int) -> tuple[list[Person], dict[str, Any]]:
    """`count` cardholders registered through POST /v1/admin/cardholders, pre-built and sent over `conns`
    keep-alive connections (the fastest honest path: every one through the API, validated, sealed, audited)."""
    rng = random.Random(secrets.randbits(64))
    run_no = rng.randrange(10**5)
    numbers: set[str] = set()
    while len(numbers) < count:
        numbers.add(id_number(rng))
    people = [(f"受助{i:06d}", number) for i, number in enumerate(sorted(numbers, key=lambda _: rng.random()))]
    headers = {"Content-Type": "application/json", "Accept": "application/json", "Authorization": f"Bearer {token}"}
    requests = [
        build_request(
            "POST",
            "/v1/admin/cardholders",
            f"127.0.0.1:{server.port}",
            headers,
            json.dumps(
                {"name": name, "id_number": number, "region": "cq", "card_serial": f"DSB{run_no:05d}{i:08d}"},
                ensure_ascii=False,
            ).encode(),
        )
        for i, (name, number) in enumerate(people)
    ]
    meter = Meter(server.app_process(), None).start()
    outcome = run(Job(server.port, requests, 201, conns, keep_bodies=True))
    if set(outcome.statuses) != {201}:
        raise RuntimeError(f"enrolling: {dict(outcome.statuses)} {outcome.unexpected}")
    # the driver keeps bodies in answer order, per connection; match them back to people by serial
    card_of = {answer["card_serial"]: answer["card_id"] for answer in map(json.loads, outcome.bodies)}
    enrolled = [Person(name, number, card_of[f"DSB{run_no:05d}{i:08d}"]) for i, (name, number) in enumerate(people)]
    return enrolled, figures(outcome, 201, meter.read())


def amount_of(index: int) -> int:
    """Each row's amount: 200.00 to 599.99 yuan, as a month's allowance is."""
    return 20_000 + (index * 7919) % 40_000


def batch_csv(people: list[Person]) -> bytes:
    out = io.StringIO()
    out.write(CSV_HEADER)
    for i, person in enumerate(people):
        out.write(f"R{i:06d},{person.id_number},{person.name},{amount_of(i)},{MEMO}\n")
    return out.getvalue().encode()


def chunks(raw: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


class Department:
    """The paying department's signed calls: upload and status."""

    def __init__(self, base_url: str, merchant: Actor) -> None:
        self.base_url = base_url
        self.merchant = merchant
        self.http = httpx.Client(base_url=base_url, timeout=PAY_TIMEOUT_S)

    def close(self) -> None:
        self.http.close()

    def upload(self, raw: bytes, notify_url: str) -> dict[str, Any]:
        query = urlencode(
            {
                "out_batch_no": f"LOAD-{secrets.token_hex(6)}",
                "item_code": ITEM,
                "description": "2026年11月城乡低保(压测)",
                "notify_url": notify_url,
            }
        )
        path = f"{BATCHES}?{query}"
        m = self.merchant
        headers = sign_request("POST", f"{self.base_url}{path}", raw, m.key, m.key_id, m.alg)
        headers.update({"Content-Type": "text/csv", "Content-Length": str(len(raw))})
        answer = self.http.post(path, content=chunks(raw), headers=headers)
        if answer.status_code != 201:
            raise RuntimeError(f"uploading the batch: {answer.status_code} {answer.text[:500]}")
        made: dict[str, Any] = answer.json()
        return made

    def batch(self, batch_id: str) -> dict[str, Any]:
        path = f"{BATCHES}/{batch_id}"
        m = self.merchant
        headers = sign_request("GET", f"{self.base_url}{path}", b"", m.key, m.key_id, m.alg)
        answer = self.http.get(path, headers=headers)
        if answer.status_code != 200:
            raise RuntimeError(f"reading the batch: {answer.status_code} {answer.text[:500]}")
        found: dict[str, Any] = answer.json()
        return found


@dataclass
class Watch:
    """A thread that samples the app process's RSS, and (given a batch) the batch's status, until stopped."""

    app: psutil.Process
    department: Department | None = None
    batch_id: str = ""
    peak_mb: float = 0.0
    samples: int = 0
    seen: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Watch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        next_status = 0.0
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb(self.app))
            self.samples += 1
            now = time.perf_counter()
            if self.department is not None and now >= next_status:
                self.seen.append((now, self.department.batch(self.batch_id)))
                next_status = now + STATUS_EVERY_S
            self._stop.wait(SAMPLE_S)

    def last(self) -> dict[str, Any]:
        return self.seen[-1][1] if self.seen else {}

    def stop(self) -> float:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_mb = max(self.peak_mb, rss_mb(self.app))
        return self.peak_mb


def bank_signer(env: dict[str, str]) -> IssuerRequestKey:
    """The issuer's request key for the bank, as the server signs with it (loaded after the server made it)."""
    settings = Settings.from_env(env)

    async def load() -> IssuerRequestKey:
        assert settings.database_url
        pool = await create_pool(settings.database_url, 1, 2)
        try:
            keys = await IssuerRequestKeys.load(pool, Keys.from_master(load_master_key(settings)), settings.issuer_id)
        finally:
            await pool.close()
        return keys.signer(Audience.BANK)

    return asyncio.run(load())


class SignedCredits(Sequence[bytes]):
    """The probe's credits as raw requests, each signed as it is taken (as the payer signs at sending): a 100,000-row
    probe outlasts the stand-in's signature window, so they cannot all be signed before."""

    def __init__(self, signer: IssuerRequestKey, bank_url: str, reservation: str, card_ids: list[str]) -> None:
        self._signer = signer
        self._url = bank_url
        self._host = f"127.0.0.1:{bank_port(bank_url)}"
        self._path = f"/v1/reservations/{reservation}/credits"
        self._run = secrets.token_hex(4)
        self._cards = card_ids

    def __len__(self) -> int:
        return len(self._cards)

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index %= len(self)
        body = {"transfer_id": f"probe-{self._run}-{index}", "card_id": self._cards[index]}
        raw = json.dumps({**body, "amount_fen": amount_of(index), "memo": MEMO}, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", **self._signer.sign("POST", f"{self._url}{self._path}", raw)}
        return build_request("POST", self._path, self._host, headers, raw)


def standin_rate(bank_url: str, env: dict[str, str], people: list[Person], count: int, conns: int) -> dict[str, Any]:
    """The stand-in's credit rate alone: a funded payer, one reservation, then `count` signed credits from it over
    `conns` connections, closed loop, as the payer sends them (same path, same signature, same verification)."""
    signer = bank_signer(env)
    port = bank_port(bank_url)
    run_id = secrets.token_hex(4)
    payer, reservation = f"loadprobe-{run_id}", f"rsv-probe-{run_id}"
    total = sum(amount_of(i) for i in range(count))
    with httpx.Client(base_url=bank_url, timeout=60) as bank:
        funded = bank.post("/test/funding", json={"merchant_id": payer, "amount_fen": total})
        if funded.status_code != 201:
            raise RuntimeError(f"funding the probe payer: {funded.status_code} {funded.text}")
        raw = json.dumps({"reservation_id": reservation, "payer_id": payer, "amount_fen": total}).encode()
        headers = signer.sign("POST", f"{bank_url}/v1/reservations", raw)
        held = bank.post("/v1/reservations", content=raw, headers={"Content-Type": "application/json", **headers})
        if held.status_code != 201:
            raise RuntimeError(f"the probe reservation: {held.status_code} {held.text}")
    requests = SignedCredits(signer, bank_url, reservation, [people[i % len(people)].card_id for i in range(count)])
    meter = Meter(bank_process(bank_url), None).start()
    outcome: Outcome = run(Job(port, requests, 201, conns))
    return figures(outcome, 201, meter.read())


def bank_port(bank_url: str) -> int:
    return int(bank_url.rsplit(":", 1)[1])


def bank_process(bank_url: str) -> psutil.Process:
    """The stand-in bank's process: the one listening on its port."""
    port = bank_port(bank_url)
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and getattr(conn.laddr, "port", None) == port and conn.pid:
            return psutil.Process(conn.pid)
    raise RuntimeError(f"nothing listens on {bank_url}")


def approve(base_url: str, tokens: list[str], batch_id: str) -> None:
    for token in tokens:
        answer = httpx.post(
            f"{base_url}/v1/admin/disbursements/{batch_id}/approve",
            json={"reason": "核对无误(压测)"},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
        if answer.status_code != 200:
            raise RuntimeError(f"approving: {answer.status_code} {answer.text}")


def idle_verification(factory: Factory, app: psutil.Process, codes: list[str], rate: float) -> dict[str, Any]:
    meter = Meter(app, None).start()
    outcome = run(Job(factory.port, factory.verifications(codes), 200, 32, float("inf"), rate))
    return figures(outcome, 200, meter.read())


def measure(
    server: Server, env: dict[str, str], bank_url: str, probe_url: str, plan: DisbursementPlan
) -> dict[str, Any]:
    app = server.app_process()
    cast: Cast = set_up(server.base_url, env, plan.devices)
    token = operator_token(server.base_url, env)
    merchant = paying_department(server.base_url, token)
    factory = Factory(cast, server.port)

    started = time.perf_counter()
    people, enrolled = enrol(server, token, plan.rows, plan.conns)
    enrol_s = time.perf_counter() - started
    say(f"enrolled {len(people)} cardholders through the API in {enrol_s:.1f} s ({enrolled['rps']:.0f}/s)")

    count = int(plan.verify_rate * plan.verify_s) + 10
    idle_codes, _ = mint_codes(factory, count, plan.conns)
    verify_idle = idle_verification(factory, app, idle_codes, plan.verify_rate)
    say(f"  verification at {plan.verify_rate:g}/s, idle: p99 {verify_idle['latency_ms']['p99']:.2f} ms")

    probe = standin_rate(probe_url, env, people, min(plan.rows, PROBE_MAX), plan.concurrency)
    say(
        f"  stand-in alone: {probe['rps']:.0f} credits/s over {probe['requests']} ({plan.concurrency} connections),"
        f" non-201 {probe['unexpected']} {probe['unexpected_samples'][:1]}"
    )

    raw = batch_csv(people)
    total_fen = sum(amount_of(i) for i in range(len(people)))
    with httpx.Client(base_url=bank_url, timeout=60) as bank:
        funded = bank.post("/test/funding", json={"merchant_id": merchant.ids["merchant_id"], "amount_fen": total_fen})
        if funded.status_code != 201:
            raise RuntimeError(f"funding the department: {funded.status_code} {funded.text}")
    department = Department(server.base_url, merchant)
    try:
        idle_mb = rss_mb(app)
        watch = Watch(app).start()
        started = time.perf_counter()
        made = department.upload(raw, f"{server.base_url}/_load/echo")
        upload_s = time.perf_counter() - started
        upload_peak = watch.stop()
        validated = {
            "rows": made["rows_total"],
            "csv_bytes": len(raw),
            "seconds": round(upload_s, 3),
            "rows_per_s": round(made["rows_total"] / upload_s, 1),
            "status": made["status"],
        }
        say(
            f"  upload ({len(raw) / 1e6:.1f} MB CSV): {validated['rows_per_s']:.0f} rows/s validated,"
            f" status {made['status']}"
        )
        batch_id = made["batch_id"]
        # minted and logged in only now: a full run's enrolment and stand-in probe outlast codes and sessions
        busy_codes, _ = mint_codes(factory, count, plan.conns)
        tokens = [operator_token(server.base_url, env), operator_token(server.base_url, env)]
        pay = pay_batch(
            server,
            department,
            factory,
            tokens,
            batch_id,
            busy_codes,
            Around(bank_url, probe["rps"], env.get("ECARD_DATABASE_URL")),
            plan,
        )
        after = department.batch(batch_id)
    finally:
        department.close()
    with httpx.Client(base_url=bank_url, timeout=60) as bank:
        left = bank.get(f"/test/funding/{merchant.ids['merchant_id']}").json()["balance_fen"]
        ledger = bank.get("/test/ledger").json()
    say(
        f"  paid {after['counts']['paid']} rows ({after['paid_fen']} fen) in {pay['seconds']:.1f} s:"
        f" {pay['rows_per_s']:.0f} rows/s; status {after['status']}, failed {after['counts']['failed']}"
    )
    say(
        f"  verification at {plan.verify_rate:g}/s while paying: p99 {pay['verification']['latency_ms']['p99']:.2f} ms,"
        f" non-200 {pay['verification']['unexpected']}"
    )
    peak_mb = max(upload_peak, pay["peak_rss_mb"])
    ratio = pay["rows_per_s"] / probe["rps"] if probe["rps"] else 0.0
    idle_p99 = verify_idle["latency_ms"]["p99"]
    p99_ratio = pay["verification"]["latency_ms"]["p99"] / idle_p99 if idle_p99 else 0.0
    above = peak_mb - idle_mb
    return {
        "enrolment": {**enrolled, "cardholders": len(people), "wall_s": round(enrol_s, 1)},
        "validation": validated,
        "standin_alone": probe,
        "paying": {k: v for k, v in pay.items() if k != "verification"},
        "batch": after,
        "funding_left_fen": left,
        "standin_ledger": ledger,
        "rss_mb": {
            "idle": round(idle_mb, 1),
            "peak_upload": round(upload_peak, 1),
            "peak_paying": round(pay["peak_rss_mb"], 1),
            "peak_above_idle": round(above, 1),
        },
        "verification_idle": verify_idle,
        "verification_while_paying": pay["verification"],
        "ratios": {
            "paid_over_standin_rate": {"value": round(ratio, 3), "target": ">= 0.5", "met": ratio >= 0.5},
            "peak_rss_above_idle_mb": {"value": round(above, 1), "target": "< 100", "met": above < 100},
            "verification_p99_paying_over_idle": {
                "value": round(p99_ratio, 3),
                "target": "<= 1.5",
                "met": p99_ratio <= 1.5,
            },
            "every_ready_row_paid": {
                "value": after["counts"]["paid"],
                "target": f"== {pay['rows_ready']} (completed, none failed)",
                "met": after["status"] == "completed" and after["counts"]["paid"] == pay["rows_ready"],
            },
        },
    }


@dataclass(frozen=True)
class Around:
    """What pay_batch meters beside the app: the stand-in (and its rate alone), the run's database."""

    bank_url: str
    standin_rps: float
    database_url: str | None


def pay_batch(
    server: Server,
    department: Department,
    factory: Factory,
    tokens: list[str],
    batch_id: str,
    codes: list[str],
    around: Around,
    plan: DisbursementPlan,
) -> dict[str, Any]:
    """Approve (two operators above the dual threshold), then verification open loop while the batch pays, for no
    longer than the batch can take at the stand-in's own rate (so it all falls within the payout); until completed."""
    app = server.app_process()
    standin_rps = around.standin_rps
    rows = department.batch(batch_id)["counts"]["ready"]
    app_meter, bank_meter = (
        Meter(app, around.database_url).start(),
        Meter(bank_process(around.bank_url), None).start(),
    )
    watch = Watch(app, department, batch_id)
    started = time.perf_counter()
    approve(server.base_url, tokens, batch_id)
    approved = time.perf_counter()
    watch.start()
    while watch.last().get("counts", {}).get("paid", 0) == 0 and time.perf_counter() - approved < PAY_TIMEOUT_S:
        time.sleep(0.05)
    window_s = min(plan.verify_s, 0.8 * rows / standin_rps) if standin_rps else plan.verify_s
    meter = Meter(app, None).start()
    requests = factory.verifications(codes[: int(plan.verify_rate * window_s) + 1])
    verified = run(Job(factory.port, requests, 200, 32, float("inf"), plan.verify_rate))
    verification = figures(verified, 200, meter.read())
    paid_when_done = watch.last().get("counts", {}).get("paid", 0)
    while watch.last().get("status") not in {"completed", "failed"} and time.perf_counter() - approved < PAY_TIMEOUT_S:
        time.sleep(0.05)
    peak = watch.stop()
    server_cpu, bank_cpu = app_meter.read(), bank_meter.read()
    done_at = next(at for at, seen in watch.seen if seen.get("status") in {"completed", "failed"})
    seconds = done_at - approved
    return {
        "rows_ready": rows,
        "approvals": len(tokens),
        "approve_s": round(approved - started, 3),
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds, 1) if seconds else 0.0,
        "status_polls": len(watch.seen),
        "peak_rss_mb": peak,
        # CPU over the whole payout, verification included: the app's per paid row, the stand-in's per credit
        "server_cpu_ms_per_row": round(1000 * server_cpu["server_cpu_s"] / rows, 3) if rows else 0.0,
        "server_cpu_pct": round(server_cpu["server_cpu_pct"], 1),
        "db_cpu_pct": round(server_cpu["db_cpu_pct"], 1),
        "standin_cpu_ms_per_credit": round(1000 * bank_cpu["server_cpu_s"] / rows, 3) if rows else 0.0,
        "standin_cpu_pct": round(bank_cpu["server_cpu_pct"], 1),
        "machine_busy_pct": round(server_cpu["machine_busy_pct"], 1),
        "load_avg_1m": round(server_cpu["load_avg_1m"], 1),
        "verification_window_s": round(window_s, 2),
        "paid_when_verification_ended": paid_when_done,
        "verification": verification,
    }


def table(results: dict[str, Any]) -> None:
    rss = results["rss_mb"]
    lines = [
        ("cardholders enrolled (API)", f"{results['enrolment']['cardholders']}", f"{results['enrolment']['rps']}/s"),
        ("rows validated", f"{results['validation']['rows']}", f"{results['validation']['rows_per_s']} rows/s"),
        ("stand-in credits alone", f"{results['standin_alone']['requests']}", f"{results['standin_alone']['rps']}/s"),
        ("rows paid", f"{results['batch']['counts']['paid']}", f"{results['paying']['rows_per_s']} rows/s"),
        (
            "cpu ms/credit: stand-in alone",
            "",
            f"{results['standin_alone']['server_cpu_ms_per_req']} ms",
        ),
        (
            "cpu ms/row paying: app, bank",
            "",
            f"{results['paying']['server_cpu_ms_per_row']}, {results['paying']['standin_cpu_ms_per_credit']} ms",
        ),
        ("machine busy while paying", "", f"{results['paying']['machine_busy_pct']} %"),
        ("verification p99 idle", "", f"{results['verification_idle']['latency_ms']['p99']:.2f} ms"),
        ("verification p99 paying", "", f"{results['verification_while_paying']['latency_ms']['p99']:.2f} ms"),
        (
            "RSS idle / peak",
            "",
            f"{rss['idle']} / {max(rss['peak_upload'], rss['peak_paying'])} MB",
        ),
    ]
    say("")
    for name, count, figure in lines:
        say(f"{name:<30}{count:>10}{figure:>24}")
    for name, check in results["ratios"].items():
        say(f"{name}: {check['value']:g}  (target {check['target']}: {'met' if check['met'] else 'NOT met'})")
    load = results["paying"]["load_avg_1m"]
    if load > (os.cpu_count() or 1):
        say(
            f"note: load average {load:g} on {os.cpu_count()} CPUs while paying: the app got its share of a saturated"
            " machine, so rates and latency ratios measure the machine as much as the service (see cpu ms/row)"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK.rows} rows")
    parser.add_argument("--rows", type=int, help=f"rows in the batch (at most 100,000; default {FULL.rows})")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rows:
        plan = DisbursementPlan(**{**asdict(plan), "rows": args.rows})
    self_check()
    stamp = time.strftime("%Y%m%dT%H%M%S")
    say(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="ecard-load-disb-") as folder:
        env = disbursement_env(Path(folder) / "data", plan.concurrency)
        try:
            if env.get("ECARD_DATABASE_URL"):
                ecard_cli(env, "migrate")
            port = free_port()
            # the stand-in verifies the issuer's signatures with its published request keys, as in production
            trust = f"http://127.0.0.1:{port}/v1/issuer/request-keys"
            # the stand-in's rate alone is measured on a second one, so that neither ledger holds the other's credits
            with (
                running_standin(Path(folder) / "bank", trust, Path(folder) / "bank.log") as standin,
                running_standin(Path(folder) / "probe", trust, Path(folder) / "probe.log") as probe,
            ):
                env["ECARD_BANK_URL"] = standin.url
                with serving(env, port=port) as server:
                    say(f"ecard serve on {server.base_url} (pid {server.proc.pid}), stand-in bank on {standin.url}")
                    results = measure(server, env, standin.url, probe.url, plan)
        finally:
            forget_redis_keys(env)
    results = {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "plan": asdict(plan), **results}
    table(results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}-disbursement.json"
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False))
    say(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
